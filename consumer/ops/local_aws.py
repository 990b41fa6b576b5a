"""The embedded AWS emulator: moto's WSGI app served by hypercorn.

hypercorn speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on one port: boto3 uses the
former, the KCL's Netty-based Kinesis client insists on the latter, which moto's own server lacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

DEFAULT_PORT = 4566
# moto needs credentials to sign with; these are only ever sent to 127.0.0.1.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def serve(port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> None:
    """Serve until SIGINT/SIGTERM (blocking)."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config
    from moto.server import DomainDispatcherApplication, create_backend_app  # type: ignore[attr-defined]

    from consumer.ops.emulation import AtomicRequests, patch_kinesis

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    patch_kinesis()
    app = AtomicRequests(DomainDispatcherApplication(create_backend_app))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        loop.set_exception_handler(_ignore_cancelled_connections)
        await hypercorn_serve(app, config, shutdown_trigger=stop.wait, mode="wsgi")

    asyncio.run(main())


def _ignore_cancelled_connections(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    # CPython 3.11.7 logs a traceback for every connection still open at shutdown (gh-113538).
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        loop.default_exception_handler(context)


def wait_until_listening(port: int, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"the local AWS emulator did not listen on {host}:{port} within {timeout} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_env(port: int) -> dict[str, str]:
    """Environment variables that point boto3 (and through it, the KCL) at the emulator."""
    return FAKE_CREDENTIALS | {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
    }


@contextlib.contextmanager
def running(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Start the emulator in a child process for the duration of a block."""
    process = subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "local-aws", "--port", str(port)], start_new_session=True
    )
    try:
        wait_until_listening(port)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
