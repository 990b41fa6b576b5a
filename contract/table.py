"""The analytics table: its keys, counters and schema, as the writer and every reader know them.

docs/table.md documents each item. Buckets are the event's own time in UTC; emails are
in their canonical form (`contract.events.canonical_email`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from contract.events import EventType

GLOBAL = "GLOBAL"
TOTAL = "TOTAL"
USER_PREFIX = "USER#"
IP_PREFIX = "IP#"
KEY_PREFIX = "KEY#"
ENDPOINT_PREFIX = "ENDPOINT#"
ARCHIVE_PREFIX = "ARCHIVE#"
ALERT_PREFIX = "ALERT#"
MINUTE_PREFIX = "MINUTE#"
HOUR_PREFIX = "HOUR#"
DAY_PREFIX = "DAY#"
MONTH_PREFIX = "MONTH#"
# Lists every item of one bucket by key only: an entry is written when an item is created, not on
# each of its updates (an index projecting ALL attributes doubled every counter write). Readers fetch
# the items it lists (`reads.of_bucket`).
BUCKET_INDEX = "by-bucket-keys"
# Tables created before the keys-only index project ALL into this one; readers fall back to it while
# the new index is missing or backfilling (docs/deploy.md, "Upgrading the analytics table's index").
LEGACY_BUCKET_INDEX = "by-bucket"
BUCKET = "bucket"  # the index's partition key: the item's sort key, on bucket items only
EXPIRES_AT = "expiresAt"  # the table's TTL attribute (epoch seconds)
FIRST_SEEN, LAST_SEEN = "firstSeen", "lastSeen"
PLAN = "plan"  # on a user's TOTAL item: the plan of the key it last called with
ACTIVE_USERS = "activeUsers"  # on GLOBAL hour, day and month items: users with an item of that bucket
ACTIVE_SINCE = "activeSince"  # on a user's hour, day and month items: the flush that created it
KEYS_TRIED, USERS_SEEN = "keysTried", "usersSeen"  # on IP hour items: the known keys and users seen from it
BUCKET_RETENTION = timedelta(days=7)  # minute and hour items
DAY_RETENTION = timedelta(days=400)
MONTH_RETENTION = timedelta(days=25 * 31)
ARCHIVE_RETENTION = timedelta(days=90)

# The counter attribute each event type adds to.
COUNTER_OF = {
    EventType.API_CALL: "calls",
    EventType.API_AUTH_FAILED: "authFailures",
    EventType.API_RATE_LIMITED: "rateLimited",
}
COUNTERS = tuple(COUNTER_OF.values())


# Counter attributes beyond COUNTERS, each named by what it counts:
def reason_counter(reason: str) -> str:
    """Refusals by reason (`MISSING_KEY`, `RATE_LIMIT_SECOND`, ...) on IP, key and GLOBAL hour items."""
    return f"r_{reason}"


# A user's minutes live in its hour item, one counter per minute and kind: `c07` is the calls of
# minute 07 (`a07` auth failures, `r07` rate-limited). A separate item per user and minute cost a
# write unit and an index entry per event at a few calls a minute (issue 17); the names are short
# because an update bills the whole item in 1 KB units. Minute items written before remain readable
# (`reads.usage`) until they expire; GLOBAL and ENDPOINT items keep their minute items.
_MINUTE_LETTER = {counter: counter[0] for counter in COUNTERS}  # c, a, r: distinct initials
_LETTER_COUNTER = {letter: counter for counter, letter in _MINUTE_LETTER.items()}


def minute_counter(counter: str, minute: int) -> str:
    """The attribute of a user's hour item counting `counter` in `minute` (0-59) of the hour."""
    return f"{_MINUTE_LETTER[counter]}{minute:02d}"


def user_minutes(hour_item: Mapping[str, Any]) -> dict[int, dict[str, int]]:
    """A user's hour item's minute counters (values as `reads.plain` gives them): minute of
    the hour -> counter -> count."""
    minutes: dict[int, dict[str, int]] = {}
    for name, value in hour_item.items():
        counter = _LETTER_COUNTER.get(name[:1])
        if counter is not None and len(name) == 3 and name[1:].isdigit() and isinstance(value, int):
            minutes.setdefault(int(name[1:]), {})[counter] = value
    return minutes


