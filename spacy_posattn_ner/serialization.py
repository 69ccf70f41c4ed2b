"""What a saved ``posattn_ner`` directory holds besides the weights, checked on the way in.

``cfg`` (JSON) holds the labels, the backbone's sizes the head is rebuilt with, the
``spans_key``, the saved runtime settings, what the config said of them, and the weights'
checksum. Everything is validated when read, before any tensor is allocated, and an error
names the file and the entry. Pipelines saved before ``settings.py`` kept the decoder
settings at the top level of cfg and the model settings on the model's nodes; both are read.
"""
import hashlib
from typing import Any, Dict, Iterator, Tuple

import srsly
from thinc.api import Model

from .settings import Settings

LEGACY_CFG_SETTINGS = ("scores", "candidate_threshold", "temperature")  # top level of cfg before settings.py
MAX_LAYERS = 1024
MAX_HIDDEN_WIDTH = 65536


def read_cfg(data: bytes, where: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The cfg without its settings, and the saved settings (validated), from a file's bytes."""
    try:
        cfg = srsly.json_loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{where}: not a valid JSON object ({err})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{where}: not a JSON object (got {type(cfg).__name__})")
    prefix = f"{where}: "
    labels = cfg.get("labels", [])
    if not isinstance(labels, list):
        raise ValueError(f"{prefix}labels must be a list of entity labels, got {labels!r}")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label or "-" in label or label != label.strip():
            raise ValueError(f"{prefix}labels[{i}] = {label!r}: an entity label is a non-empty string without '-'")
    if len(set(labels)) != len(labels):
        raise ValueError(f"{prefix}labels {labels}: a label is listed twice")
    for key, high in (("n_layers", MAX_LAYERS), ("hidden_width", MAX_HIDDEN_WIDTH)):
        value = cfg.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high):
            raise ValueError(f"{prefix}{key} = {value!r}: need an integer from 1 to {high} (or null before initialize)")
    if not isinstance(cfg.get("spans_key", ""), str) or cfg.get("spans_key") == "":
        raise ValueError(f"{prefix}spans_key = {cfg.get('spans_key')!r}: need a non-empty string")
    found = cfg.get("model_checksum")
    if found is not None and not (isinstance(found, dict) and isinstance(found.get("sha256"), str)
                                  and isinstance(found.get("bytes"), int)):  # fmt: skip
        raise ValueError(f"{prefix}model_checksum = {found!r}: need {{'sha256': str, 'bytes': int}}")
    saved = {key: cfg.pop(key) for key in LEGACY_CFG_SETTINGS if key in cfg}
    saved.update(cfg.pop("settings", None) or {})
    config_settings = cfg.get("config_settings") or {}
    if not isinstance(config_settings, dict):
        raise ValueError(f"{prefix}config_settings must be an object, got {config_settings!r}")
    return cfg, Settings.check_cfg(saved, prefix)


def legacy_model_settings(model: Model) -> Iterator[Tuple[Model, str]]:
    """(node, key) of settings that pipelines saved before ``settings.py`` kept in the
    model's node attrs (and that their bytes bring back when loaded)."""
    backbone = model.get_ref("backbone")
    for node, key in ((model, "exit_threshold"), (backbone, "precision"), (backbone, "train_precision")):
        if key in node.attrs:
            yield node, key


def checksum(data: bytes) -> Dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def verify(data: bytes, expected: Dict[str, Any], where: str) -> None:
    """Refuse weights that are truncated or altered, naming the file."""
    if len(data) != expected["bytes"]:
        kind = "truncated" if len(data) < expected["bytes"] else "longer than saved"
        raise ValueError(f"{where}: the weights are {kind} ({len(data):,} bytes, saved {expected['bytes']:,})")
    if hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise ValueError(f"{where}: the weights were altered after saving (sha256 differs from the saved checksum)")


__all__ = ["checksum", "legacy_model_settings", "read_cfg", "verify"]
