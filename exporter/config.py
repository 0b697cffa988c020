"""Configuration of `deeprest serve`: one frozen object built from YAML plus flags, validated."""

from __future__ import annotations

import math
import re
import string
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from estimator.errors import DataWarning, InputError, count_of, not_utf8

DEFAULT_SELECTOR = 'container!="",container!="POD"'
DEFAULT_QUERIES: Mapping[str, str] = {
    "cpu": "sum by ({label}) (rate(container_cpu_usage_seconds_total{{{selector}}}[{range}]))",
    "memory": "sum by ({label}) (avg_over_time(container_memory_working_set_bytes{{{selector}}}[{range}]) and container_memory_working_set_bytes{{{selector}}})",
    "write_iops": "sum by ({label}) (rate(container_fs_writes_total{{{selector}}}[{range}]))",
    "write_throughput": "sum by ({label}) (rate(container_fs_writes_bytes_total{{{selector}}}[{range}]))",
}
"""PromQL templates of actual usage per resource (cAdvisor names, base units). Memory, a
gauge, is each container's average over the window of those still running at its end (`and`
the instant vector, which staleness ends when a container is gone): a pod replaced within the
window and its replacement would otherwise both count, twice the memory the component held,
while replicas running side by side still add up. Rates need no such care: a replaced pod's
rate covers only its part of the range, so the two parts add up to the component's."""
DEFAULT_LIMIT_QUERIES: Mapping[str, str] = {
    "cpu": "sum by ({label}) (container_spec_cpu_quota{{{selector}}} / container_spec_cpu_period{{{selector}}})",
    "memory": "sum by ({label}) (container_spec_memory_limit_bytes{{{selector}}}) > 0",
}
"""PromQL templates of per-component limits (cAdvisor names). Each container's CPU limit is its
quota over its period, summed per component as usage is: replicas' limits add up."""

DEFAULT_TRACE_GRACE = 5.0
"""Seconds a trace stays open after its last span: the OpenTelemetry SDK's batch span processor
exports every 5 s, so one trace's spans from several services arrive up to 5 s apart. A window
is estimated twice this after its end."""

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZES = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "kb": 10**3, "mb": 10**6, "gb": 10**9}  # fmt: skip


def _yaml(value: Any) -> str:
    """A config value as YAML writes it (null, true), for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


DURATION_EXAMPLES = "250ms, 5s, 1m, 1h, 30d"


def parse_duration(value: Any, key: str, allow_zero: bool = False) -> float:
    """Seconds from `250ms`, `5s`, `1m`, `1h`, `30d` or a plain number of seconds; positive (or
    zero with `allow_zero`) and finite."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (
        m := re.fullmatch(r"\s*(-?[0-9.]+)\s*(ms|s|m|h|d)?\s*", value)
    ):
        try:
            seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
        except ValueError:
            raise InputError(
                f"not a duration: {_yaml(value)} (use e.g. {DURATION_EXAMPLES})", field=key
            ) from None
    else:
        raise InputError(
            f"not a duration: {_yaml(value)} (use e.g. {DURATION_EXAMPLES})", field=key
        )
    if not (seconds >= 0 if allow_zero else seconds > 0):
        raise InputError(
            f"must be {'0 or more' if allow_zero else 'positive'}, got {_yaml(value)}", field=key
        )
    if not math.isfinite(seconds):
        raise InputError(f"must be finite, got {_yaml(value)}", field=key)
    return seconds


