"""One-off side-by-side measurements behind figures in BENCHMARKS.md (python -m scripts.experiments.NAME).
They reach into the engine's internals on purpose, so they follow the engine, not the harness's API."""
