"""Bundles whose checksums agree but whose content does not: each is a BundleError (exit status
2, HTTP 422), never an internal error. The checksums and the layout digest are written anew
after each edit, as a bundle copied from a broken writer or edited on purpose would have them."""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.lib.format as npy_format
import pytest

from estimator.bundle import LAYOUT, MANIFEST, Bundle, _manifest_digest, _sha256, save_bundle
from estimator.bundle import load_bundle as load
from estimator.errors import BundleError
from estimator.features import Vocabulary
from estimator.models import make_model
from estimator.synthesizer import Synthesizer
from exporter.cli import main
from exporter.live import validation_accuracy
from tests.worlds import tiny_world

FAST: dict[str, dict[str, Any]] = {
    "xgboost": {"n_estimators": 5},
    "qrnn": {"epochs": 1, "hidden": 4, "context": 2, "progress": False},
}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    windows = tiny_world(80, seed=3)
    vocabulary = Vocabulary.build(windows)
    series = sorted({k for w in windows for k in w.metrics})
    X, _ = vocabulary.transform(windows)
    Y = np.array([[w.metrics[k] for k in series] for w in windows])
    out = {}
    for kind, params in FAST.items():
        model = make_model(kind, **params).fit(X, Y, vocabulary.layout.for_series(series))
        bundle = Bundle(vocabulary=vocabulary, series=series, model=model, window_seconds=60.0)
        out[kind] = save_bundle(bundle, root / kind)
    return out


def _rewrite(bundle: Path, manifest: dict[str, Any], text: str | None = None) -> None:
    """The manifest with its layout digest and the checksums of its listed files made anew."""
    (bundle / LAYOUT).write_text(_manifest_digest(manifest) + "\n", encoding="utf-8")
    for name in manifest["files"]:
        if isinstance(name, str) and (bundle / name).is_file():
            manifest["files"][name] = _sha256(bundle / name)
    (bundle / MANIFEST).write_text(text if text is not None else json.dumps(manifest))


def _manifest(bundle: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((bundle / MANIFEST).read_text())
    return manifest


def _nested_manifest(b: Path, m: dict[str, Any]) -> None:
    _rewrite(b, m, "[" * 100_000 + "]" * 100_000)


def _long_number(b: Path, m: dict[str, Any]) -> None:
    _rewrite(
        b, m, json.dumps(m).replace('"window_seconds": 60.0', '"window_seconds": ' + "9" * 5000)
    )


def _name_not_text(b: Path, m: dict[str, Any]) -> None:
    _rewrite(b, m, json.dumps({**m, "files": [[1, "00"], *m["files"].items()]}))


def _name_with_nul(b: Path, m: dict[str, Any]) -> None:
    m["files"]["model/a\u0000b"] = "00"
    _rewrite(b, m)


def _model_folder_loops(b: Path, m: dict[str, Any]) -> None:
    shutil.rmtree(b / "model")
    (b / "model").symlink_to(b / "model")


def _layout_not_utf8(b: Path, m: dict[str, Any]) -> None:
    _rewrite(b, m)
    (b / LAYOUT).write_bytes(b"\xff\xfe")
    m["files"][LAYOUT] = _sha256(b / LAYOUT)
    (b / MANIFEST).write_text(json.dumps(m))


def _synthesizer_named_by_a_list(b: Path, m: dict[str, Any]) -> None:
    m["synthesizer"] = ["synthesizer.json"]
    _rewrite(b, m)


def _synthesizer_nested(b: Path, m: dict[str, Any]) -> None:
    (b / "synthesizer.json").write_text("[" * 100_000 + "]" * 100_000)
    m["synthesizer"] = "synthesizer.json"
    m["files"]["synthesizer.json"] = ""
    _rewrite(b, m)


def _intercept_short(b: Path, m: dict[str, Any]) -> None:
    m["model"]["meta"]["intercept"] = m["model"]["meta"]["intercept"][:2]
    _rewrite(b, m)


def _column_out_of_range(b: Path, m: dict[str, Any]) -> None:
    m["model"]["meta"]["load_columns"] = [10**6]
    _rewrite(b, m)


def _npy_header_too_large(b: Path, m: dict[str, Any]) -> None:
    with open(b / "model" / "weights.npy", "wb") as handle:  # 728 TiB said, none there
        header = {"descr": "<f8", "fortran_order": False, "shape": (10**7, 10**7)}
        npy_format.write_array_header_1_0(handle, header)
    _rewrite(b, m)


def _halflife_infinite(b: Path, m: dict[str, Any]) -> None:
    m["vocabulary"]["halflives"][-1] = float("inf")
    _rewrite(b, m)


def _usage_peaks_as_text(b: Path, m: dict[str, Any]) -> None:
    m["training"]["usage_peaks"] = ["high"] * len(m["series"])  # whatif divided by them
    _rewrite(b, m)


def _weights_complex(b: Path, m: dict[str, Any]) -> None:
    path = b / "model" / "weights.npy"
    np.save(path, np.load(path) + 1j, allow_pickle=False)  # the imaginary part was dropped
    _rewrite(b, m)


def _margin_of_one_value(b: Path, m: dict[str, Any]) -> None:
    m["model"]["meta"]["margin"] = m["model"]["meta"]["margin"][:1]  # it broadcast
    _rewrite(b, m)


def _history_column_out_of_range(b: Path, m: dict[str, Any]) -> None:
    m["model"]["meta"]["history_columns"] = [10**6]
    _rewrite(b, m)


def _series_twice(b: Path, m: dict[str, Any]) -> None:
    m["series"][1] = m["series"][0]
    _rewrite(b, m)


def _halflife_negative(b: Path, m: dict[str, Any]) -> None:
    m["vocabulary"]["halflives"][0] = -5.0  # the traffic averages grew without bound
    _rewrite(b, m)


def _window_of_no_length(b: Path, m: dict[str, Any]) -> None:
    m["window_seconds"] = 1e-300
    _rewrite(b, m)


def _safetensors_offsets_lie(b: Path, m: dict[str, Any]) -> None:
    path = b / "model" / "qrnn.safetensors"
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    name = next(k for k in header if k != "__metadata__")
    header[name]["data_offsets"] = [0, 10**12]
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])
    _rewrite(b, m)