def parse_size(value: Any, key: str) -> int:
    """Bytes from an integer or `4MiB`, `512KiB` (binary), `4MB`, `512KB` (decimal); positive."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", value)):
        unit = m.group(2).lower()
        if unit not in _SIZES:
            raise InputError(
                f"unknown size unit in {_yaml(value)} (use B, KiB, MiB, GiB, KB, MB or GB)",
                field=key,
            )
        size = int(m.group(1)) * _SIZES[unit]
    else:
        raise InputError(f"not a size: {_yaml(value)} (use e.g. 4MiB or a byte count)", field=key)
    if size <= 0:
        raise InputError(f"must be positive, got {_yaml(value)}", field=key)
    return size


TEMPLATE_FIELDS = ("label", "selector", "range")
"""The placeholders a query template may use; literal braces of PromQL are doubled."""


def check_template(template: str, key: str) -> None:
    """A query template uses only TEMPLATE_FIELDS, by name, and its braces are balanced."""
    try:
        parts = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template)]
    except ValueError as exc:
        raise InputError(
            f"bad template ({exc}); write PromQL's own braces doubled, as {{{{ and }}}}", field=key
        ) from None
    for name, spec, conversion in parts:
        if name in TEMPLATE_FIELDS and (spec or conversion):
            raise InputError(f"placeholder {{{name}}} takes no format or conversion", field=key)
        if name is not None and name not in TEMPLATE_FIELDS:
            raise InputError(
                f"unknown placeholder {{{name}}}; use {{label}}, {{selector}} or {{range}}, "
                "and write PromQL's own braces doubled, as {{ and }}",
                field=key,
            )


def format_duration(seconds: float) -> str:
    """PromQL duration text of a number of seconds (milliseconds precision)."""
    ms = max(1, round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def readable_duration(seconds: float) -> str:
    """A duration as the config writes it, in the largest unit that takes it whole (`7d`, `36h`,
    `90m`, `45s`; `0.5s` where no unit does)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class ApiTraffic:
    """One API whose calls per second come from a PromQL expression instead of traces."""

    component: str
    operation: str
    expr: str


@dataclass(frozen=True)
class PrometheusConfig:
    """Where actual usage comes from and how series map to components."""

    url: str | None = None
    timeout: float = 5.0
    retries: int = 2
    backoff: float = 0.25
    max_points: int = 11000
    component_label: str = "container"
    component_regex: str | None = None
    component_rename: Mapping[str, str] = field(default_factory=dict)
    selector: str = DEFAULT_SELECTOR
    rate_range: float | None = None
    queries: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_QUERIES))
    limit_queries: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LIMIT_QUERIES))


@dataclass(frozen=True)
class ReceiverConfig:
    """Limits of the OTLP receiver."""

    max_body_bytes: int = 4 << 20
    max_decompressed_bytes: int = 32 << 20
    max_spans_per_request: int = 65536
    max_pending_spans: int = 1_000_000
    max_connections: int = 256  # open HTTP connections (any path); more are answered 503
    retry_after: float = 2.0
    sampling_ratio: float = 1.0  # share of traces the services keep, where spans do not say
    restart_catchup: float = 30.0  # after a restart, nothing closes for this long (see LiveLoop)
    checkpoint: float = 30.0  # open windows and traces are saved this often (0: only at a stop)


@dataclass(frozen=True)
class Config:
    """Everything `deeprest serve` needs; built once at the entry point and passed down."""

    model: Path | None = None
    data_dir: Path = Path("deeprest-data")
    host: str = "0.0.0.0"
    port: int = 9464
    window: float | None = None
    trace_grace: float | None = None
    tick: float | None = None
    api_token: str | None = None
    smoothing_windows: int = 3
    whatif_windows: int = 10
    retention: float = 30 * 86400.0  # stored windows older than this are deleted; 0: kept
    traffic_source: str = "otlp"
    traffic_apis: tuple[ApiTraffic, ...] = ()
    limits: Mapping[tuple[str, str], float] = field(default_factory=dict)
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    receiver: ReceiverConfig = field(default_factory=ReceiverConfig)

    @property
    def window_seconds(self) -> float:
        """Window length: as configured, else 60 s (serve uses the bundle's when unset)."""
        return self.window if self.window is not None else 60.0

    @property
    def grace(self) -> float:
        """Seconds a trace stays open after its last span (default DEFAULT_TRACE_GRACE)."""
        return self.trace_grace if self.trace_grace is not None else DEFAULT_TRACE_GRACE

    @property
    def tick_seconds(self) -> float:
        """How often the live loop wakes up."""
        return self.tick if self.tick is not None else min(1.0, self.window_seconds / 10)


# ---------------------------------------------------------------- building from YAML and flags


def _section(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise InputError("must be a mapping", field=key)
    return dict(value)


def _check_keys(raw: Mapping[str, Any], allowed: set[str], prefix: str = "") -> None:
    for key in raw:
        if key not in allowed:
            hint = ", ".join(sorted(allowed))
            raise InputError(f"unknown key; known keys: {hint}", field=f"{prefix}{key}")


def _int(value: Any, key: str, low: int = 0, high: int = 1 << 62) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"expected an integer in [{low}, {high}], got {_yaml(value)}", field=key)
    return value


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"expected a non-empty string, got {_yaml(value)}", field=key)
    return value


