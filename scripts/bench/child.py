"""A child process, timed and measured: what training and spaCy's own harnesses run in."""
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence


def run_child(cmd: Sequence[str], log_path: Path, env: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """Run ``cmd``, teeing its output to the console and ``log_path``.

    Returns its exit code, wall seconds, Unix start time and peak RSS in MiB. The peak
    comes from ``os.wait4``'s rusage of this child alone, so one system's run never
    reports another's memory. ``env`` is added to this process's environment.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    started_unix = time.time()
    started = time.perf_counter()
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env)
    reader = threading.Thread(target=_tee, args=(proc, log_path), daemon=True)
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    wall = time.perf_counter() - started
    reader.join()
    return {
        "returncode": proc.returncode,
        "wall_seconds": wall,
        "started_unix": started_unix,
        "peak_rss_mib": usage.ru_maxrss / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0),
    }


def _tee(proc: subprocess.Popen, log_path: Path) -> None:
    with log_path.open("wb") as log_file:
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
            log_file.write(chunk)
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
