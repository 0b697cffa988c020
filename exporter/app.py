"""The Flask app of contract 4: /metrics, /v1/traces, what-if, model, health and readiness."""

from __future__ import annotations

import hmac
import json
import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np
from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from estimator.bundle import Bundle, load_bundle
from estimator.errors import BundleError, InputError, count_of
from estimator.latency import latency_at_loads, window_load
from estimator.synthesizer import Synthesizer
from estimator.whatif import (
    MAX_RATE,
    MAX_SCALE,
    Allowed,
    allowed_scales,
    monotone_in_scale,
    peaks,
    recorded_at_scale,
    search_ceiling,
)
from estimator.windows import LATENCY_STATISTICS, Pair, Window, api_counts
from exporter.commands.whatif import no_curve_note, past_training_note, traffic_reach
from exporter.live import Estimator, ModelInfo
from exporter.receiver import (
    OtlpError,
    count_spans,
    decode_body,
    extract_spans,
    read_limited,
    status_body,
    success_body,
)
from exporter.skew import Reach, check_times

if TYPE_CHECKING:
    from exporter.runtime import Runtime

log = logging.getLogger("deeprest.app")


def _error(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"error": message}), status


def model_json(info: ModelInfo) -> dict[str, Any]:
    """The body of GET /api/v1/model."""
    return {
        "model": info.kind,
        "version": info.version,
        "window_seconds": info.window_seconds,
        "training": {k: v for k, v in info.training.items() if k != "reference_traffic"},
        "series": [
            {
                "component": c,
                "resource": r,
                "model": info.kinds.get((c, r), info.kind),
                "accuracy": info.accuracy.get((c, r)),
                "drift_per_window": info.drift.get((c, r), 0.0),
            }
            for c, r in info.series
        ],
        "apis": list(info.apis),
    }


def ingest(runtime: Runtime) -> Response:
    """POST /v1/traces: decode, validate, buffer; partial success for unusable spans."""
    content_type = request.headers.get("Content-Type", "")
    limits = runtime.config.receiver
    try:
        body = read_limited(request.stream, request.content_length, limits.max_body_bytes)
        message, malformed = decode_body(
            body, content_type, request.headers.get("Content-Encoding", ""), limits
        )
        n = count_spans(message) + malformed
        if n > limits.max_spans_per_request:  # a request refused whole: its spans are not counted
            raise OtlpError(
                413, "too_many_spans", f"{n} spans exceed {limits.max_spans_per_request} a request"
            )
        decoded = extract_spans(message, limits.sampling_ratio)
        if malformed:
            decoded.rejected["malformed"] = malformed
        now = runtime.clock()
        aggregator = runtime.loop.aggregator
        skew = check_times(decoded, Reach.of(now, *aggregator.reach(now), aggregator.window))
        assembler = runtime.loop.assembler
        if not assembler.add(decoded.spans, now):  # the client retries
            if assembler.stopped:  # what it holds is kept already: a span now would be lost
                raise OtlpError(503, "stopping", "the exporter is stopping; retry later")
            raise OtlpError(503, "queue_full", "span buffer is full; retry later")
    except OtlpError as exc:
        runtime.stats.refuse(exc.reason)
        data, kind = status_body(exc, content_type)
        response = Response(data, status=exc.status, content_type=kind)
        if exc.status in (429, 503):
            response.headers["Retry-After"] = str(max(1, math.ceil(limits.retry_after)))
        return response
    runtime.stats.count(len(decoded.spans) + decoded.n_rejected, decoded.rejected)
    runtime.skew_log.note(skew, now)
    data, kind = success_body(decoded, content_type)
    return Response(data, status=200, content_type=kind)


class _Members(list):  # type: ignore[type-arg]
    """A JSON object's members as decoded, in order, keys given twice kept (see `_objects`)."""


def _objects(value: Any, where: str = "") -> Any:
    """Decoded JSON with its objects made dicts; a key given twice in one object is an error
    naming its path (json would keep the last silently). Iterative: nesting depth is free."""
    root: list[Any] = [value]
    stack: list[tuple[list[Any] | dict[str, Any], int | str, Any, str]] = [(root, 0, value, where)]
    while stack:
        holder, slot, item, path = stack.pop()
        if isinstance(item, _Members):
            out: dict[str, Any] = {}
            for key, member in item:
                field = f"{path}.{key}" if path else key
                if key in out:
                    raise InputError("given twice in one object", field=field)
                out[key] = member
                stack.append((out, key, member, field))
            holder[slot] = out  # type: ignore[index]
        elif isinstance(item, list):
            for k, member in enumerate(item):
                stack.append((item, k, member, f"{path}[{k}]"))
    return root[0]


