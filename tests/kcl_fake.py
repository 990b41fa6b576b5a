"""A fake MultiLangDaemon side of the protocol, to drive the real `KCLProcess` from memory."""

from __future__ import annotations

import io
import json
from collections import deque
from typing import Any

from amazon_kclpy import kcl

from tests.factories import kcl_record


class ScriptedDaemon:
    """Feeds protocol lines to a record processor and answers its checkpoint requests.

    It plays the daemon's part: every `checkpoint` action the processor writes is recorded and
    answered at once (optionally with an error), as the real daemon does over stdin.
    """

    def __init__(self, checkpoint_error: str | None = None) -> None:
        self._lines: deque[str] = deque()
        self.checkpoints: list[tuple[str | None, int | None]] = []
        self.statuses: list[str] = []
        self.checkpoint_error = checkpoint_error
        self.stderr = io.StringIO()

    # -- the file interface KCLProcess uses --------------------------------------------------
    def readline(self) -> str:
        return self._lines.popleft() if self._lines else ""

    def write(self, text: str) -> None:
        for line in filter(None, (part.strip() for part in text.split("\n"))):
            self._answer(json.loads(line))

    def flush(self) -> None:
        pass

    # -- scripting ---------------------------------------------------------------------------
    def initialize(self, shard_id: str, sequence: str = "TRIM_HORIZON") -> ScriptedDaemon:
        return self._send(
            {"action": "initialize", "shardId": shard_id, "sequenceNumber": sequence, "subSequenceNumber": 0}
        )

    def records(self, records: list[tuple[int, bytes]], *, at_tip: bool = False) -> ScriptedDaemon:
        """One poll's records; `at_tip` when they reach the end of what the shard holds now."""
        return self._send(
            {
                "action": "processRecords",
                "millisBehindLatest": 0 if at_tip else 1000,
                "records": [kcl_record(seq, data) for seq, data in records],
            }
        )

    def shutdown_requested(self) -> ScriptedDaemon:
        return self._send({"action": "shutdownRequested"})

    def shard_ended(self) -> ScriptedDaemon:
        return self._send({"action": "shardEnded"})

    def lease_lost(self) -> ScriptedDaemon:
        return self._send({"action": "leaseLost"})

    def run(self, processor: Any) -> None:
        kcl.KCLProcess(processor, input_file=self, output_file=self, error_file=self.stderr).run()

    @property
    def last_checkpoint(self) -> str | None:
        return self.checkpoints[-1][0] if self.checkpoints else None

    def _send(self, message: dict[str, Any]) -> ScriptedDaemon:
        self._lines.append(json.dumps(message) + "\n")
        return self

    def _answer(self, message: dict[str, Any]) -> None:
        if message["action"] == "status":
            self.statuses.append(message["responseFor"])
        elif message["action"] == "checkpoint":
            if self.checkpoint_error is None:
                self.checkpoints.append((message["sequenceNumber"], message["subSequenceNumber"]))
            reply = {
                "action": "checkpoint",
                "sequenceNumber": message["sequenceNumber"],
                "subSequenceNumber": message["subSequenceNumber"],
                "error": self.checkpoint_error,
            }
            self._lines.appendleft(json.dumps(reply) + "\n")
