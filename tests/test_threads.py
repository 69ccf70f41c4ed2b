"""Fork safety (issue 27, item 1): ``nlp.pipe(n_process=2)`` returns, with the answers
of ``n_process=1``, whether or not the parent already ran torch with several threads.

Forked workers used to hang in an OpenMP barrier at their first parallel torch op
(``spacy_posattn_ner.threads``). Each case runs in a subprocess of its own with a
timeout, in a new session, so that a hang fails the test (and its workers are
killed) instead of hanging the suite.
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from spacy_posattn_ner.backbone import EMBEDDED_BACKBONE

ROOT = Path(__file__).resolve().parents[1]

# Builds an untrained pipeline on BACKBONE (seeded: the same weights in every run),
# then annotates TEXTS with n_process=1 and 2, in the order WARM asks for: a warm
# parent has run torch with 2 threads before it forks, a cold one forks first.
SCRIPT = r"""
import json, random, sys
import spacy, torch
sys.path.insert(0, sys.argv[4])
from conftest import make_nlp, toy_examples
backbone, warm, n_texts = sys.argv[1], sys.argv[2] == "warm", int(sys.argv[3])
torch.set_num_threads(2)
spacy.util.fix_random_seed(0)
nlp = make_nlp(backbone)
nlp.initialize(lambda: toy_examples(nlp))
ner = nlp.get_pipe("posattn_ner")
ner.precision, ner.exit_threshold = "fp32", 1.0
rng = random.Random(27)
words = "Iran 's President Mahmoud Ahmadinejad spoke in London on Tuesday , said the United Nations in New York .".split()
texts = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 60))) for _ in range(n_texts)]

def answers(n_process):
    out = []
    for doc in nlp.pipe(texts, n_process=n_process, batch_size=64):
        group = doc.spans["posattn_ner"]
        out.append([[[s.start, s.end, s.label_] for s in group], [round(float(p), 6) for p in group.attrs["scores"]], doc._.exit_layer])
    return out

order = [1, 2] if warm else [2, 1]
result = {n: answers(n) for n in order}
print(json.dumps({"threads_after": torch.get_num_threads(), "one": result[1], "two": result[2]}))
"""


def run_isolated(args, timeout: float) -> str:
    """Run ``python -c SCRIPT args`` in a new session; on timeout kill the whole
    session (the parent and any worker it forked) and fail."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=str(ROOT), start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"nlp.pipe(n_process=2) did not return within {timeout:.0f} s (args {args})")
    assert proc.returncode == 0, err[-3000:]
    # no "huggingface/tokenizers: The current process just got forked..." per worker
    assert "huggingface/tokenizers" not in err, err[-3000:]
    return out.strip().splitlines()[-1]


def _check(backbone: str, warm: str, n_texts: int, timeout: float) -> None:
    result = json.loads(run_isolated([backbone, warm, str(n_texts), str(ROOT / "tests")], timeout))
    one, two = result["one"], result["two"]
    assert len(one) == len(two) == n_texts
    for a, b in zip(one, two):
        assert a[0] == b[0] and a[2] == b[2]  # the same entities and exit layer
        assert all(abs(x - y) <= 1e-4 for x, y in zip(a[1], b[1]))
    assert result["threads_after"] == 2  # the parent keeps its threads


@pytest.mark.parametrize("warm", ["warm", "cold"])
def test_pipe_n_process_2_returns_the_answers_of_one_process_tiny(tiny_backbone, warm):
    _check(tiny_backbone, warm, 200, timeout=240)


@pytest.mark.parametrize("warm", ["warm", "cold"])
def test_pipe_n_process_2_returns_the_answers_of_one_process_embedded(warm):
    _check(EMBEDDED_BACKBONE, warm, 100, timeout=300)


def test_forked_child_starts_with_one_thread_and_runs_torch():
    """A plain ``os.fork()`` child of a warm parent (torch ran with 2 threads): one
    thread, and a parallel-sized op completes (it hung with the inherited pool)."""
    code = (
        "import os, torch, spacy_posattn_ner\n"
        "torch.set_num_threads(2)\n"
        "torch.zeros(4_000_000).add_(1).sum()\n"  # the OpenMP pool is live
        "r, w = os.pipe()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    n = torch.get_num_threads()\n"
        "    s = torch.ones(4_000_000).mul_(2).sum().item()\n"
        "    os.write(w, f'{n} {s:.0f}'.encode()); os._exit(0)\n"
        "os.close(w); os.waitpid(pid, 0)\n"
        "print(os.read(r, 64).decode(), torch.get_num_threads())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("a forked child hung at its first parallel torch op")
    assert proc.returncode == 0, err[-2000:]
    assert out.split() == ["1", "8000000", "2"]
