"""Child processes that end with their parent, even when the parent is killed with SIGKILL.

On Linux a child started with `preexec_fn=die_with_parent()` asks the kernel (prctl
PR_SET_PDEATHSIG) for a signal when its parent ends. The kernel sends it when the *thread* that
started the child ends, so start such children from a thread that lives as long as they should
(the main thread). Elsewhere `die_with_parent()` is None and the parent's own clean-up (Ctrl-C,
SIGTERM, atexit) is all there is.

A child started from a short-lived thread (a worker of a request handler) calls
`exit_with_parent(pid)` itself instead: a thread of its own that ends it when its parent is gone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, resolved in the parent: loading a library between fork and exec may hang."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A preexec_fn that has the child get `sig` when the calling thread ends; None off Linux."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:  # the parent died before prctl: no signal will come
            os.kill(os.getpid(), sig)

    return preexec


def exit_with_parent(parent: int, every_s: float = 0.5) -> None:
    """End this process (status 0) as soon as `parent` is no longer its parent."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(0)  # the parent is gone: no one reads what this process would still do

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