def _prometheus(raw: dict[str, Any]) -> PrometheusConfig:
    p = "prometheus."
    _check_keys(raw, {f.name for f in PrometheusConfig.__dataclass_fields__.values()}, p)
    out: dict[str, Any] = {}
    if raw.get("url") is not None:
        url = _str(raw["url"], p + "url")
        if not re.match(r"https?://", url):
            raise InputError(f"must start with http:// or https://, got {url!r}", field=p + "url")
        out["url"] = url.rstrip("/")
    for name in ("timeout", "backoff", "rate_range"):
        if raw.get(name) is not None:
            out[name] = parse_duration(raw[name], p + name)
    if "retries" in raw:
        out["retries"] = _int(raw["retries"], p + "retries", 0, 10)
    if "max_points" in raw:
        out["max_points"] = _int(raw["max_points"], p + "max_points", 2)
    for name in ("component_label", "selector"):
        if name in raw:
            out[name] = str(raw[name]) if name == "selector" else _str(raw[name], p + name)
    if raw.get("component_regex") is not None:
        try:
            re.compile(_str(raw["component_regex"], p + "component_regex"))
        except re.error as exc:
            raise InputError(f"bad regex: {exc}", field=p + "component_regex") from None
        out["component_regex"] = raw["component_regex"]
    for name in ("component_rename", "queries", "limit_queries"):
        if name in raw:
            value = raw[name] or {}
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise InputError("must map strings to strings", field=p + name)
            if name != "component_rename":
                for resource, template in value.items():
                    check_template(template, f"{p}{name}.{resource}")
            base = dict(DEFAULT_QUERIES if name == "queries" else DEFAULT_LIMIT_QUERIES)
            out[name] = value if name == "component_rename" else {**base, **value}
    return PrometheusConfig(**out)


def _receiver(raw: dict[str, Any]) -> ReceiverConfig:
    p = "receiver."
    _check_keys(raw, {f.name for f in ReceiverConfig.__dataclass_fields__.values()}, p)
    out: dict[str, Any] = {}
    for name in ("max_body_bytes", "max_decompressed_bytes"):
        if name in raw:
            out[name] = parse_size(raw[name], p + name)
    for name in ("max_spans_per_request", "max_pending_spans", "max_connections"):
        if name in raw:
            out[name] = _int(raw[name], p + name, 1)
    if "retry_after" in raw:
        out["retry_after"] = parse_duration(raw["retry_after"], p + "retry_after")
    if "checkpoint" in raw:
        out["checkpoint"] = parse_duration(raw["checkpoint"], p + "checkpoint", allow_zero=True)
    if "restart_catchup" in raw:
        out["restart_catchup"] = parse_duration(
            raw["restart_catchup"], p + "restart_catchup", allow_zero=True
        )
    if "sampling_ratio" in raw:
        out["sampling_ratio"] = _ratio(raw["sampling_ratio"], p + "sampling_ratio")
    config = ReceiverConfig(**out)
    if config.max_pending_spans < config.max_spans_per_request:  # a full request would never fit
        if "max_pending_spans" in raw:
            raise InputError(
                f"{config.max_pending_spans} is under receiver.max_spans_per_request "
                f"({config.max_spans_per_request}): a request that size would be refused with "
                "503 for ever",
                field=p + "max_pending_spans",
            )
        raise InputError(
            f"{config.max_spans_per_request} is over receiver.max_pending_spans "
            f"({config.max_pending_spans}, the default): a request that size would be refused "
            "with 503 for ever; raise max_pending_spans too",
            field=p + "max_spans_per_request",
        )
    return config


def _ratio(value: Any, key: str) -> float:
    """A share in (0, 1]: YAML's number, or text such as `1e-3` (YAML reads it as text)."""
    number = _limit_number(value)
    if number is None or not 0.0 < number <= 1.0:
        raise InputError(f"expected a number in (0, 1], got {_yaml(value)}", field=key)
    return number


QUANTITY_SUFFIXES = {
    "": 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    **{f"{p}i": 1024.0 ** (n + 1) for n, p in enumerate("KMGTPE")},
}
"""Kubernetes quantity suffixes (`500m` cores, `4Gi` bytes) and their factors."""
_QUANTITY = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z]*)\s*")


