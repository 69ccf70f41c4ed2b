"""Training helpers: what only ``spacy train`` (and ``distill``) needs, never inference."""
