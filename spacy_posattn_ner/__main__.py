"""``python -m spacy_posattn_ner annotate ...``: the same commands as the console script."""
from .annotate.cli import main

if __name__ == "__main__":
    main()