def _limit_number(value: Any) -> float | None:
    """A limit's number: YAML's own, text such as `4e9` (YAML reads an exponent without a dot
    as text), or a Kubernetes quantity as a pod spec writes it (`500m`, `4Gi`, `2G`); None where
    it is none of these."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and (m := _QUANTITY.fullmatch(value)):
        factor = QUANTITY_SUFFIXES.get(m.group(2))
        return None if factor is None else float(m.group(1)) * factor
    return None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last
    silently: a component listed twice would lose its first limits)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str, what: str = "YAML") -> Any:
    """YAML (or JSON) text as Python values, a key given twice in one mapping refused. Bad YAML
    is an InputError of one line naming the line and column where the parser stopped."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        detail = f"{problem} ({context})" if context and context not in problem else problem
        if mark is None:
            raise InputError(f"not valid {what}: {detail}", source=source) from None
        raise InputError(
            f"not valid {what}: {detail}, column {mark.column + 1}",
            source=source,
            line=mark.line + 1,
        ) from None


def parse_limits(raw: Any) -> dict[tuple[str, str], float]:
    """Limits given as {component: {resource: limit in base units}} (the `limits` section)."""
    if not isinstance(raw, dict):
        raise InputError("must map component -> {resource: limit}", field="limits")
    out: dict[tuple[str, str], float] = {}
    for component, per in raw.items():
        if not isinstance(per, dict):
            raise InputError("must map resource -> limit", field=f"limits.{component}")
        for resource, value in per.items():
            key = f"limits.{component}.{resource}"
            number = _limit_number(value)
            if number is None or not math.isfinite(number) or number <= 0:
                raise InputError(
                    f"expected a positive number or a Kubernetes quantity (500m, 4Gi), got {_yaml(value)}",
                    field=key,
                )
            _check_unit(value, number, str(resource), key)
            out[(str(component), str(resource))] = number
    return out


MOST_CORES = 512
"""A CPU limit of more cores than this, given without a unit, is millicores meant, likely."""


def _check_unit(value: Any, number: float, resource: str, key: str) -> None:
    """Warn of a quantity whose suffix suits another resource: `cpu: 1Gi` (a billion cores) or
    `memory: 500m` (half a byte) are valid Kubernetes quantities, but almost surely typos; and
    of a bare number that reads as no such limit (`cpu: 2000` cores for 2000m, `memory: 4096`
    bytes for 4096Mi)."""
    m = _QUANTITY.fullmatch(value) if isinstance(value, str) else None
    suffix = m.group(2) if m else ""
    meant = "cores or millicores (500m)" if resource == "cpu" else "bytes (Mi, Gi)"
    if (resource == "cpu" and suffix.endswith("i")) or (resource == "memory" and suffix == "m"):
        warnings.warn(
            DataWarning(
                f"{key}: {value} is a {resource} limit of {number:g}; "
                f"{resource} limits are in {meant}: a typo?"
            ),
            stacklevel=3,
        )
        return
    bare = isinstance(value, (int, float)) or (m is not None and not suffix)
    odd = (resource == "cpu" and number > MOST_CORES) or (resource == "memory" and number < 2**20)
    if bare and odd:
        hint = f"{value}m" if resource == "cpu" else f"{value}Mi"
        warnings.warn(
            DataWarning(
                f"{key}: {value} without a unit is a {resource} limit of {number:g} "
                f"{'cores' if resource == 'cpu' else 'bytes'}; {resource} limits are in "
                f"{meant}: {hint} meant?"
            ),
            stacklevel=3,
        )


def _traffic(raw: dict[str, Any]) -> tuple[str, tuple[ApiTraffic, ...]]:
    _check_keys(raw, {"source", "apis"}, "traffic.")
    source = raw.get("source", "otlp")
    if source not in ("otlp", "prometheus"):
        raise InputError(f"must be otlp or prometheus, got {source!r}", field="traffic.source")
    apis = []
    for i, item in enumerate(raw.get("apis") or []):
        where = f"traffic.apis[{i}]"
        if not isinstance(item, dict):
            raise InputError("expected {component, operation, expr}", field=where)
        _check_keys(item, {"component", "operation", "expr"}, where + ".")
        apis.append(
            ApiTraffic(
                *(_str(item.get(k), f"{where}.{k}") for k in ("component", "operation", "expr"))
            )
        )
    if source == "prometheus" and not apis:
        raise InputError(
            "traffic.source is prometheus but no APIs are listed", field="traffic.apis"
        )
    if source == "otlp" and apis:
        warnings.warn(
            DataWarning(
                f"traffic.apis: {count_of(len(apis), 'API')} listed, but traffic.source is otlp: "
                "they are not read (traffic comes from traces; set source: prometheus to read "
                "it from their expressions)"
            ),
            stacklevel=3,
        )
    return source, tuple(apis)


