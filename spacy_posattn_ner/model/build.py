"""Building the PyTorch head from the tagger's config: at ``initialize``, and again from
the component's cfg before saved weights are loaded (a lazily built head must exist, with
the saved sizes, before ``from_bytes``).

The sizes are checked here, before anything is allocated: a config with ``n_heads = 0`` or
a width of a million fails with the setting's name, not deep inside torch or out of memory.
"""
from numbers import Integral
from typing import Any, Dict, List, Optional, Protocol

import torch
from spacy.util import registry
from thinc.api import Model, PyTorchWrapper_v2

from ..backbone import kept_states, mixed_count
from .heads import MultiExitHead, PosAttnHead

MAX_WIDTH = 65536  # widths, lexical rows and distances beyond this are typos, not models
MAX_DEPTH = 64
MAX_LEXICAL_ROWS = 1 << 24
# The seam for other models (the distilled student): a model names, in
# ``attrs["head_builder"]``, a registered function (``registry.misc``) that returns its
# HeadBuilder; the tagger's is the default, so saved pipelines need nothing new.
POSATTN_HEAD = "spacy-posattn-ner.posattn_head.v1"


class HeadBuilder(Protocol):
    """Checks a model's head_config and builds its PyTorch head (at initialize, and from
    the saved sizes before weights are loaded)."""

    def check(self, cfg: Dict[str, Any], where: str) -> None: ...

    def build(self, model: Model, n_layers: int, hidden_width: int, where: str) -> None: ...


def head_builder(model: Model) -> HeadBuilder:
    return registry.misc.get(model.attrs.get("head_builder", POSATTN_HEAD))()


def has_head(model: Model) -> bool:
    return bool(model.has_ref("head"))


def get_head(model: Model) -> torch.nn.Module:
    """The PyTorch head (built at initialize): PosAttnHead (v1) or MultiExitHead (v2, v3)."""
    if not has_head(model):
        raise ValueError("the posattn_ner head is built at initialize; call nlp.initialize() first")
    return model.get_ref("head").shims[0]._model


def drop_head(model: Model) -> None:
    """Remove the head (re-initialization, or before a head of saved sizes is built)."""
    if has_head(model):
        model.layers.remove(model.get_ref("head"))
        model.set_ref("head", None)


def _int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and low <= int(value) <= high


