"""The benchmark harness shared by the measuring commands and the renderer.

- ``data``: gold docs from a .spacy file, fresh Docs of their words, prefixes;
- ``measure``: ONE definition of words/s and test F1 for any pipeline;
- ``exits``: exit thresholds: the grid, F1 loss against never-exit, the calibration rule;
- ``calibration``: entity-score calibration: log-loss, ECE and its bins, the temperature
  search, precision/recall over a score threshold;
- ``env`` and ``cli``: the machine, date and exact command of a run; shared CLI parameters;
- ``child``: a child process timed, logged and measured (peak RSS);
- ``markdown``: formatting, tables and ratios;
- ``sections``, ``confidence_section`` and ``render``: metrics/*.json -> BENCHMARKS.md, the
  README headline, the plots.
"""
