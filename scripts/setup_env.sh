#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtualenv in .venv with the CPU build of
# PyTorch pinned (an open torch requirement would pull a multi-GB CUDA build), this
# package with its dev extra and the ray and parquet extras the annotate tests run
# (neither pulls torch), and the GMB corpus copied into assets/ when ../shared has it.
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev,ray,parquet]"
if [ ! -f assets/ner_dataset.csv.zip ] && [ -f ../shared/assets/gmb/ner_dataset.csv.zip ]; then
  mkdir -p assets
  cp ../shared/assets/gmb/ner_dataset.csv.zip assets/
fi
