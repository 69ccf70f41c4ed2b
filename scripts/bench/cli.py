"""Parameters every measuring command spells the same way (typer ``Annotated`` types),
and the head of every report, taken when the command starts."""
from pathlib import Path
from typing import Annotated, Any, Dict, Optional

import typer

from .env import machine_info, this_command, utc_now

Pipeline = Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Saved spaCy pipeline")]
DocsFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, help=".spacy file of gold docs")]
Output = Annotated[Path, typer.Option("--output", help="The JSON report")]
Limit = Annotated[int, typer.Option("--limit", min=0, help="Docs, the first in file order (0 = all)")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="nlp.pipe batch size")]
Repeats = Annotated[int, typer.Option("--repeats", min=1, help="Timed passes per row (the best counts)")]
Threads = Annotated[int, typer.Option("--n-threads", min=0, help="torch threads (0 = torch's default)")]
Thresholds = Annotated[Optional[str], typer.Option("--thresholds", help="Comma-separated exit thresholds")]


def report_head(ctx: typer.Context, module: str, n_threads: int = 0, gpu_id: int = -1) -> Dict[str, Any]:
    """Date, command and machine of a run, taken before it measures anything (so the
    load average is the one it started under); sets torch's threads first."""
    import torch

    if n_threads:
        torch.set_num_threads(n_threads)
    return {"date": utc_now(), "command": this_command(ctx, module), "machine": machine_info(gpu_id),
            "torch_threads": torch.get_num_threads()}  # fmt: skip
