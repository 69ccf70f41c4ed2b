"""Where and how a figure was measured: the machine, the date, the exact command."""
import datetime
import os
import platform
import shlex
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Dict, List, Optional

import typer


def machine_info(gpu_id: int = -1) -> Dict[str, Any]:
    """Platform, CPUs, torch threads, library versions, the GPU and the load average now."""
    import spacy
    import torch

    info: Dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "spacy": spacy.__version__,
        "torch": torch.__version__,
        "spacy_transformers": _version("spacy-transformers"),
        "transformers": _version("transformers"),
        "gpu": _gpu(gpu_id),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    return info


def _version(dist: str) -> Optional[str]:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _gpu(gpu_id: int) -> str:
    import torch

    if gpu_id < 0:
        return "none (CPU run)"
    if not torch.cuda.is_available():
        return "none (CUDA not available)"
    return torch.cuda.get_device_name(gpu_id)


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def this_command(ctx: typer.Context, module: str) -> str:
    """The command line that reproduces the running typer command, every parameter
    spelled out (defaults included), so a report says exactly what ran. In an app of
    several commands (a parent context) the command's own name follows the module."""
    parts: List[str] = ["python", "-m", module] + ([ctx.info_name] if ctx.parent is not None and ctx.info_name else [])
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.param_type_name == "argument":
            parts.append(str(value))
        elif value is None or (param.is_flag and not param.secondary_opts and not value):
            continue
        elif param.is_flag:
            parts.append(param.opts[0] if value else param.secondary_opts[0])
        else:
            parts += [param.opts[0], str(value)]
    return shlex.join(parts)
