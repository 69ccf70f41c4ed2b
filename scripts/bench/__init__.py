"""The benchmark harness shared by the measuring commands and the renderer.

- ``data``: gold docs from a .spacy file, fresh Docs of their words, prefixes;
- ``measure``: ONE definition of words/s and test F1 for any pipeline;
- ``exits``: the exit-threshold grid calibrate-exit and benchmark-exit share;
- ``env``: the machine a figure was measured on, the command that reproduces it;
- ``child``: a child process timed, logged and measured (peak RSS);
- ``markdown``: formatting, tables and ratios;
- ``render``: metrics/*.json -> BENCHMARKS.md, the README's headline and the plots.
"""
