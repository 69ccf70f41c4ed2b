"""The project workflow end to end on a small limit: convert, train, calibrate-exit, evaluate, package."""
import json
import shutil
import subprocess
import sys

import pytest
import spacy
from spacy.tokens import DocBin

from .conftest import ROOT, ents_of, gmb_zip


@pytest.fixture(scope="module")
def project_run(tmp_path_factory):
    zip_path = gmb_zip()
    if zip_path is None:
        pytest.skip("GMB corpus not found in assets/ or ../shared/assets/gmb/")
    project = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "project.yml", project)
    for folder in ("configs", "scripts"):
        shutil.copytree(ROOT / folder, project / folder)
    cmd = [
        sys.executable, "-m", "spacy", "project", "run", "all", str(project),
        "--vars.limit", "60", "--vars.eval_limit", "40", "--vars.max_steps", "12",
        "--vars.evaluations", "2", "--vars.gmb_zip", str(zip_path), "--vars.gmb_source", str(zip_path),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project, result.stdout


def test_convert_outputs_the_limited_canonical_split(project_run):
    project, stdout = project_run
    nlp = spacy.blank("en")
    sizes = {name: len(DocBin().from_disk(project / "corpus" / f"{name}.spacy")) for name in ("train", "dev", "test")}
    assert sizes == {"train": 60, "dev": 40, "test": 40}
    assert "47,959 sentences, 1,048,575 tokens" in stdout
    dev = list(DocBin().from_disk(project / "corpus" / "dev.spacy").get_docs(nlp.vocab))
    assert any(doc.ents for doc in dev)


def test_evaluate_writes_overall_and_per_type_scores(project_run):
    project, _ = project_run
    metrics = json.loads((project / "metrics" / "posattn_ner.json").read_text())
    for key in ("ents_p", "ents_r", "ents_f", "ents_per_type", "speed"):
        assert key in metrics
    assert metrics["speed"] > 0
    assert 0.0 <= metrics["ents_f"] <= 1.0


def test_package_installs_and_is_model_calibrated(project_run, tmp_path):
    project, _ = project_run
    wheels = list((project / "packages").glob("*/dist/en_posattn_ner_gmb-*.whl"))
    assert len(wheels) == 1
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheels[0])],
        check=True,
    )
    texts = ["Iran 's President Mahmoud Ahmadinejad met officials in Tehran on Tuesday .", ""]
    script = (
        "import json, sys, spacy\n"
        "nlp = spacy.load('en_posattn_ner_gmb')\n"
        "texts = json.loads(sys.argv[1])\n"
        "ents = [[(e.start, e.end, e.label_) for e in nlp(t).ents] for t in texts]\n"
        "print(json.dumps([ents, nlp.get_pipe('posattn_ner').exit_threshold]))\n"
    )
    env = {"PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(texts)], capture_output=True, text=True, env=env, check=True
    )
    ents, threshold = json.loads(out.stdout)
    calibrated = spacy.load(project / "training" / "posattn_ner" / "model-calibrated")
    assert [[tuple(e) for e in doc] for doc in ents] == [ents_of(calibrated(t)) for t in texts]
    chosen = json.loads((project / "metrics" / "calibrate_exit.json").read_text())["chosen"]["threshold"]
    assert threshold == chosen == calibrated.get_pipe("posattn_ner").exit_threshold
    assert spacy.load(project / "training" / "posattn_ner" / "model-best").get_pipe("posattn_ner").exit_threshold == 1.0
    meta = json.loads((project / "training" / "posattn_ner" / "model-calibrated" / "meta.json").read_text())
    assert meta["pipeline"] == ["sentencizer", "posattn_ner"]


def test_every_command_dep_in_the_repository_exists():
    """A dep or a script module that is not there fails `spacy project run` only when
    that command runs; catch it here for every command."""
    import srsly

    project = srsly.read_yaml(ROOT / "project.yml")
    names = [cmd["name"] for cmd in project["commands"]]
    for cmd in project["commands"]:
        for dep in cmd.get("deps", []):
            if dep.startswith(("scripts/", "configs/")) and "${" not in dep:
                assert (ROOT / dep).exists(), f"command {cmd['name']!r}: dep {dep!r} does not exist"
        for step in cmd.get("script", []):
            words = step.split()
            for word, after in zip(words, words[1:]):
                if word == "-m" and after.startswith("scripts."):
                    module = ROOT / (after.replace(".", "/") + ".py")
                    assert module.exists(), f"command {cmd['name']!r}: module {after!r} does not exist"
                elif word.startswith("scripts/") and word.endswith(".py"):
                    assert (ROOT / word).exists(), f"command {cmd['name']!r}: script {word!r} does not exist"
    for workflow, steps in project["workflows"].items():
        assert set(steps) <= set(names), f"workflow {workflow!r} names unknown commands"


def test_weasel_reads_every_dep_and_output_as_written():
    """confection joins two side-by-side list entries that are only a variable
    ("${vars.a}", "${vars.b}") into one string "a, b": weasel then reports that
    'a, b' is missing and the command never runs (benchmark-annotate did)."""
    import srsly
    from weasel.util import load_project_config

    raw = {cmd["name"]: cmd for cmd in srsly.read_yaml(ROOT / "project.yml")["commands"]}
    for cmd in load_project_config(ROOT)["commands"]:
        for key in ("deps", "outputs"):
            written, read = raw[cmd["name"]].get(key, []), cmd.get(key, [])
            assert len(read) == len(written), f"command {cmd['name']!r}: {key} {written} are read as {read}"


def test_readme_documents_the_project_as_it_is(tmp_path):
    """The README's commands/workflows/assets block is what `spacy project document`
    makes of project.yml now, and its vars table lists every var with its default."""
    import re

    import srsly
    from weasel.cli.document import project_document

    readme = (ROOT / "README.md").read_text(encoding="utf8")
    start, end = "<!-- WEASEL: AUTO-GENERATED DOCS START (do not remove) -->", "<!-- WEASEL: AUTO-GENERATED DOCS END (do not remove) -->"
    fresh = tmp_path / "README.md"
    project_document(ROOT, fresh, no_emoji=True)
    block = readme[readme.index(start) : readme.index(end) + len(end)]
    assert block == fresh.read_text(encoding="utf8").strip()

    section = readme[readme.index("## The GMB project") : readme.index(start)]
    documented = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            names, defaults = re.findall(r"`([^`]*)`", cells[0]), re.findall(r"`([^`]*)`", cells[1])
            assert len(names) == len(defaults), line
            documented.update(zip(names, defaults))
    variables = {name: str(value) for name, value in srsly.read_yaml(ROOT / "project.yml")["vars"].items()}
    assert documented == variables


@pytest.mark.parametrize("name", ["posattn_ner", "cnn_ner", "trf_ner"])
def test_every_shipped_config_validates_and_builds_its_pipeline(name):
    config = spacy.util.load_config(ROOT / "configs" / f"{name}.cfg")
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    assert "ner" in nlp.pipe_names or "posattn_ner" in nlp.pipe_names
