"""A stop of `metering consume` is bounded: a JVM that ignores SIGTERM is killed with its children."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from consumer import daemon

# A "JVM" that ignores SIGTERM and has a "record processor" child that ignores it too.
_STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
print(child.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie (killed, not yet reaped by its parent) is gone
        return stat.read().rpartition(")")[2].split()[0] != "Z"


def test_a_daemon_that_ignores_sigterm_is_killed_with_its_children_after_the_bound() -> None:
    """SIGTERM, then nothing: at the bound the daemon and its record processors are SIGKILLed."""
    jvm = subprocess.Popen([sys.executable, "-c", _STUBBORN], stdout=subprocess.PIPE, text=True)
    assert jvm.stdout is not None
    child = int(jvm.stdout.readline())
    stop = daemon._Stop(jvm, bound=1.0)
    asked = time.monotonic()
    stop(signal.SIGTERM, None)
    code = daemon._wait(jvm, None, 0.1, stop)
    took = time.monotonic() - asked
    assert code == -signal.SIGKILL and stop.overdue()
    assert 1.0 <= took < 3.0
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_a_daemon_that_stops_in_time_is_not_killed() -> None:
    """A JVM that exits on SIGTERM within the bound exits by itself (the usual case)."""
    jvm = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    stop = daemon._Stop(jvm, bound=10.0)
    stop(signal.SIGTERM, None)
    assert daemon._wait(jvm, None, 0.1, stop) == -signal.SIGTERM
    assert not stop.overdue()
