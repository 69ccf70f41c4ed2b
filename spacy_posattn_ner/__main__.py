"""``python -m spacy_posattn_ner annotate|calibrate-exit|calibrate-confidence ...``: the console script."""
from .cli import main

if __name__ == "__main__":
    main()
