"""Child processes of the testbed: free ports, readiness waits, and stopping whole process trees."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil
import requests

from estimator.errors import DeepRestError
from loadgen import children


class TestbedError(DeepRestError):
    """A testbed process that failed to start, answer or stop."""

    __test__ = False  # not a pytest test class


_HANDED_OUT: set[int] = set()
"""Ports this process has handed out: the system may offer a released port again before the
process it was meant for binds it, and two services on one port answer for each other."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago and not handed out before."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@dataclass
class Managed:
    """One started process with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes]

    @property
    def pid(self) -> int:
        """The root pid."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the root process still runs."""
        return self.popen.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        """The last n characters of its log."""
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def tree(self) -> list[psutil.Process]:
        """The root and its live descendants."""
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the root, then SIGKILL whatever of its tree is left after grace_s."""
        tree = self.tree()
        if self.alive():
            self.popen.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace_s)
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        if self.popen.poll() is None:
            self.popen.wait(grace_s)
        psutil.wait_procs(tree[1:], timeout=grace_s)
        self._log.close()


def start(
    name: str, cmd: Sequence[str], log_dir: Path, cwd: Path, die_with_parent: bool
) -> Managed:
    """Start cmd in its own session, output to log_dir/NAME.log; with die_with_parent, it gets
    SIGTERM when the calling thread ends, even by SIGKILL (Linux; see loadgen.children)."""
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - closed by Managed.stop
    try:
        popen = subprocess.Popen(
            list(cmd), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=cwd, start_new_session=True,
            preexec_fn=children.die_with_parent() if die_with_parent else None,
        )  # fmt: skip
    except OSError as exc:
        log.close()
        raise TestbedError(f"cannot start {name} ({cmd[0]}): {exc}; run `make setup`") from exc
    return Managed(name, popen, log_path, log)


def http_ok(url: str) -> bool:
    """Whether GET url answers 200."""
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def wait_ready(proc: Managed, ready: Callable[[], bool], timeout_s: float) -> None:
    """Poll ready() until true; fail naming the log, with its tail, if the process dies or time
    runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not proc.alive():
            raise TestbedError(
                f"{proc.name} exited with {proc.popen.returncode} (log {proc.log_path}):\n"
                f"{proc.log_tail()}"
            )
        if ready():
            return
        time.sleep(0.1)
    raise TestbedError(
        f"{proc.name} not ready after {timeout_s:g} s (log {proc.log_path}):\n{proc.log_tail()}"
    )
