"""HTTP routes; each module translates between the API models and one kb call."""
