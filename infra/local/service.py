"""Entry point of one testbed service: python -m infra.local.service --name NAME --topology FILE."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from infra.local.apps import BUILDERS, STORES
from infra.local.service_kit import HttpError, Request, Service, setup_tracing
from loadgen.attacks import Attack, spawn


def add_attack_route(svc: Service, data_dir: Path | None) -> None:
    """POST /admin/attack {kind, duration_s, intensity}: start an attack as this service's child."""

    def attack(req: Request) -> Any:
        body = req.json()
        try:
            spec = Attack(kind=str(body.get("kind")), target=svc.name, start_s=0.0,
                          duration_s=float(body.get("duration_s", 0)),
                          intensity=float(body.get("intensity", 1.0)))  # fmt: skip
            children = spawn(spec, data_dir)
        except (ValueError, TypeError) as exc:
            raise HttpError(400, str(exc)) from exc
        except Exception as exc:  # InputError and friends: the caller's mistake
            raise HttpError(400, str(exc)) from exc
        for child in children:  # reap, so that their CPU lands in this process's counters
            threading.Thread(target=child.wait, daemon=True).start()
        return {"started": [c.pid for c in children]}

    svc.admin[("POST", "/admin/attack")] = attack


def main(argv: list[str] | None = None) -> int:
    """Run the named service from the topology file until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m infra.local.service")
    parser.add_argument("--name", required=True, choices=sorted(BUILDERS))
    parser.add_argument("--topology", type=Path, required=True)
    args = parser.parse_args(argv)
    topo = json.loads(args.topology.read_text())
    urls: dict[str, str] = topo["services"]
    port = int(urls[args.name].rsplit(":", 1)[1])
    provider = setup_tracing(
        args.name, topo.get("otlp_url"), int(topo.get("export_delay_ms", 1000))
    )
    svc = Service(args.name, urls, provider)
    data_dir = Path(topo["data_dir"]) / STORES[args.name] if args.name in STORES else None
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
    context = {"data_dir": data_dir, "redis_port": topo.get("redis_port"),
               "work_scale": float(topo.get("work_scale", 1.0))}  # fmt: skip
    BUILDERS[args.name](svc, context)
    add_attack_route(svc, data_dir)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=svc.serve, args=(port,), daemon=True).start()
    stop.wait()
    svc.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
