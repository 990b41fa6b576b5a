"""`metering local-aws` stops cleanly: exit 0 and no traceback, even with clients still connected."""

from __future__ import annotations

import socket
import subprocess
import sys

from metering.emulator import free_port, wait_until_listening


def test_sigterm_with_open_connections_exits_quietly() -> None:
    port = free_port()
    emulator = subprocess.Popen(
        [sys.executable, "-m", "metering.cli", "local-aws", "--port", str(port)],
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    wait_until_listening(port)
    idle_http1 = socket.create_connection(("127.0.0.1", port))
    idle_http1.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    idle_http1.recv(100)
    idle_h2c = socket.create_connection(("127.0.0.1", port))
    idle_h2c.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    try:
        emulator.terminate()
        stderr = emulator.communicate(timeout=20)[1].decode()
    finally:
        idle_http1.close()
        idle_h2c.close()
    assert emulator.returncode == 0
    assert "Traceback" not in stderr
