"""``spacy-posattn-ner distill TEACHER TEXTS OUTPUT``: the command, registered on the app by ``register``."""
from pathlib import Path
from typing import Optional

import typer


def distill_cli(
    # fmt: off
    teacher: str = typer.Argument(..., metavar="TEACHER", help="The teacher: a posattn_ner pipeline directory or package."),
    texts: str = typer.Argument(..., metavar="TEXTS", help="Distillation text: .txt, .jsonl, .parquet or .spacy (a file, directory or glob), as annotate reads it."),
    output: Path = typer.Argument(..., metavar="OUTPUT", help="The student pipeline directory to write."),
    gold: Optional[Path] = typer.Option(None, "--gold", help="A .spacy file of gold docs: TEXTS docs of the same text get a gold cross-entropy term."),
    dev: Optional[Path] = typer.Option(None, "--dev", help="A .spacy dev set: evaluated each epoch, the best epoch is kept."),
    config: Path = typer.Option(Path(__file__).resolve().parents[2] / "configs" / "student.cfg", "--config", help="A config with the student's [components.posattn_ner.model] block."),
    epochs: int = typer.Option(6, "--epochs"),
    temperature: float = typer.Option(2.0, "--temperature", help="Distillation temperature T (soft targets and KL)."),
    gold_weight: float = typer.Option(0.5, "--gold-weight"),
    soft_weight: float = typer.Option(1.0, "--soft-weight"),
    batch_words: int = typer.Option(2000, "--batch-words"),
    learn_rate: float = typer.Option(0.002, "--learn-rate"),
    targets_dir: Optional[Path] = typer.Option(None, "--targets", help="Where the teacher's targets go (default OUTPUT.targets); a re-run resumes there."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard earlier teacher targets instead of resuming."),
    limit: int = typer.Option(0, "--limit", help="Distil on the first N texts only (0: all)."),
    text_key: str = typer.Option("text", "--text-key"),
    threads: int = typer.Option(0, "--threads", help="Torch threads (0: torch's default)."),
    # fmt: on
) -> None:
    """Distil a posattn_ner teacher into a compact student with no transformer at inference."""
    import spacy
    import torch
    from spacy.util import load_config

    import spacy_posattn_ner  # noqa: F401

    from ..annotate.errors import AnnotateError
    from ..annotate.messages import Messages
    from .distill import DistillOptions, distill
    from .targets import TargetsError

    msg = Messages()
    if threads:
        torch.set_num_threads(threads)
    try:
        block = load_config(config)["components"]["posattn_ner"]["model"]
    except Exception as err:  # noqa: BLE001
        msg.fail(f"--config {config}: no [components.posattn_ner.model] block ({err})", exits=1)
    nlp_t = spacy.load(teacher)
    options = DistillOptions(temperature=temperature, gold_weight=gold_weight, soft_weight=soft_weight, epochs=epochs,
                             batch_words=batch_words, learn_rate=learn_rate, overwrite=overwrite, limit=limit,
                             text_key=text_key)
    try:
        summary = distill(nlp_t, texts, output, dict(block), gold=gold, dev=dev, targets_dir=targets_dir,
                          options=options, say=msg.text)
    except (AnnotateError, TargetsError) as err:
        msg.fail(str(err), exits=1)
    if summary["bad_rows"]:
        msg.warn(f"{len(summary['bad_rows']):,} bad rows skipped (listed in {output / 'distill.json'})")
    msg.good(f"Student saved to {output} (best epoch {summary['best_epoch']}, dev F1 {summary['best_dev_ents_f']}, "
             f"{summary['total_seconds']:.0f} s)")


def register(app: typer.Typer) -> None:
    app.command("distill")(distill_cli)
