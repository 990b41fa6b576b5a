"""Deliberate crash points for the fault-injection tests; inert unless `METERING_FAULT` is set.

`METERING_FAULT="<point>@<n>:<action>"` crashes the n-th time the named point is reached
(`record-added`, `item-written`, `page-written` in a record processor; `redrive-put` in
`metering dlq redrive`, between its PutRecords and its deletes):
`kill-group` kills the whole consumer (CLI, JVM and every record processor) with SIGKILL, as a
host failure would; `kill-self` kills only this record-processor child; `stall=<seconds>` holds it
there that long, as a hung call would (what /healthz must notice). Production never sets it.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

from contract.environment import ConfigError

ACTIONS = ("kill-group", "kill-self", "stall")


@dataclass
class FaultPoints:
    point: str | None = None
    after: int = 0
    action: str = "kill-group"
    stall_seconds: float = 0.0
    _hits: int = 0

    @classmethod
    def from_spec(cls, spec: str | None) -> FaultPoints:
        if not spec:
            return cls()
        try:
            target, action = spec.split(":")
            point, after = target.split("@")
            action, _, seconds = action.partition("=")
            if action not in ACTIONS or bool(seconds) != (action == "stall"):
                raise ValueError(action)
            return cls(point, int(after), action, float(seconds or 0))
        except ValueError as exc:
            raise ConfigError(
                f"METERING_FAULT={spec!r} is invalid: use <point>@<n>:<action>, the action one of"
                " kill-group, kill-self, stall=<seconds>"
            ) from exc

    def hit(self, point: str) -> None:
        if point != self.point:
            return
        self._hits += 1
        if self._hits == self.after:
            if self.action == "stall":
                time.sleep(self.stall_seconds)
                return
            if self.action == "kill-group":
                os.killpg(os.getpgid(0), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
