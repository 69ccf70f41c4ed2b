"""spacy_posattn_ner.settings: one owner of the runtime settings; validation at load."""
import json
import shutil
from pathlib import Path

import pytest
import spacy
import torch
from spacy.tokens import Doc

from spacy_posattn_ner.model.exit_policies import MAX_TOKEN_ENTROPY, max_token_entropy_confidence
from spacy_posattn_ner.settings import DEFAULTS, Settings

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "pipelines_3b33c82" / "v3_sentences"


@pytest.fixture()
def copy(tmp_path) -> Path:
    path = tmp_path / "model"
    shutil.copytree(FIXTURE, path)
    return path


def test_defaults_are_written_once_and_the_factory_uses_them():
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("posattn_ner")
    for key in ("exit_threshold", "precision", "train_precision", "scores", "candidate_threshold", "temperature"):
        assert getattr(ner.settings, key) == getattr(DEFAULTS, key) == getattr(ner, key)
    config = nlp.config["components"]["posattn_ner"]
    assert config["exit_policy"] == {"@misc": "spacy-posattn-ner.least_sure_token.v1"}
    assert config["model"]["@architectures"] == "spacy-posattn-ner.PosAttnTagger.v3"  # the shipped model
    assert config["model"]["exit_layers"] == [1, 3, -1] and config["model"]["backbone"]["sentence_windows"] is True


def test_assignment_validates_and_keeps_the_config_in_step():
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("posattn_ner")
    ner.settings.exit_threshold = 0.8
    assert ner.exit_threshold == 0.8 and nlp.config["components"]["posattn_ner"]["exit_threshold"] == 0.8
    ner.exit_policy = MAX_TOKEN_ENTROPY  # a registry name is resolved to the function
    assert ner.settings.exit_policy is max_token_entropy_confidence
    assert nlp.config["components"]["posattn_ner"]["exit_policy"] == {"@misc": MAX_TOKEN_ENTROPY}
    with pytest.raises(ValueError, match="exit_policy 'no.such.v1' is not a registered function"):
        ner.settings.exit_policy = "no.such.v1"
    with pytest.raises(ValueError, match="temperature must be a number, got 'hot'"):
        ner.settings.temperature = "hot"
    assert ner.temperature == 1.0


def test_override_restores_also_after_an_error():
    settings = Settings()
    with pytest.raises(RuntimeError):
        with settings.override(exit_threshold=0.0, precision="fp32"):
            assert (settings.exit_threshold, settings.precision) == (0.0, "fp32")
            raise RuntimeError("inside")
    assert (settings.exit_threshold, settings.precision) == (1.0, "auto")
    with pytest.raises(ValueError, match="scores must be true or false"):
        with settings.override(exit_threshold=0.5, scores="yes"):
            pass
    assert settings.exit_threshold == 1.0  # nothing set when one value is bad


@spacy.registry.misc("test.always_sure.v1")
def always_sure():
    return lambda log_probs, mask, segment, n: torch.ones(n)


@spacy.registry.misc("test.never_sure.v1")
def never_sure():
    return lambda log_probs, mask, segment, n: torch.zeros(n)


def test_the_engine_calls_the_exit_policy_chosen_in_the_config(copy):
    words = "Iran 's President Mahmoud Ahmadinejad spoke in London . He left on Tuesday .".split()
    layers = {}
    for name in ("test.always_sure.v1", "test.never_sure.v1"):
        nlp = spacy.load(copy, config={"components": {"posattn_ner": {"exit_policy": {"@misc": name}}}})
        with nlp.get_pipe("posattn_ner").settings.override(exit_threshold=0.5):
            layers[name] = nlp(Doc(nlp.vocab, words=words))._.exit_layers
    assert layers == {"test.always_sure.v1": [1, 1], "test.never_sure.v1": [2, 2]}


def _edit_cfg(path: Path, **changes) -> None:
    """Change the saved cfg: the fixture's is 3b33c82's (settings at its top level)."""
    cfg_path = path / "posattn_ner" / "cfg"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(changes)
    cfg_path.write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"temperature": -1}, "temperature must be a finite number > 0, got -1.0"),
        ({"candidate_threshold": 5}, r"candidate_threshold must be in \(0, 1\]"),
        ({"scores": "yes"}, "scores must be true or false, got 'yes'"),
        ({"labels": ["geo", "B-geo"]}, r"labels\[1\] = 'B-geo'"),
        ({"labels": ["geo", ""]}, r"labels\[1\] = ''"),
        ({"n_layers": -3}, "n_layers = -3"),
        ({"hidden_width": 10**9}, "hidden_width = 1000000000"),
    ],
)
def test_bad_cfg_names_the_file_and_the_setting(copy, changes, message):
    _edit_cfg(copy, **changes)
    with pytest.raises(ValueError, match=message) as err:
        spacy.load(copy)
    assert str(copy / "posattn_ner" / "cfg") in str(err.value)


@pytest.mark.parametrize("text", ["{not json", '{"labels": ["geo"], "temperature": NaN}', "[1, 2]"])
def test_unreadable_cfg_names_the_file(copy, text):
    (copy / "posattn_ner" / "cfg").write_text(text)
    with pytest.raises(ValueError, match="posattn_ner/cfg") as err:
        spacy.load(copy)
    assert "Expected object or value" not in str(err.value).split(":")[0]


@pytest.mark.parametrize(
    "key, value, message",
    [("n_heads", 0, "n_heads = 0"), ("width", -8, "width = -8"), ("width", 100000, "width = 100000"),
     ("lexical_width", 70000, "lexical_width = 70000"), ("max_distance", -1, "max_distance = -1")],
)
def test_bad_model_sizes_in_config_cfg_fail_before_allocation(copy, key, value, message):
    config_path = copy / "config.cfg"
    lines = config_path.read_text().splitlines()
    block, out = None, []
    for line in lines:
        if line.startswith("["):
            block = line
        if block == "[components.posattn_ner.model]" and line.startswith(f"{key} ="):
            line = f"{key} = {value}"
        out.append(line)
    config_path.write_text("\n".join(out) + "\n")
    with pytest.raises(ValueError, match=message) as err:
        spacy.load(copy)
    assert "config.cfg [components.posattn_ner.model]" in str(err.value)


def test_bad_setting_in_a_new_cfg_names_the_file(copy, tmp_path):
    spacy.load(copy).to_disk(tmp_path / "new")
    cfg_path = tmp_path / "new" / "posattn_ner" / "cfg"
    cfg = json.loads(cfg_path.read_text())
    assert cfg["settings"]["temperature"] == 1.0 and "temperature" not in cfg
    cfg["settings"]["exit_threshold"] = -2
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=f"{cfg_path}: posattn_ner: exit_threshold must be a number >= 0"):
        spacy.load(tmp_path / "new")


def test_saved_settings_come_back_and_the_loading_config_wins(copy, tmp_path):
    nlp = spacy.load(copy)
    ner = nlp.get_pipe("posattn_ner")
    ner.settings.update(exit_threshold=0.7, temperature=1.5)
    nlp.to_disk(tmp_path / "saved")
    back = spacy.load(tmp_path / "saved").get_pipe("posattn_ner")
    assert (back.exit_threshold, back.temperature) == (0.7, 1.5)
    over = spacy.load(tmp_path / "saved", config={"components": {"posattn_ner": {"temperature": 2.0}}})
    assert (over.get_pipe("posattn_ner").exit_threshold, over.get_pipe("posattn_ner").temperature) == (0.7, 2.0)
