"""annotate (issue 27, item 1): an OUTPUT that cannot be created is refused in one line
before the model loads, and ``--n-process`` workers end when their parent is killed."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_unwritable_output_is_refused_in_one_line_before_the_model_loads(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    inputs = tmp_path / "in.txt"
    inputs.write_text("London calling .\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "spacy_posattn_ner", "annotate", str(tmp_path / "no-such-model"), str(inputs), str(blocker / "out.jsonl")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out
    assert f"cannot be created: {blocker} is a file, not a directory" in out
    assert "no-such-model" not in out  # the model was never looked at


WORKERS = r"""
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
from spacy_posattn_ner.annotate.local_engine import die_with_parent
def pid(_):
    return os.getpid()
pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"), initializer=die_with_parent, initargs=(os.getpid(),))
pids = sorted(set(pool.map(pid, range(40))))
print(" ".join(map(str, pids)), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and fork")
def test_workers_end_when_the_parent_is_killed():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", WORKERS], stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert workers and all(_alive(p) for p in workers)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.time() + 30
        while any(_alive(p) for p in workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