MAX_API_BODY = 1 << 20
"""Bytes the body of a what-if or reload request may hold (a what-if naming thousands of APIs
takes tens of kilobytes): a larger one is refused with 413 before it is read, or, sent without a
length, once past it, so that no body can take the exporter's memory."""


def _read_body() -> bytes:
    """The request's body, refused past MAX_API_BODY (see `read_limited`: OtlpError 413)."""
    return read_limited(request.stream, request.content_length, MAX_API_BODY)


def _json_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of a request body (any Content-Type: the body says what it is)."""
    try:
        body = _objects(json.loads(raw.decode("utf-8"), object_pairs_hook=_Members))
    except UnicodeDecodeError:
        raise InputError("the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"the body is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except RecursionError:
        raise InputError("the body nests arrays or objects too deep") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise InputError(f"the body holds a number too long: {exc}") from None
    if not isinstance(body, dict):
        raise InputError(f"the body must be a JSON object, got {_json_kind(body)}")
    return body


def _json_kind(value: Any) -> str:
    """How JSON names a decoded value's type (null, not NoneType)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


MAX_WINDOWS = 1000
"""The most windows of per-API rates one request may ask for."""

WHATIF_FIELDS = ("scale", "rates", "windows", "latency")


def _positive(value: Any, name: str, most: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"expected a number, got {_json_kind(value)}", field=name)
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not 0 <= number <= most:  # NaN fails too
        shown = value if number <= most or isinstance(value, float) else f"{str(value)[:12]}..."
        raise InputError(f"expected a number from 0 to {most:g}, got {shown}", field=name)
    return number


