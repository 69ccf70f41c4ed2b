"""The manifest beside the shards: the input files (size, mtime) and every option that
changes the rows. A re-run compares it first, so finished shards are only reused for
the same inputs, model and options, and a difference is reported, never mixed in."""
import hashlib
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Sequence

from spacy.language import Language

from .errors import AnnotateError
from .inputs import InputFile
from .outputs import OutputLayout, atomic_write

VERSION = "spacy-posattn-ner annotate manifest 1"


def model_fingerprint(model: str, nlp: Language) -> Dict[str, Any]:
    """What identifies the pipeline: a digest of the files (names, sizes, mtimes) of a
    pipeline directory, or the installed package's version."""
    meta = {"name": nlp.meta.get("name"), "version": nlp.meta.get("version"), "pipeline": list(nlp.pipe_names)}
    path = Path(model)
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"{file.relative_to(path).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        meta["files"] = digest.hexdigest()[:16]
    else:
        try:
            meta["package"] = f"{model}=={metadata.version(model)}"
        except metadata.PackageNotFoundError:
            meta["package"] = model
    return meta


def build_manifest(files: Sequence[InputFile], options: Dict[str, Any], model: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "manifest": VERSION,
        "inputs": [{"path": f.location, "format": f.format, "size": f.size, "mtime_ns": f.mtime_ns} for f in files],
        "model": model,
        "options": options,
    }


def differences(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
    """Human-readable list of what changed between two manifests."""
    out = []
    if old.get("manifest") != new["manifest"]:
        return [f"manifest version {old.get('manifest')!r} (this is {new['manifest']!r})"]
    old_inputs = {i["path"]: i for i in old["inputs"]}
    new_inputs = {i["path"]: i for i in new["inputs"]}
    if [i["path"] for i in old["inputs"]] != [i["path"] for i in new["inputs"]]:
        added = [p for p in new_inputs if p not in old_inputs]
        removed = [p for p in old_inputs if p not in new_inputs]
        out.append(f"input files differ (added: {added or 'none'}; removed: {removed or 'none'}; or reordered)")
    for path, item in new_inputs.items():
        before = old_inputs.get(path)
        if before is None:
            continue
        for field in ("size", "mtime_ns", "format"):
            if before.get(field) != item[field]:
                out.append(f"input {path}: {field} was {before.get(field)}, is {item[field]}")
    for key in sorted(set(old["options"]) | set(new["options"])):
        if old["options"].get(key) != new["options"].get(key):
            out.append(f"option {key}: was {old['options'].get(key)!r}, is {new['options'].get(key)!r}")
    if old["model"] != new["model"]:
        out.append(f"model: was {old['model']}, is {new['model']}")
    return out


def prepare_output(layout: OutputLayout, manifest: Dict[str, Any], overwrite: bool) -> None:
    """Check the output against the manifest (or start it): fine to resume, start
    afresh with --overwrite, or an error saying what differs."""
    if layout.single_file and layout.target.exists() and not layout.shard_dir.exists():
        if not overwrite:
            raise AnnotateError(f"OUTPUT {layout.target} already exists (a finished run?): remove it or pass --overwrite")
        layout.target.unlink()
    if overwrite:
        for path in layout.owned_files():
            path.unlink()
    shard_dir = layout.shard_dir
    if layout.manifest_path.exists():
        try:
            old = json.loads(layout.manifest_path.read_text(encoding="utf8"))
        except ValueError as err:
            raise AnnotateError(f"{layout.manifest_path}: unreadable manifest ({err}); pass --overwrite to start again") from err
        changed = differences(old, manifest)
        if changed:
            raise AnnotateError(
                f"OUTPUT {layout.target} was started with other inputs, model or options:\n  - "
                + "\n  - ".join(changed)
                + "\nRe-run with the original ones to resume, or pass --overwrite to start again."
            )
        return
    if shard_dir.is_dir() and any(not p.name.startswith(".") for p in shard_dir.iterdir()):
        raise AnnotateError(f"{shard_dir} is not empty and has no {layout.manifest_path.name}: not an annotate output")
    shard_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(layout.manifest_path, (json.dumps(manifest, indent=2) + "\n").encode("utf8"))


def remove_tmp_files(layout: OutputLayout) -> None:
    """Half-written shards of a killed run."""
    if layout.shard_dir.is_dir():
        for path in layout.shard_dir.iterdir():
            if path.name.startswith(".tmp-"):
                os.unlink(path)