def minutes_of_hour(hour_sk: str, hour_item: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """A user's hour item's minute counters by the minute's own sort key (`MINUTE#...T17:07`),
    as the minute items of earlier tables were keyed: what readers and alert rules go by."""
    start = bucket_start(hour_sk)
    return {
        minute_sk(start + timedelta(minutes=minute)): counts
        for minute, counts in user_minutes(hour_item).items()
    }


def method_counter(method: str) -> str:
    """Calls by HTTP method, on GLOBAL and user hour items."""
    return f"m_{method}"


def endpoint_counter(endpoint: str) -> str:
    """Calls by endpoint (`GET /items/{id}`), on a user's hour item."""
    return f"e_{endpoint}"


# On ENDPOINT items (API Gateway access logs): responses by status class, and response and
# integration latencies as DDSketch histograms whose bucket counts merge by ADD (`consumer.core.latency`).
RESPONSES, LATENCY_SUM = "responses", "latencySum"
INTEGRATIONS, INTEGRATION_SUM = "integrations", "integrationLatencySum"
LATENCY_BUCKET, INTEGRATION_BUCKET = "l_", "il_"  # + the bucket's key (`z` for 0 ms)


def status_counter(status: int) -> str:
    """`s2xx`, `s4xx`, `s5xx` (and `s1xx`, `s3xx`)."""
    return f"s{status // 100}xx"


def gateway_counter(response_type: str) -> str:
    """Responses API Gateway answered itself, by gateway response type: `g_THROTTLED`, `g_ACCESS_DENIED`."""
    return f"g_{response_type}"


def user_pk(email: str) -> str:
    return f"{USER_PREFIX}{email}"


def ip_pk(source_ip: str) -> str:
    return f"{IP_PREFIX}{source_ip}"


def key_pk(api_key_id: str) -> str:
    return f"{KEY_PREFIX}{api_key_id}"


def endpoint_pk(endpoint: str) -> str:
    """`ENDPOINT#GET /items/{id}`: an HTTP method and a route template (`contract.routes`)."""
    return f"{ENDPOINT_PREFIX}{endpoint}"


def minute_sk(at: datetime) -> str:
    return f"{MINUTE_PREFIX}{at.astimezone(UTC):%Y-%m-%dT%H:%M}"


def hour_sk(at: datetime) -> str:
    return f"{HOUR_PREFIX}{at.astimezone(UTC):%Y-%m-%dT%H}"


def day_sk(at: datetime) -> str:
    return f"{DAY_PREFIX}{at.astimezone(UTC):%Y-%m-%d}"


def month_sk(at: datetime) -> str:
    return f"{MONTH_PREFIX}{at.astimezone(UTC):%Y-%m}"


_FORMATS = {
    MINUTE_PREFIX: ("%Y-%m-%dT%H:%M", BUCKET_RETENTION),
    HOUR_PREFIX: ("%Y-%m-%dT%H", BUCKET_RETENTION),
    DAY_PREFIX: ("%Y-%m-%d", DAY_RETENTION),
    MONTH_PREFIX: ("%Y-%m", MONTH_RETENTION),
}


def bucket_start(sk: str) -> datetime:
    kind, _, stamp = sk.partition("#")
    return datetime.strptime(stamp, _FORMATS[kind + "#"][0]).replace(tzinfo=UTC)


def expiry(sk: str) -> int:
    """A bucket item's TTL: its start plus its kind's retention, in epoch seconds."""
    return int((bucket_start(sk) + _FORMATS[sk.partition("#")[0] + "#"][1]).timestamp())


# -- the raw-event archive: pages of compressed events, per caller, hour and flush ----------------


def archive_pk(caller_pk: str) -> str:
    """`ARCHIVE#USER#<email>`, or `ARCHIVE#IP#<ip>` for callers without a user."""
    return f"{ARCHIVE_PREFIX}{caller_pk}"


def archive_sk(hour: datetime, shard_id: str, range_end: str, part: int) -> str:
    """Sorted by hour; one flush range of one shard writes the same pages however often it is replayed."""
    return f"{hour.astimezone(UTC):%Y-%m-%dT%H}#{shard_id}#{range_end}#{part:03d}"


# -- the exactly-once bookkeeping (consumer/EXACTLY_ONCE.md) ---------------------------------------


def intent_key(application: str, shard_id: str) -> dict[str, Any]:
    """The item holding a shard's claim and last flush range, per KCL application."""
    return {"pk": {"S": f"FLUSH#{application}"}, "sk": {"S": f"SHARD#{shard_id}"}}


def origin_key(origin: str) -> dict[str, Any]:
    """The item recording which record counts a re-driven origin (`contract.events.origin_id`)."""
    return {"pk": {"S": f"ORIGIN#{origin}"}, "sk": {"S": "CLAIM"}}


def reconciled_key(hour: datetime) -> dict[str, Any]:
    """The item recording an hour's completeness once it was published (`consumer.completeness`)."""
    return {"pk": {"S": "RECONCILED"}, "sk": {"S": hour_sk(hour)}}


def alert_key(rule: str, subject: str) -> dict[str, Any]:
    """The item holding the current alert episode of a rule and subject (`consumer.sinks.alerts`)."""
    return {"pk": {"S": f"{ALERT_PREFIX}{rule}"}, "sk": {"S": subject}}


def watermark(shard_id: str, part: int = 0) -> str:
    """The attribute holding the end of the last range this shard applied to an item (or to one part
    of its counters, when one update would exceed DynamoDB's expression limits)."""
    return f"w_{shard_id}" if part == 0 else f"w_{shard_id}#{part}"


def read_counters(item: dict[str, Any]) -> dict[str, int]:
    """The counters of an item as DynamoDB returns it (absent ones are 0)."""
    return {name: int(item.get(name, {}).get("N", "0")) for name in COUNTERS}


def analytics_table_spec(table_name: str) -> dict[str, Any]:
    """`create_table` arguments; ecs/consumer.yaml declares the same table (tests/deploy checks)."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": BUCKET, "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [bucket_index(BUCKET_INDEX, "KEYS_ONLY")],
        "SSESpecification": {"Enabled": True},
    }


def bucket_index(name: str, projection: str) -> dict[str, Any]:
    """A by-bucket index: every item of one bucket, by pk. `LEGACY_BUCKET_INDEX` projects "ALL"."""
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": BUCKET, "KeyType": "HASH"},
            {"AttributeName": "pk", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": projection},
    }