CONFIG_KEYS = {
    "model", "data_dir", "host", "port", "window", "trace_grace", "tick", "api_token",
    "api_token_file", "smoothing_windows", "whatif_windows", "retention", "traffic", "limits",
    "prometheus", "receiver",
}  # fmt: skip


def config_from_mapping(raw: Mapping[str, Any], base: Path = Path(".")) -> Config:
    """Validate a decoded YAML mapping; relative paths are taken from `base`."""
    _check_keys(raw, CONFIG_KEYS)
    out: dict[str, Any] = {}
    for name in ("model", "data_dir"):
        if raw.get(name) is not None:
            out[name] = base / _str(raw[name], name)
    if "host" in raw:
        out["host"] = _str(raw["host"], "host")
    if "port" in raw:
        out["port"] = _int(raw["port"], "port", 0, 65535)
    for name in ("window", "trace_grace", "tick"):
        if raw.get(name) is not None:
            out[name] = parse_duration(raw[name], name)
    if raw.get("api_token") is not None:
        out["api_token"] = _str(raw["api_token"], "api_token")
    if raw.get("api_token_file") is not None:
        path = base / _str(raw["api_token_file"], "api_token_file")
        try:
            out["api_token"] = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(
                f"cannot read {path}: {exc.strerror}", field="api_token_file"
            ) from None
        except UnicodeDecodeError as exc:
            raise InputError(f"{path} is {not_utf8(exc)}", field="api_token_file") from None
    if "smoothing_windows" in raw:
        out["smoothing_windows"] = _int(raw["smoothing_windows"], "smoothing_windows", 1, 1000)
    if "whatif_windows" in raw:
        out["whatif_windows"] = _int(raw["whatif_windows"], "whatif_windows", 1, 100000)
    if raw.get("retention") is not None:
        out["retention"] = parse_duration(raw["retention"], "retention", allow_zero=True)
    out["traffic_source"], out["traffic_apis"] = _traffic(_section(raw, "traffic"))
    out["limits"] = parse_limits(raw.get("limits") or {})
    out["prometheus"] = _prometheus(_section(raw, "prometheus"))
    out["receiver"] = _receiver(_section(raw, "receiver"))
    return Config(**out)


_FLAG_PATHS = frozenset({"model", "data_dir", "api_token_file"})
"""Keys whose flag values are paths."""


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Config from an optional YAML file, with flag values (dotted keys allowed) laid over it.
    A flag's path is relative to the working directory, the file's to the file's folder; an
    error in a flag's value names the flag (`--window`), one in the file the file."""
    raw: dict[str, Any] = {}
    base = Path(".")
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read config: {exc.strerror}", source=source) from None
        except UnicodeDecodeError as exc:
            raise InputError(not_utf8(exc), source=source) from None
        loaded = load_yaml(text, source)
        if loaded is not None and not isinstance(loaded, dict):
            raise InputError("the top level must be a mapping", source=source)
        raw = loaded or {}
        base = Path(path).parent
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    for key, value in given.items():
        if key in _FLAG_PATHS:  # a flag's path is relative to the working directory
            value = str(Path(str(value)).absolute())
        target = raw
        *parents, last = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[last] = value
    try:
        config = config_from_mapping(raw, base)
    except InputError as exc:
        if exc.field in given:  # the flag's value is at fault, not the file
            flag = "--" + exc.field.replace(".", "-").replace("_", "-")
            raise InputError(exc.bare_message, field=flag) from None
        if path is None or exc.source is not None:
            raise
        raise InputError(exc.bare_message, source=str(path), field=exc.field) from None
    if overrides and overrides.get("model") is not None:  # flags are relative to the cwd
        config = replace(config, model=Path(str(overrides["model"])))
    if overrides and overrides.get("data_dir") is not None:
        config = replace(config, data_dir=Path(str(overrides["data_dir"])))
    return config
