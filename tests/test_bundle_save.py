"""Saving a bundle through the library: what it may replace, and what it leaves behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from estimator.bundle import Bundle, load_bundle, save_bundle
from estimator.errors import InputError
from estimator.training import TrainConfig, train_bundle
from tests.worlds import tiny_world


def _bundle() -> Bundle:
    return train_bundle(tiny_world(60), TrainConfig(model="linear"))


def test_saving_into_a_directory_of_other_files_is_refused_and_deletes_nothing(
    tmp_path: Path,
) -> None:
    target = tmp_path / "work"
    (target / "sub").mkdir(parents=True)
    (target / "notes.txt").write_text("precious")
    (target / "sub" / "data.csv").write_text("x")
    with pytest.raises(InputError, match="holds files but no model bundle"):
        save_bundle(_bundle(), target)
    assert (target / "notes.txt").read_text() == "precious"
    assert (target / "sub" / "data.csv").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]  # no temporary left behind


def test_a_bundle_replaces_a_bundle_or_fills_an_empty_directory(tmp_path: Path) -> None:
    bundle = _bundle()
    (tmp_path / "empty").mkdir()
    save_bundle(bundle, tmp_path / "empty")
    save_bundle(bundle, tmp_path / "empty")  # a bundle's directory: replaced whole
    assert load_bundle(tmp_path / "empty").version == bundle.version
    sibling = tmp_path / "empty.tmp"  # a folder of the user's that the old temporary name hit
    sibling.mkdir()
    (sibling / "keep.txt").write_text("mine")
    save_bundle(bundle, tmp_path / "empty")
    assert (sibling / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "empty.tmp"]


def test_saving_over_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "b").write_text("not a directory")
    with pytest.raises(InputError, match="is a file"):
        save_bundle(_bundle(), tmp_path / "b")
    assert (tmp_path / "b").read_text() == "not a directory"


def test_train_refuses_an_out_directory_of_other_files_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from estimator.windows import write_windows
    from exporter.cli import main

    write_windows(tmp_path / "d.jsonl", tiny_world(60))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("precious")
    args = ["train", "--data", str(tmp_path / "d.jsonl"), "--model", "linear"]
    assert main([*args, "--out", str(tmp_path / "home")]) == 2
    assert "holds files but no model bundle" in capsys.readouterr().err
    assert (tmp_path / "home" / "notes.txt").read_text() == "precious"
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0  # a bundle: replaced


@pytest.mark.parametrize("kind", ["qrnn", "auto"])
def test_two_trainings_of_a_neural_model_save_one_version(kind: str, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    qrnn = {"epochs": 2, "hidden": 4, "context": 2, "progress": False}
    params = qrnn if kind == "qrnn" else {"candidates": ["qrnn"], "params": {"qrnn": qrnn}}
    config = TrainConfig(model=kind, model_params=params)
    versions = []
    for name in ("a", "b"):
        save_bundle(train_bundle(tiny_world(80), config), tmp_path / name)
        versions.append(load_bundle(tmp_path / name).version)
    assert versions[0] == versions[1]
