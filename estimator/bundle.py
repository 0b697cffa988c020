"""Model bundles: a directory with a JSON manifest and model files in safe formats, never pickles."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from estimator.drift import aged
from estimator.errors import BundleError, DeepRestError, InputError
from estimator.features import HistoryState, Vocabulary
from estimator.models import QuantileModel, model_class
from estimator.windows import SeriesKey, Window, check_windows

FORMAT_VERSION = 2
"""2: XGBoost series carry reservoirs (state that fills, drains and stops at a capacity)."""
MANIFEST = "manifest.json"
MODEL_DIR = "model"
SYNTHESIZER = "synthesizer.json"
LAYOUT = "layout.sha256"
"""A checksummed file holding the digest of the manifest, all but its list of file checksums
(`manifest:HEX`): an edit to the series, the vocabulary, the window length or the model's own
parameters would change or relabel the estimates. Bundles saved before it held every field hold
the bare digest of the series, vocabulary and window length, still checked."""
WHOLE = "manifest:"
MIN_WINDOW_SECONDS = 0.001
"""The shortest window length a manifest may give: rates per window divide by it."""

UNREADABLE = (
    LookupError, ValueError, OSError, RuntimeError, MemoryError, ArithmeticError, AttributeError,
)  # fmt: skip
"""What reading model files may raise on content that is not what their names say (numpy,
XGBoost, safetensors and torch each have their own): a bundle that does not load, never an
internal error. RuntimeError includes RecursionError (JSON nested too deep)."""


def _layout_digest(manifest: dict[str, Any]) -> str:
    fields = {k: manifest.get(k) for k in ("series", "vocabulary", "window_seconds")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _manifest_digest(manifest: dict[str, Any], steady: bool = True) -> str:
    """The digest of the manifest but its file checksums and (with `steady`; bundles saved
    before it digested them too) what differs between two trainings of the same model."""
    fields = {k: v for k, v in (_steady(manifest) if steady else manifest).items() if k != "files"}
    return WHOLE + hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


CIRCUMSTANCES = ("seconds",)
"""Training fields that say how a training went, not what it made (its wall time)."""


def _steady(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest without CIRCUMSTANCES: two trainings on the same data and parameters give
    the same model, and so the same digest and version."""
    training = manifest.get("training")
    if not isinstance(training, dict):
        return manifest
    kept = {k: v for k, v in training.items() if k not in CIRCUMSTANCES}
    return {**manifest, "training": kept}


