"""When an hour's completeness is final (`consumer.completeness` publishes it then, once).

An hour's access-log lines reach the stream through a CloudWatch Logs subscription, seconds to a few
minutes after their requests; its usage events come sooner. Once every record that arrived up to
`after` past the hour's end has been read and flushed, both counts of the hour stand. The readers
may be behind the stream's tip (`IteratorAge`): that much later again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)


def final_hours(now: datetime, after: timedelta, behind: timedelta, lookback: int) -> list[datetime]:
    """The last `lookback` hours whose end is at least `after` + `behind` before `now`, oldest first."""
    settled = (now - after - behind).astimezone(UTC)
    last_end = settled.replace(minute=0, second=0, microsecond=0)
    return [last_end - n * HOUR for n in range(lookback, 0, -1)]
