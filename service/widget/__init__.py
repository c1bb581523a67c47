"""The wiki chat widget's server side: signed widget tokens, the demo wiki pages and the source view."""
