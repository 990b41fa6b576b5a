"""`metering demo`: the whole pipeline on this machine, stopped cleanly with Ctrl-C.

Emulator, consumer and traffic run as child processes in their own sessions, so Ctrl-C reaches
only this one; it then stops them in dependency order: traffic first, then the consumer (which
flushes and checkpoints), then the emulator.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from consumer.errors import MeteringError
from consumer.settings import ConsumerSettings
from metering import emulator
from metering.commands.analytics import latency_view
from metering.commands.provision import provision
from metering.commands.usage import show_usage

LOG_DIR = Path(".local")


def run_demo(settings: ConsumerSettings, *, port: int, rate: float, users: int) -> int:
    if _port_in_use(port):
        raise MeteringError(f"port {port} is taken: pass --port, or stop what listens there")
    os.environ.update(emulator.local_env(port) | {"AWS_DEFAULT_REGION": settings.region})
    # Ctrl-C and `kill` stop the demo alike, also when it was started with SIGINT ignored (a
    # background job); the children, exec'd after this, then start with SIGINT handled as well.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    LOG_DIR.mkdir(exist_ok=True)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        children.append(("emulator", _start("local-aws", "--port", str(port))))
        emulator.wait_until_listening(port)
        provision(settings, report=lambda line: print(line, file=sys.stderr))
        children.append(("consumer", _start("consume")))
        children.append(
            ("traffic", _start("simulate", "--rate", str(rate), "--duration", "86400", "--users", str(users)))
        )
        print(
            f"emulator on :{port}; consumer and traffic logs in {LOG_DIR}/. The KCL takes a few seconds "
            "to take its leases; counts appear then. Ctrl-C stops everything.",
            file=sys.stderr,
        )
        # Usage per minute, and latency and errors per endpoint from the simulated access logs.
        latency = latency_view(settings, timedelta(minutes=10))
        show_usage(settings, user=None, last="10m", watch=2.0, beside=latency)
    except KeyboardInterrupt:
        _say(
            "\nstopping: traffic, then the consumer (flush and checkpoint), then the emulator "
            "(Ctrl-C again kills them)"
        )
    finally:
        _stop_all(children, timeout=settings.shutdown_grace_seconds + 15)
    return 0


def _stop_all(children: list[tuple[str, subprocess.Popen[bytes]]], timeout: float) -> None:
    """Stop the children cleanly, last started first; another Ctrl-C kills whatever is left."""
    try:
        for name, child in reversed(children):
            _stop(name, child, timeout)
    except KeyboardInterrupt:
        for name, child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                _say(f"  {name} killed")


def _start(*args: str) -> subprocess.Popen[bytes]:
    log = (LOG_DIR / f"{args[0]}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "metering.cli", *args], stdout=log, stderr=log, start_new_session=True
    )


def _stop(name: str, child: subprocess.Popen[bytes], timeout: float) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGINT if name == "traffic" else signal.SIGTERM)
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    _say(f"  {name} stopped (exit {child.returncode})")


def _say(line: str) -> None:
    """Report progress; a closed terminal or pipe (`demo | tee`, then Ctrl-C) must not stop the stopping."""
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr, flush=True)


def _port_in_use(port: int) -> bool:
    try:
        emulator.wait_until_listening(port, timeout=0.2)
    except TimeoutError:
        return False
    return True
