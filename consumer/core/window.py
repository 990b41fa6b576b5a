"""The time window a replay counts (`metering replay`): events whose own timestamp is in [start, end)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from contract.events import format_timestamp


@dataclass(frozen=True, slots=True)
class CountingWindow:
    """Events counted by a replay: those whose own timestamp is in [start, end)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds need a time zone")
        if self.start >= self.end:
            raise ValueError(f"the window is empty: {self.start.isoformat()} >= {self.end.isoformat()}")

    def __contains__(self, at: datetime) -> bool:
        return self.start <= at < self.end

    def __str__(self) -> str:
        return f"[{format_timestamp(self.start)}, {format_timestamp(self.end)})"
