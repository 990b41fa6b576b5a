"""How a replay's record processors report that their shard is done (`metering replay` waits on it).

Each shard's processor reports through a file in a directory the replay owns, once it has flushed
and checkpointed everything up to the stream's tip (an empty poll at the tip) or its shard's end.
The live consumer reports nothing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_SHARD_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class ProgressFiles:
    """The run's shard reports: one file per shard (`caught-up` or `ended`) in a directory it owns.

    The record processors write them (`consumer.processor.ShardProgress`); `metering replay` reads them.
    """

    CAUGHT_UP = "caught-up"
    ENDED = "ended"

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def caught_up(self, shard_id: str) -> None:
        self._write(shard_id, self.CAUGHT_UP)

    def ended(self, shard_id: str) -> None:
        self._write(shard_id, self.ENDED)

    def reports(self) -> dict[str, str]:
        return {p.name: p.read_text() for p in self._directory.iterdir() if not p.name.startswith(".")}

    def _write(self, shard_id: str, state: str) -> None:
        if not _SHARD_ID.match(shard_id):
            raise ValueError(f"unexpected shard id {shard_id!r}")
        partial = self._directory / f".{shard_id}.{os.getpid()}"
        partial.write_text(state)
        partial.replace(self._directory / shard_id)  # atomic: the reader never sees half a report