def _windows(body: dict[str, Any]) -> int:
    value = body.get("windows", 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WINDOWS:
        raise InputError(f"expected a whole number from 1 to {MAX_WINDOWS}", field="windows")
    return value


def whatif(runtime: Runtime, estimator: Estimator, body: dict[str, Any]) -> dict[str, Any]:
    """Expected usage for the recent traffic scaled by k, or for per-API calls per second.

    Where a series has a limit (configured or read from Prometheus), its entry adds the limit,
    the headroom at the asked traffic, `max_scale`: how many times the base traffic its upper
    band allows before its peak reaches the limit, and `max_scale_median`, the same for the
    median (None where 100 times the traffic, or 1.25 times the scale asked, does not reach
    it). The base is the recent stored traffic for "scale" (so that the scale asked and the
    scale allowed read on one axis, as in `deeprest whatif --scale`) and the given rates for
    "rates". Where the stored windows carry API latency, `latency` gives each API's `statistic`
    (body field `latency`, default p95) at the what-if peak load, from its curve over the last
    LATENCY_WINDOWS windows (None: saturated)."""
    unknown = sorted(set(body) - set(WHATIF_FIELDS))
    if unknown:
        raise InputError(f"unknown field; expected {', '.join(WHATIF_FIELDS)}", field=unknown[0])
    recent = runtime.store.recent(runtime.config.whatif_windows)
    bundle_window = estimator.bundle.window_seconds
    synthesizer = Synthesizer.from_json(estimator.bundle.synthesizer)
    if ("scale" in body) == ("rates" in body):
        raise InputError("give exactly one of 'scale' (a factor) or 'rates' (API -> calls/s)")
    if "scale" in body:
        if "windows" in body:
            raise InputError(
                "goes with 'rates' ('scale' scales the stored windows)", field="windows"
            )
        factor = _positive(body["scale"], "scale", MAX_SCALE)
        if not recent:
            raise InputError("no stored windows yet to scale; send traffic first", field="scale")
        if not any(w.calls for w in recent):  # every answer would be today's idle usage
            raise InputError(
                f"no traffic to scale in the last {count_of(len(recent), 'stored window')}",
                field="scale",
            )

        base = factor

        def expected(k: float) -> np.ndarray:  # the stored traffic, read as the CLI reads --data
            return estimator.predict_windows(recorded_at_scale(recent, synthesizer, k))
    else:
        rates = body["rates"]
        if not isinstance(rates, dict):
            raise InputError(
                f"expected an object of API -> calls per second, got {_json_kind(rates)}",
                field="rates",
            )
        if not rates:
            raise InputError(
                "names no API: give at least one API -> calls per second", field="rates"
            )
        traffic: dict[Pair, float] = {}
        named: dict[Pair, str] = {}
        for name, rate in rates.items():
            try:
                api = synthesizer.resolve_api(str(name))
            except InputError as exc:
                raise InputError(exc.bare_message, field=f"rates.{name}") from None
            if api in named:
                raise InputError(f"names the same API as '{named[api]}'", field=f"rates.{name}")
            named[api] = str(name)
            traffic[api] = _positive(rate, f"rates.{name}", MAX_RATE) * bundle_window
        n = _windows(body)
        starts = np.arange(n) * bundle_window

        def expected(k: float) -> np.ndarray:
            scaled = [{api: calls * k for api, calls in traffic.items()}] * n
            windows = synthesizer.windows(scaled, starts, bundle_window)
            return estimator.predict_windows(windows, rescale=False)

        base = 1.0
    # Estimates at k times the base: the recent stored traffic for "scale" (so that the scale
    # asked and the scale each limit allows read on one axis, as the CLI's), the rates given.
    ordered = monotone_in_scale(expected)  # more of the same traffic never needs less

    statistic = str(body.get("latency", "p95"))
    if statistic not in LATENCY_STATISTICS:
        raise InputError(f"one of {', '.join(LATENCY_STATISTICS)}", field="latency")
    if "scale" in body:
        load = factor * max(window_load(w) for w in recent)
    else:
        load = sum(calls for calls in traffic.values()) / bundle_window
    pred = ordered(base)
    if not np.isfinite(pred).all():
        raise InputError("the model's estimates overflow at this traffic; ask for less")
    series = estimator.info.series
    limits = runtime.loop.snapshot.limits
    limited = [j for j, key in enumerate(series) if limits.get(key, 0.0) > 0]
    allowed: dict[int, Allowed] = {}
    if limited:
        bound = np.array([limits[series[j]] for j in limited])
        ceiling = search_ceiling(base)
        answers = allowed_scales(lambda k: peaks(ordered(k)[:, limited]), bound, ceiling)
        allowed = dict(zip(limited, answers, strict=True))
    out = []
    for j, (c, r) in enumerate(series):
        entry: dict[str, Any] = {
            "component": c,
            "resource": r,
            "lower": float(pred[:, j, 0].mean()),
            "median": float(pred[:, j, 1].mean()),
            "upper": float(pred[:, j, 2].mean()),
            "peak_median": float(pred[:, j, 1].max()),
            "peak_upper": float(pred[:, j, 2].max()),
        }
        if j in allowed:
            limit = limits[(c, r)]
            entry["limit"] = limit
            entry["headroom"] = 1.0 - entry["peak_upper"] / limit
            upper, median = allowed[j]
            entry["max_scale"] = upper if math.isfinite(upper) else None
            entry["max_scale_median"] = median if math.isfinite(median) else None
        out.append(entry)
    answer: dict[str, Any] = {"windows": len(pred), "series": out}
    if "scale" in body:  # per window of the bundle's length, as training counted calls
        asked = [
            {
                api: n * factor * bundle_window / (w.end - w.start)
                for api, n in api_counts(w.calls).items()
            }
            for w in recent
        ]
    else:
        asked = [dict(traffic)] * len(pred)
    answer["warnings"] = whatif_warnings(estimator.bundle, asked, out)
    why: dict[Pair, str] = {}
    # always a list, empty where no API has a curve: clients read it without a KeyError
    answer["latency"] = latency_answer(runtime.store.recent(LATENCY_WINDOWS), statistic, load, why)
    called = {api for traffic in asked for api, n in traffic.items() if n > 0}
    note = no_curve_note(sorted(set(why) & called), why)  # recorded, but no curve to read
    if note:
        answer["warnings"].append(note)
    return answer


def whatif_warnings(
    bundle: Bundle, traffic: list[dict[Pair, float]], entries: list[dict[str, Any]]
) -> list[str]:
    """What the CLI warns of the same answer: where the traffic lies against training's (and
    each API against its own), and memory past its training peak; each entry gains its
    `vs_training_peak` (the median's peak over the series' highest usage in training)."""
    peaks = dict(zip(bundle.series, bundle.training.get("usage_peaks") or [], strict=False))
    for entry in entries:
        peak = peaks.get((entry["component"], entry["resource"]))
        if peak:
            entry["vs_training_peak"] = entry["peak_median"] / peak
    lines = (traffic_reach(bundle, traffic), past_training_note(entries))
    return [line for line in lines if line]


LATENCY_WINDOWS = 1440
"""Stored windows the whatif API reads API latency curves from (a day of minute windows)."""


def latency_answer(
    recorded: list[Window], statistic: str, load: float, why: dict[Pair, str] | None = None
) -> list[dict[str, Any]]:
    """Each API's latency at `load` (requests/s of all APIs) from the recorded windows' curves;
    `why`, where given, gets the reason of each API with recorded latency but no curve."""
    if not any(w.latency for w in recorded):
        return []

    def seconds(value: float) -> float | None:
        return value if math.isfinite(value) else None

    out = []
    for (c, o), [(low, best, high)] in sorted(
        latency_at_loads(recorded, statistic, [load], why).items()
    ):
        out.append(
            {"api": f"{c}:{o}", "statistic": statistic, "load": load, "seconds": seconds(best),
             "low": seconds(low), "high": seconds(high)}
        )  # fmt: skip
    return out


def _authorized(runtime: Runtime) -> bool:
    """Whether the request carries the configured token as `Authorization: Bearer TOKEN` (the
    scheme in any case, as RFC 7235 has it, and one or more spaces after it)."""
    token = runtime.config.api_token
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.lstrip(" ") if scheme.lower() == "bearer" else ""
    return bool(token) and hmac.compare_digest(given.encode(), (token or "").encode())


def create_app(runtime: Runtime) -> Flask:
    """The one Flask app; state lives in `runtime`."""
    app = Flask("deeprest")

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(runtime.registry), content_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/traces")
    def traces() -> Response:
        return ingest(runtime)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Any:
        if runtime.loop.estimator is None:
            return jsonify({"ready": False, "error": "no model bundle loaded"}), 503
        return jsonify({"ready": True})

    @app.get("/api/v1/model")
    def model() -> Any:
        estimator = runtime.loop.estimator
        if estimator is None:
            reload = (
                'or POST /api/v1/model/reload with {"path": DIR}'
                if runtime.config.api_token
                else "or configure api_token and POST /api/v1/model/reload"
            )
            return _error(
                404,
                "no model bundle loaded: start with --model DIR (or `model:` in the config), "
                + reload,
            )
        return jsonify(model_json(estimator.info))

    @app.post("/api/v1/model/reload")
    def reload() -> Any:
        if not runtime.config.api_token:
            return _error(403, "model reload is disabled: configure api_token")
        if not _authorized(runtime):
            log.warning("model reload refused: missing or wrong bearer token")
            return _error(401, "missing or wrong bearer token")
        try:  # no body: reload the configured bundle; else {"path": DIR} and nothing more
            raw = _read_body()
            body = _json_body(raw) if raw.strip() else {}
            if unknown := [key for key in body if key != "path"]:  # the first, as written
                raise InputError('unknown field; expected "path"', field=unknown[0])
            if "path" in body and not (isinstance(body["path"], str) and body["path"]):
                raise InputError("expected a bundle directory", field="path")
        except OtlpError as exc:
            log.warning("model reload refused: %s", exc.message)
            return _error(exc.status, exc.message)
        except InputError as exc:
            log.warning("model reload refused: %s", exc)
            return _error(400, str(exc))
        path = body.get("path") or runtime.config.model
        if not path:
            log.warning("model reload refused: no bundle path given or configured")
            return _error(400, 'no bundle path: give {"path": DIR} or configure model')
        try:
            runtime.loop.load(load_bundle(str(path)))
        except BundleError as exc:
            log.warning("model reload refused, the loaded model goes on serving: %s", exc)
            return _error(422, str(exc))
        estimator = runtime.loop.estimator
        assert estimator is not None
        log.info("model reloaded from %s: version %s", path, estimator.info.version)
        return jsonify(model_json(estimator.info))

    @app.post("/api/v1/whatif")
    def whatif_route() -> Any:
        estimator = runtime.loop.estimator
        if estimator is None:
            return _error(503, "no model bundle loaded")
        try:
            return jsonify(whatif(runtime, estimator, _json_body(_read_body())))
        except OtlpError as exc:  # a body too large, or cut short
            return _error(exc.status, exc.message)
        except InputError as exc:
            return _error(400, str(exc))
        except BundleError as exc:
            return _error(422, str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        response, status = _error(exc.code or 500, exc.description or exc.name)
        allowed = getattr(exc, "valid_methods", None)
        if allowed:  # 405 names the methods the route takes
            response.headers["Allow"] = ", ".join(allowed)
        return response, status

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        log.exception("request failed")
        return _error(500, "internal error; see the exporter log")

    return app


__all__ = ["create_app", "ingest", "model_json", "whatif"]