def check_head_config(cfg: Dict[str, Any], where: str) -> None:
    """Refuse sizes no head can have, naming ``where`` (the config block or file) and the setting."""

    def fail(key: str, value: Any, need: str) -> None:
        raise ValueError(f"{where}: {key} = {value!r}: need {need}")

    for key in ("width", "depth"):
        low, high = (1, MAX_WIDTH) if key == "width" else (0, MAX_DEPTH)
        values = cfg[key] if isinstance(cfg[key], list) else [cfg[key]]
        if not values or not all(_int_in(v, low, high) for v in values):
            fail(key, cfg[key], f"an integer from {low} to {high}, or a list of them (one per exit layer)")
    if not _int_in(cfg["n_heads"], 1, MAX_WIDTH):
        fail("n_heads", cfg["n_heads"], f"an integer from 1 to {MAX_WIDTH}")
    for w in cfg["width"] if isinstance(cfg["width"], list) else [cfg["width"]]:
        if w % cfg["n_heads"]:
            fail("width", cfg["width"], f"multiples of n_heads ({cfg['n_heads']})")
    if not _int_in(cfg["max_distance"], 1, MAX_WIDTH):
        fail("max_distance", cfg["max_distance"], f"an integer from 1 to {MAX_WIDTH}")
    if not _int_in(cfg["lexical_width"], 1, MAX_WIDTH):
        fail("lexical_width", cfg["lexical_width"], f"an integer from 1 to {MAX_WIDTH}")
    rows = cfg["lexical_rows"]
    if not isinstance(rows, list) or len(rows) != 4 or not all(_int_in(r, 1, MAX_LEXICAL_ROWS) for r in rows):
        fail("lexical_rows", rows, f"four integers from 1 to {MAX_LEXICAL_ROWS} (NORM, PREFIX, SUFFIX, SHAPE)")
    dropout = cfg["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        fail("dropout", dropout, "a number in [0, 1)")


def resolve_exit_layers(model: Model, n_layers: int) -> Optional[List[int]]:
    """The exit layers of an exit model (None without early exit), checked against the
    backbone. A negative number counts from the last layer (-1 = the last), so one
    config fits backbones of any depth."""
    cfg = model.attrs["head_config"]
    if "exit_layers" not in cfg:
        return None
    given = cfg["exit_layers"]
    if given is None:
        return list(range(1, n_layers))
    layers = [k + n_layers if k < 0 else k for k in given]
    if not layers or sorted(set(layers)) != layers or layers[0] < 1 or layers[-1] > n_layers - 1:
        raise ValueError(
            f"exit_layers {given}: need increasing layer numbers between 1 and {n_layers - 1} "
            f"(the backbone has {n_layers - 1} layers; -1 is the last)"
        )
    return layers


def _per_exit(cfg: Dict[str, Any], exit_layers: List[int]) -> List[Dict[str, int]]:
    """Each exit's width and depth (a number for all, or one per exit)."""
    values = {}
    for key in ("width", "depth"):
        value = cfg[key]
        if isinstance(value, int):
            value = [value] * len(exit_layers)
        if len(value) != len(exit_layers):
            raise ValueError(
                f"PosAttnTagger: {key} {value} has {len(value)} entries for {len(exit_layers)} exit layers "
                f"{exit_layers}: give one number, or one per exit layer"
            )
        values[key] = [int(v) for v in value]
    return [{"width": w, "depth": d} for w, d in zip(values["width"], values["depth"])]


def check_model_config(model: Model, where: str) -> None:
    """Refuse a head config no head can have, before anything is allocated (any model)."""
    head_builder(model).check(model.attrs["head_config"], where)


def ensure_head(model: Model, n_layers: int, hidden_width: int, where: str = "PosAttnTagger") -> None:
    """Create the PyTorch head from the model's config if it is not there yet, with the
    builder the model names (``attrs["head_builder"]``; the tagger's by default)."""
    if has_head(model):
        return
    head_builder(model).build(model, n_layers, hidden_width, where)


class PosAttnHeadBuilder:
    """The tagger's head: one PosAttnHead (v1) or a MultiExitHead (v2, v3)."""

    check = staticmethod(check_head_config)

    @staticmethod
    def build(model: Model, n_layers: int, hidden_width: int, where: str) -> None:
        _build_posattn_head(model, n_layers, hidden_width, where)


@registry.misc(POSATTN_HEAD)
def posattn_head_builder() -> HeadBuilder:
    return PosAttnHeadBuilder()


def _build_posattn_head(model: Model, n_layers: int, hidden_width: int, where: str) -> None:
    from thinc.util import get_torch_default_device

    from .nodes import get_backbone, pad_inputs

    cfg: Dict[str, Any] = model.attrs["head_config"]
    check_head_config(cfg, where)
    kwargs = dict(
        hidden_width=hidden_width,
        n_tags=model.get_dim("nO"),
        n_heads=cfg["n_heads"],
        max_distance=cfg["max_distance"],
        lexical_rows=cfg["lexical_rows"],
        lexical_width=cfg["lexical_width"],
        dropout=cfg["dropout"],
    )
    exit_layers = resolve_exit_layers(model, n_layers)
    kept = kept_states(get_backbone(model).hidden_states, n_layers)
    if exit_layers is None:
        head: torch.nn.Module = PosAttnHead(
            n_layers=len(kept), layer=kept[-1], width=cfg["width"], depth=cfg["depth"], **kwargs
        )
    else:
        missing = [k for k in exit_layers if k not in kept]
        if missing:
            raise ValueError(
                f"{where}: exit layers {missing} are not among the backbone's hidden_states {kept}: "
                "an exit reads the layer it follows, so keep every exit layer"
            )
        mixed = [mixed_count(kept, k) for k in exit_layers]
        head = MultiExitHead(exit_layers, _per_exit(cfg, exit_layers), mixed=mixed, **kwargs)
    wrapper = PyTorchWrapper_v2(head.to(get_torch_default_device()), convert_inputs=pad_inputs)
    model.layers.append(wrapper)
    model.set_ref("head", wrapper)
