"""A real stepped Locust run on loopback: a small server whose latency rises with load, and the
run that writes Locust's `--csv` files (stats_history.csv among them) against it.

`python -m tests.locust_steps OUT_PREFIX [--stages 2:16,4:16] [--no-full-history]` records one;
tests/data/locust_steps_stats_history.csv was recorded so (see the README there).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from infra.local import procs

LOCUSTFILE = Path(__file__).resolve().parent / "data" / "step_locustfile.py"
WORKERS = 2
"""Requests the server works on at once; more wait (a pool of 2: latency rises with load)."""
SERVICE_S = {"/fast": 0.010, "/slow": 0.030}
"""Seconds each path holds a worker: at the locustfile's 3:1 mix the pool serves about 130/s."""


class _Pool(BaseHTTPRequestHandler):
    slots = threading.Semaphore(WORKERS)

    def _answer(self) -> None:
        service = SERVICE_S.get(self.path)
        if service is None:
            self.send_error(404)
            return
        with self.slots:
            time.sleep(service)
        body = b"ok\n"
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            return  # a request still waiting when the run stopped: its user is gone

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        return


@contextmanager
def pool_server() -> Iterator[str]:
    """A server on a free loopback port; its URL while the context lasts."""
    server = ThreadingHTTPServer(("127.0.0.1", procs.free_port()), _Pool)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def record(prefix: Path, stages: str, full_history: bool = True, timeout: float = 300.0) -> Path:
    """Run Locust headless through `stages` (users:seconds, ...) against a pool server; the
    stats_history.csv it wrote."""
    with pool_server() as host:
        command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
        command += ["--host", host, "--csv", str(prefix), "--stages", stages]
        command += ["--only-summary", "--loglevel", "WARNING"]
        if full_history:
            command.append("--csv-full-history")
        subprocess.run(command, check=True, timeout=timeout, capture_output=True)
    return Path(f"{prefix}_stats_history.csv")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.locust_steps")
    parser.add_argument("prefix", type=Path)
    parser.add_argument("--stages", default="2:16,4:16,6:16,8:16,10:16")
    parser.add_argument("--no-full-history", action="store_true")
    args = parser.parse_args()
    print(record(args.prefix, args.stages, not args.no_full_history))


if __name__ == "__main__":
    main()
