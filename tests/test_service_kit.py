"""The testbed's services as a client sees them: answers, and clients that go away."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider

from infra.local.procs import free_port
from infra.local.service_kit import Service


def test_a_client_that_leaves_mid_request_leaves_no_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Locust stopping mid-request closes its connections: the service notes nothing."""
    service = Service("slow", {}, TracerProvider())
    answered = threading.Event()

    @service.route("GET", "/slow", "slow")
    def slow(request: object) -> dict[str, str]:
        time.sleep(0.5)
        answered.set()
        return {"body": "x" * 200_000}

    port = free_port()
    thread = threading.Thread(target=service.serve, args=(port,), daemon=True)
    thread.start()
    try:
        for _ in range(50):
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        client.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        # close with a reset, as a killed client does
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        assert answered.wait(5)
        time.sleep(0.3)  # the answer is written to the closed socket
    finally:
        service.shutdown()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
