"""Insights for the people who maintain the material, over the answer and feedback log.

``report`` counts (questions per day by surface and language, abstentions, votes, citations), ``gaps`` groups
the unanswered questions by meaning with the product's own embedders, ``charts`` draws inline SVG,
``page`` renders the admin page, ``export`` the CSV tables and the terminal text of `kbq insights`.
"""
