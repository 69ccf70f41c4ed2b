"""The harness the measuring commands share: ``data`` (gold docs, fresh docs, the one
pipeline loader, the settings override), ``env`` and ``cli`` (the machine, date and command
of a run), ``child`` (a timed child process), ``markdown`` (number formats for the
renderer's templates). The one definition of words/s and F1 is the package's
``spacy_posattn_ner.calibration.measure``."""
