"""Fork safety: a forked child starts with one torch thread, before it runs anything.

GNU OpenMP (the intra-op pool of torch's Linux CPU wheels) does not survive
``fork``: the child inherits the pool's bookkeeping but not its threads, so its first
parallel region with more than one thread waits forever in a team barrier
(``gomp_team_barrier_wait_end``). ``nlp.pipe(n_process=N)`` forks on Linux, and the
first torch op of a worker may be any op (a ``torch.zeros`` big enough to be split
among threads was enough), so the switch cannot wait for the backbone: it is made by
an ``os.register_at_fork`` handler, in the child, before control returns from
``fork``. One thread per forked child is also what torch's own ``DataLoader`` gives
its workers, and N single-threaded workers is what ``n_process=N`` asks for.

A child that was forked from a parent that never ran a parallel region could use
more threads safely; it may call ``torch.set_num_threads`` itself. Processes started
with ``spawn`` or ``forkserver`` start fresh and are not affected.
"""
import os

_INSTALLED = False


def one_thread_in_child() -> None:
    """The at-fork handler: one intra-op torch thread, and one for MKL/OpenMP. Cheap
    (it sets counters; it starts no pool), safe in a child that has one thread."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


# Hugging Face's Rust tokenizers print a warning in every child forked after their
# thread pool ran ("The current process just got forked, after parallelism has
# already been used. Disabling parallelism...") unless TOKENIZERS_PARALLELISM is set,
# and then disable their pool in the child. The same decision, made before the fork and
# said nowhere: the variable is set to "false" for the fork only (the child keeps it,
# the parent's pool is untouched), unless the user set it.
_TOKENIZERS_ENV = "TOKENIZERS_PARALLELISM"
_set_for_fork = False


def _tokenizers_quiet_before_fork() -> None:
    global _set_for_fork
    if _TOKENIZERS_ENV not in os.environ:
        os.environ[_TOKENIZERS_ENV] = "false"
        _set_for_fork = True


def _tokenizers_restore_in_parent() -> None:
    global _set_for_fork
    if _set_for_fork:
        os.environ.pop(_TOKENIZERS_ENV, None)
        _set_for_fork = False


def _child_after_fork() -> None:
    global _set_for_fork
    _set_for_fork = False  # the child keeps TOKENIZERS_PARALLELISM=false: its pool is off
    one_thread_in_child()


def install_fork_handler() -> bool:
    """Register ``one_thread_in_child`` once per process (idempotent). Returns whether
    a handler is registered: not where the OS has no ``fork`` (Windows)."""
    global _INSTALLED
    if _INSTALLED:
        return True
    register = getattr(os, "register_at_fork", None)
    if register is None:
        return False
    register(
        before=_tokenizers_quiet_before_fork, after_in_parent=_tokenizers_restore_in_parent,
        after_in_child=_child_after_fork,
    )
    _INSTALLED = True
    return True
