"""The harness the measuring commands share: ``data`` (gold docs, fresh docs, the one
pipeline loader, the settings override), ``measure`` (one definition of words/s and F1),
``env`` and ``cli`` (the machine, date and command of a run), ``child`` (a timed child
process), ``markdown`` (number formats for the renderer's templates)."""