def _version(manifest: dict[str, Any]) -> str:
    """A bundle's version: 12 hex digits of the digest of its steady manifest, files included."""
    return hashlib.sha256(json.dumps(_steady(manifest), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PredictState:
    """Where `Bundle.predict` left off: the traffic history after the last window, and the last
    `model.context` feature rows (fewer near the start), the model's look-back. Passed to the next
    call, windows estimated in batches get the estimates of one call over them all, to floating
    point rounding (the traffic averages are summed in another order)."""

    history: HistoryState
    rows: np.ndarray  # [at most model.context, features]


@dataclass
class Bundle:
    """Everything needed to estimate usage from windows: vocabulary, series, fitted model."""

    vocabulary: Vocabulary
    series: list[SeriesKey]
    model: QuantileModel
    window_seconds: float
    training: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    synthesizer: dict[str, Any] | None = None
    version: str = ""

    def predict(
        self, windows: Sequence[Window], state: PredictState | None = None, aged: bool = True
    ) -> tuple[np.ndarray, PredictState]:
        """[windows, series, 3] for time-ordered windows, and where they leave off (`state`, to
        continue with the windows after them: the traffic history and the model's look-back).

        Bands of windows after the training end widen where the validation tail showed drift;
        `aged=False` keeps the model's band (what-if traffic, whose times are only labels).
        Windows out of time order (where `aged`), or with counts that are no finite non-negative
        numbers, and a `state` of another bundle, are an InputError.
        """
        check_windows(windows, ordered=aged)
        if state is not None:
            self._check_state(state)
        X, history = self.vocabulary.transform(windows, None if state is None else state.history)
        before = X[:0] if state is None else state.rows
        rows = np.vstack([before, X])
        pred = self.model.predict(rows)[len(before) :]
        state = PredictState(history, rows[len(rows) - min(len(rows), self.model.context) :])
        if not aged:
            return pred, state
        starts = np.array([w.start for w in windows], dtype=float)
        return self.age_band(pred, starts), state

    def _check_state(self, state: PredictState) -> None:
        """A state this bundle's `predict` returned: its history and rows fit the features."""
        if not isinstance(state, PredictState):  # a traffic history alone, as releases gave
            raise InputError(
                f"expected the PredictState this bundle's predict returned, got "
                f"{type(state).__name__}",
                field="state",
            )
        sums = np.shape(state.history.sums)
        width = len(self.vocabulary.components) + len(self.vocabulary.operations)
        n_rows, n_features = np.shape(state.rows)
        fits = sums == (len(self.vocabulary.halflives), width)
        if not fits or n_features != self.vocabulary.n_features or n_rows > self.model.context:
            raise InputError(
                f"a state of another bundle (traffic history {sums}, rows {state.rows.shape}); "
                "pass the state this bundle's predict returned, or none",
                field="state",
            )

    def drift(self) -> np.ndarray:
        """Per series drift rate (usage per window) from the validation tail; 0 where none."""
        rates = self.validation.get("drift")
        if rates is None:  # bundles trained before drift was measured
            return np.zeros(len(self.series))
        return np.array([0.0 if r is None else float(r) for r in rates])

    def age_band(self, pred: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Estimates [windows, series, 3] of windows starting at `starts`, their bands widened for
        the time since the training end (`estimator.drift.aged`)."""
        end = float(self.training.get("end", np.inf))
        ages = (np.asarray(starts, dtype=float) - end) / self.window_seconds + 1.0
        since = float(self.validation.get("windows", 0)) / 2.0
        cap = float(self.training.get("windows", 0))
        return aged(pred, ages, self.drift(), since, cap)

    def manifest(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "window_seconds": self.window_seconds,
            "series": [list(s) for s in self.series],
            "vocabulary": self.vocabulary.to_json(),
            "training": self.training,
            "validation": self.validation,
            "model": {"kind": self.model.kind, "series_kinds": self.model.series_kinds()},
            "synthesizer": SYNTHESIZER if self.synthesizer is not None else None,
        }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_bundle_target(directory: str | Path) -> Path:
    """A path a bundle may be saved to: one that does not exist, an empty directory, or a
    bundle's directory (which saving replaces whole); anything else is an InputError, since
    saving would delete what it holds."""
    directory = Path(directory)
    if not directory.exists():
        return directory
    if not directory.is_dir():
        raise InputError("is a file; expected a bundle directory", source=str(directory))
    if any(directory.iterdir()) and not (directory / MANIFEST).is_file():
        raise InputError(
            "is a directory that holds files but no model bundle; saving a bundle replaces its "
            "directory whole: give a new or empty directory, or a bundle's",
            source=str(directory),
        )
    return directory


def save_bundle(bundle: Bundle, directory: str | Path) -> Path:
    """Write the bundle into `directory` (created with its parents); an existing bundle
    directory is replaced whole, and any other non-empty one is refused (InputError)."""
    directory = check_bundle_target(directory)
    target = directory.absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    # a name of its own beside the target (created with the user's umask), so that nothing
    # of the user's is replaced but the bundle, and a failed save leaves nothing behind
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        manifest = _write_bundle(bundle, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    bundle.version = _version(manifest)
    return directory


def _write_bundle(bundle: Bundle, tmp: Path) -> dict[str, Any]:
    """Write the bundle's files into the new directory `tmp`; its manifest."""
    (tmp / MODEL_DIR).mkdir(parents=True)
    manifest = bundle.manifest()
    manifest["model"]["meta"] = bundle.model.save(tmp / MODEL_DIR)
    if bundle.synthesizer is not None:
        (tmp / SYNTHESIZER).write_text(json.dumps(bundle.synthesizer), encoding="utf-8")
    (tmp / LAYOUT).write_text(_manifest_digest(manifest) + "\n", encoding="utf-8")
    manifest["files"] = {
        str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()
    }
    text = json.dumps(manifest, indent=1, sort_keys=True)
    (tmp / MANIFEST).write_text(text, encoding="utf-8")
    return manifest


def load_bundle(directory: str | Path) -> Bundle:
    """Load and verify a bundle: manifest, format version, file hashes, shapes."""
    directory = Path(directory)
    path = directory / MANIFEST
    try:
        is_bundle = path.is_file()
    except OSError as exc:  # a name too long, a folder not to be read
        raise BundleError(f"{directory}: cannot be read ({exc.strerror})") from exc
    if not is_bundle:
        raise BundleError(f"{directory}: not a model bundle (no {MANIFEST}); train one first")
    try:
        text = path.read_text(encoding="utf-8")
        manifest = json.loads(text)
    except (OSError, ValueError, RecursionError) as exc:  # also a number of too many digits
        raise BundleError(f"{path}: manifest is unreadable or truncated ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        found = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise BundleError(
            f"{path}: format_version {found!r} is not {FORMAT_VERSION}; retrain with this version"
        )
    try:
        files = dict(manifest["files"])
        model_info = manifest["model"]
        series = [(str(c), str(r)) for c, r in manifest["series"]]
        window_seconds = float(manifest["window_seconds"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{path}: manifest lacks or mangles a field ({exc!r})") from exc
    if not (math.isfinite(window_seconds) and window_seconds >= MIN_WINDOW_SECONDS):
        raise BundleError(
            f"{path}: window_seconds {window_seconds} is not a window length (at least "
            f"{MIN_WINDOW_SECONDS:g} s)"
        )
    if len(set(series)) != len(series):
        twice = next(s for s in series if series.count(s) > 1)
        raise BundleError(f"{path}: series {twice[0]}/{twice[1]} is listed twice")
    root = directory.resolve()
    model_files = (directory / MODEL_DIR).rglob("*") if (directory / MODEL_DIR).is_dir() else ()
    # every entry but folders: a named pipe the model would open must not block a load
    present = {str(p.relative_to(directory)) for p in model_files if not p.is_dir()}
    present |= {name for name in (SYNTHESIZER, LAYOUT) if (directory / name).is_file()}
    unlisted = sorted(present - set(files))
    if unlisted:
        raise BundleError(
            f"{directory}: file {unlisted[0]} is not listed in the manifest (an edited bundle)"
        )
    for name, digest in files.items():
        if not isinstance(name, str) or not name or "\0" in name:
            raise BundleError(f"{path}: file name {name!r} is not a path in the bundle")
        file = directory / name
        try:
            inside = file.resolve().is_relative_to(root)
        except (OSError, RuntimeError) as exc:  # a symlink loop
            raise BundleError(f"{directory}: file {name} cannot be resolved ({exc})") from exc
        if not inside:
            raise BundleError(f"{path}: file {name} lies outside the bundle")
        if not file.is_file():
            raise BundleError(f"{directory}: file {name} listed in the manifest is missing")
        if _sha256(file) != digest:
            raise BundleError(f"{directory}: file {name} does not match its checksum (corrupted)")
    if LAYOUT in files:  # bundles saved before it have none
        try:
            layout = (directory / LAYOUT).read_text(encoding="utf-8").strip()
        except (OSError, ValueError) as exc:
            raise BundleError(f"{directory}: {LAYOUT} is unreadable ({exc})") from exc
        _check_digest(path, layout, manifest)
    try:
        vocabulary = Vocabulary.from_json(manifest.get("vocabulary") or {})
    except BundleError as exc:  # named with the manifest, as the other fields are
        raise BundleError(f"{path}: {exc}") from exc
    synthesizer = None
    if manifest.get("synthesizer") is not None:
        named = manifest["synthesizer"]
        if not isinstance(named, str) or named not in files:
            raise BundleError(f"{path}: synthesizer file is not listed among the bundle's files")
        try:
            synthesizer = json.loads((directory / SYNTHESIZER).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            raise BundleError(f"{directory}: {SYNTHESIZER} is unreadable ({exc})") from exc
    try:
        cls = model_class(str(model_info["kind"]))
        model = cls.load(directory / MODEL_DIR, model_info.get("meta") or {})
    except BundleError as exc:
        if str(exc).startswith(str(directory)):
            raise
        raise BundleError(f"{directory}: {exc}") from exc
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise BundleError(f"{directory}: model files do not load ({exc})") from exc
        raise BundleError(
            f"{directory}: the model has a setting this release does not know "
            f"({str(exc).rsplit(' ', 1)[-1]}): a bundle of a newer release? retrain with this one"
        ) from exc
    except (DeepRestError, *UNREADABLE) as exc:
        raise BundleError(f"{directory}: model files do not load ({_first_line(exc)})") from exc
    if getattr(model, "n_features_", vocabulary.n_features) != vocabulary.n_features:
        raise BundleError(
            f"{directory}: model expects {model.n_features_} features, "
            f"vocabulary gives {vocabulary.n_features} (mismatched bundle)"
        )
    if getattr(model, "n_series_", len(series)) != len(series):
        raise BundleError(
            f"{directory}: model serves {model.n_series_} series, manifest {len(series)}"
        )
    try:  # parameters of mismatched sizes or types show here first
        with np.errstate(all="ignore"):
            probe = np.asarray(model.predict(np.zeros((1, vocabulary.n_features))), dtype=float)
    except (DeepRestError, TypeError, *UNREADABLE) as exc:
        raise BundleError(
            f"{directory}: the model's files and manifest do not fit together ({_first_line(exc)})"
        ) from exc
    if probe.shape != (1, len(series), 3):
        raise BundleError(
            f"{directory}: the model gives {probe.shape[1:]} estimates per window, not a band of "
            f"each of its {len(series)} series (mismatched bundle)"
        )
    if not np.isfinite(probe).all():  # NaN or infinite parameters (a bundle of an older release)
        raise BundleError(
            f"{directory}: the model gives no number for idle traffic (a parameter in its "
            "manifest or model files is NaN or infinite); retrain"
        )
    training, validation = manifest.get("training") or {}, manifest.get("validation") or {}
    _check_aging(path, training, validation, len(series))
    return Bundle(
        vocabulary=vocabulary,
        series=series,
        model=model,
        window_seconds=window_seconds,
        training=training,
        validation=validation,
        synthesizer=synthesizer,
        version=_version(manifest),
    )


def _first_line(exc: BaseException) -> str:
    """An exception's first line: libraries' messages may go on with their own stack traces."""
    return (str(exc).strip().splitlines() or [repr(exc)])[0]


def _check_digest(path: Path, digest: str, manifest: dict[str, Any]) -> None:
    """The manifest as saved: every field (a bundle's own digest), or, in bundles saved before
    that, its series, vocabulary and window length."""
    if digest.startswith(WHOLE):
        if digest not in (_manifest_digest(manifest), _manifest_digest(manifest, steady=False)):
            raise BundleError(
                f"{path}: differs from the manifest the model was saved with (an edited manifest "
                "would change or relabel the estimates); retrain, or restore the bundle"
            )
    elif digest != _layout_digest(manifest):
        raise BundleError(
            f"{path}: its series, vocabulary or window length differ from those the model was "
            "trained with (an edited manifest would relabel the estimates); retrain"
        )


def _check_aging(path: Path, training: Any, validation: Any, n_series: int) -> None:
    """What widening bands with age reads from a manifest: the training end and length as
    numbers, and drift rates as one finite number (or null) per series, or none at all."""
    if not isinstance(training, dict) or not isinstance(validation, dict):
        raise BundleError(f"{path}: training and validation must be objects")
    for name, record in (("end", training), ("windows", training), ("windows", validation)):
        value = record.get(name, 0)
        if not _is_number(value):
            where = "training" if record is training else "validation"
            raise BundleError(f"{path}: {where}.{name} must be a number, got {value!r}")
    for where, record, name in (
        ("validation", validation, "drift"),
        ("training", training, "usage_peaks"),  # what-if compares its answers with these
        ("training", training, "usage_lows"),
    ):
        values = record.get(name)
        if values is None:
            continue
        ok = isinstance(values, list) and len(values) == n_series
        if not (ok and all(v is None or _is_number(v) for v in values)):
            raise BundleError(
                f"{path}: {where}.{name} must list one finite number (or null) per series "
                f"({n_series})"
            )


def _is_number(value: Any) -> bool:
    """A finite JSON number (not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
