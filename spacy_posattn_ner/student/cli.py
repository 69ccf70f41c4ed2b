"""``spacy-posattn-ner distill TEACHER TEXTS OUTPUT``: the command, registered on the app by ``register``."""
from pathlib import Path
from typing import Optional

import typer

DEFAULT_CONFIG = Path(__file__).resolve().parent / "student.cfg"  # shipped with the package


def distill_cli(
    # fmt: off
    ctx: typer.Context,
    teacher: str = typer.Argument(..., metavar="TEACHER", help="The teacher: a posattn_ner pipeline directory or package."),
    texts: str = typer.Argument(..., metavar="TEXTS", help="Distillation text: .txt, .jsonl, .parquet or .spacy (a file, directory or glob), as annotate reads it."),
    output: Path = typer.Argument(..., metavar="OUTPUT", help="The student pipeline directory to write."),
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="The student's training config (default: the one shipped in spacy_posattn_ner/student/student.cfg)."),
    gold: Optional[Path] = typer.Option(None, "--gold", help="A .spacy file of gold docs: TEXTS docs of the same text also learn their gold tags."),
    dev: Optional[Path] = typer.Option(None, "--dev", help="A .spacy dev set for spacy train's evaluations (default: the teacher's answers on 500 of TEXTS)."),
    targets_dir: Optional[Path] = typer.Option(None, "--targets", help="Where the teacher's targets go (default OUTPUT.targets); a re-run resumes there."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard earlier teacher targets instead of resuming."),
    limit: int = typer.Option(0, "--limit", help="Distil on the first N texts only (0: all)."),
    text_key: str = typer.Option("text", "--text-key"),
    threads: int = typer.Option(0, "--threads", help="Torch threads (0: torch's default)."),
    # fmt: on
) -> None:
    """Distil a posattn_ner teacher into a compact student with no transformer at
    inference. Extra options are config overrides for spacy train, as in `spacy train`
    (e.g. --schedule.epochs 4 --components.posattn_ner.distill_temperature 3)."""
    import torch
    from spacy.cli._util import parse_config_overrides
    from wasabi import msg

    from ..annotate.errors import AnnotateError
    from .distill import distill
    from .targets import TargetsError

    if threads:
        torch.set_num_threads(threads)
    if not config.exists():
        msg.fail(f"--config {config}: no such file", exits=1)
    try:
        summary = distill(teacher, texts, output, config, gold=gold, dev=dev, targets_dir=targets_dir, limit=limit,
                          text_key=text_key, overwrite=overwrite, overrides=parse_config_overrides(ctx.args),
                          say=msg.text)  # fmt: skip
    except (AnnotateError, TargetsError) as err:
        msg.fail(str(err), exits=1)
    if summary["bad_rows"]:
        msg.warn(f"{len(summary['bad_rows']):,} bad rows skipped (listed in {output / 'distill.json'})")
    msg.good(f"Student saved to {output} ({summary['total_seconds']:.0f} s; teacher pass {summary['teacher_seconds']:.0f} s)")


def register(app: typer.Typer) -> None:
    app.command("distill", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(distill_cli)
