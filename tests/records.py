"""Usage events read back from Kinesis records, whichever contract version wrote them (tests only)."""

from __future__ import annotations

import json
import zlib
from datetime import datetime
from typing import Any

from consumer.core.batch import decode_batch
from consumer.core.events import UsageEvent, decode_event
from contract.batch import BATCH_PREFIX, is_batch


def record_events(data: bytes) -> list[dict[str, Any]]:
    """The events of one record as sent: a usage batch's (version 2), or the record's one (version 1)."""
    if is_batch(data):
        events: list[dict[str, Any]] = json.loads(zlib.decompress(data[len(BATCH_PREFIX) :]))
        return events
    return [json.loads(data)]


def usage_events(data: bytes, now: datetime) -> list[UsageEvent]:
    """The events of one record as the consumer decodes them; every one of them must count."""
    if not is_batch(data):
        return [decode_event(data, now)]
    batch = decode_batch(data, now)
    assert not batch.rejected, batch.rejected
    return [event for _, event, _ in batch.events]