DAMAGES: dict[str, tuple[str, Callable[[Path, dict[str, Any]], None]]] = {
    "manifest nested too deep": ("xgboost", _nested_manifest),
    "number of 5000 digits": ("xgboost", _long_number),
    "file name not text": ("xgboost", _name_not_text),
    "file name with NUL": ("xgboost", _name_with_nul),
    "model folder a symlink loop": ("xgboost", _model_folder_loops),
    "layout not UTF-8": ("xgboost", _layout_not_utf8),
    "synthesizer named by a list": ("xgboost", _synthesizer_named_by_a_list),
    "synthesizer nested too deep": ("xgboost", _synthesizer_nested),
    "intercept of 2 series": ("xgboost", _intercept_short),
    "column out of range": ("xgboost", _column_out_of_range),
    "npy header of 728 TiB": ("xgboost", _npy_header_too_large),
    "halflife infinite": ("xgboost", _halflife_infinite),
    "usage peaks as text": ("xgboost", _usage_peaks_as_text),
    "safetensors offsets lie": ("qrnn", _safetensors_offsets_lie),
    "weights complex": ("xgboost", _weights_complex),
    "margin of one value": ("xgboost", _margin_of_one_value),
    "history column out of range": ("xgboost", _history_column_out_of_range),
    "a series listed twice": ("xgboost", _series_twice),
    "halflife negative": ("xgboost", _halflife_negative),
    "window of 1e-300 s": ("xgboost", _window_of_no_length),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_bundle_whose_checksums_agree_but_content_does_not_is_a_bundle_error(
    bundles: dict[str, Path], tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    kind, edit = DAMAGES[damage]
    bundle = tmp_path / "b"
    shutil.copytree(bundles[kind], bundle)
    edit(bundle, _manifest(bundle))
    with pytest.raises(BundleError):
        load(bundle)
    args = ["whatif", "--model", str(bundle), "--scale", "2", "--out", str(tmp_path / "w")]
    assert main(args) == 2
    said = capsys.readouterr().err
    assert said.startswith(f"deeprest whatif: error: {bundle}") and "Traceback" not in said


def test_the_undamaged_bundles_load(bundles: dict[str, Path]) -> None:
    for path in bundles.values():
        assert load(path).series


def test_a_synthesizer_or_accuracy_of_another_shape_is_no_internal_error() -> None:
    with pytest.raises(BundleError, match="trace synthesizer in manifest is malformed"):
        Synthesizer.from_json({"apis": [1]})
    series = [("a", "cpu"), ("b", "cpu")]
    assert validation_accuracy({"accuracy": ["x", 0.5]}, series) == {("b", "cpu"): 0.5}
    assert validation_accuracy({"accuracy": {"a": {"cpu": "x", "memory": 1}}}, series) == {
        ("a", "memory"): 1.0
    }


def test_a_named_pipe_among_the_model_files_is_refused_not_opened(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    """A pipe the manifest does not list: the model's loader would block on it for ever."""
    import os

    bundle = tmp_path / "b"
    shutil.copytree(bundles["xgboost"], bundle)
    weights = bundle / "model" / "weights.npy"
    manifest = _manifest(bundle)
    manifest["files"].pop("model/weights.npy")
    weights.unlink()
    os.mkfifo(weights)
    _rewrite(bundle, manifest)
    with pytest.raises(BundleError, match="model/weights.npy is not listed in the manifest"):
        load(bundle)
