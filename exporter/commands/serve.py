"""`deeprest serve`: the Prometheus exporter, OTLP receiver and API on one port."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from estimator.bundle import load_bundle
from estimator.errors import BundleError
from exporter.config import Config, load_config


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML configuration (flags override it)")
    parser.add_argument(
        "--model",
        help="model bundle directory (default: none; windows are collected, not estimated)",
    )
    parser.add_argument(
        "--data-dir", help="where closed windows are stored (default deeprest-data)"
    )
    parser.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port of /metrics, /v1/traces and the API (9464)")
    parser.add_argument("--window", help="window length, e.g. 5s or 1m (default: the bundle's)")
    parser.add_argument(
        "--trace-grace",
        help="how long a trace stays open after its last span, e.g. 2s (default 5s, the "
        "OpenTelemetry SDK's export interval; a window is estimated twice this after its end)",
    )
    parser.add_argument(
        "--prometheus-url",
        help="Prometheus to read actual usage from (default: none; no actual usage, no anomaly "
        "score, no deeprest_up)",
    )
    parser.add_argument("--api-token-file", help="file holding the bearer token for reloads")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="logging level (default INFO)",
    )


def build_config(args: argparse.Namespace) -> Config:
    """Config from the YAML file and the flags; the bundle's window when none is given."""
    overrides: dict[str, Any] = {
        "model": args.model,
        "data_dir": args.data_dir,
        "host": args.host,
        "port": args.port,
        "window": args.window,
        "trace_grace": args.trace_grace,
        "prometheus.url": args.prometheus_url,
        "api_token_file": args.api_token_file,
    }
    return load_config(args.config, overrides)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from exporter.runtime import ListenError, Runtime
    from exporter.store import StoreError

    config = build_config(args)
    try:
        bundle = load_bundle(config.model) if config.model is not None else None
    except BundleError as exc:  # name where the path came from, as any other config error
        source = "--model" if args.model is not None else f"{args.config}, field 'model'"
        print(f"deeprest serve: error: {source}: {exc}", file=sys.stderr)
        return 2
    if config.window is None:  # a window other than the bundle's is warned of as it loads
        config = replace(config, window=bundle.window_seconds if bundle else 60.0)
    try:
        runtime = Runtime(config, bundle)
    except StoreError as exc:  # the configured data_dir cannot hold the store
        print(f"deeprest serve: error: data_dir: {exc}", file=sys.stderr)
        return 2
    try:
        runtime.start()
    except ListenError as exc:
        print(f"deeprest serve: error: {exc}", file=sys.stderr)
        runtime.store.close()
        return 2
    print(
        f"deeprest serve: listening on {runtime.url} (window {config.window_seconds:g}s, "
        f"model {'none' if bundle is None else bundle.version}, data {config.data_dir})",
        file=sys.stderr,
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: runtime._stop.set())
    # SIGHUP reloads the configured bundle, as Prometheus and Alertmanager reload their
    # configuration; its default would end the process without the stop's save
    signal.signal(signal.SIGHUP, lambda *_: runtime.request_reload())
    try:
        runtime.wait()
    except KeyboardInterrupt:
        pass
    finally:
        runtime.stop()
    return 0
