"""The billing read side end to end against moto: `metering usage`, `events` and `export`.

Ground truth goes in through the real writer (`DynamoDBSink`, batches aggregated by `Aggregate`)
and is computed again here, independently, from the events themselves; every command's JSON or CSV
must equal it. Every read goes through a client that fails on anything but GetItem and Query.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from moto import mock_aws
from rich.console import Console

from consumer import aws as consumer_aws
from consumer.core.aggregate import Aggregate
from consumer.core.events import decode_event
from consumer.core.flush import Batch, FlushRange, Position
from consumer.settings import ConsumerSettings
from consumer.sinks.dynamodb import DynamoDBSink
from consumer.testing import event
from contract.table import analytics_table_spec
from metering.commands import billing
from metering.commands import usage as usage_command
from metering.commands.usage import UsageOptions, build_report, render_report
from metering.errors import CommandError
from reads import Table
from reads.usage import DAY, HOUR, MONTH, month_export, usage_buckets, week_pattern

ARRIVAL = datetime(2026, 12, 1, 12, tzinfo=UTC)  # when the consumer decoded every event
NOW = datetime(2026, 12, 1, 12, 30, 15, tzinfo=UTC)  # when the commands run
ADA, BOB, CAROL = "ada@example.com", "bob@example.com", "carol@example.com"
KEYLESS_IP = "198.51.100.9"
TYPES = ("API_CALL", "API_AUTH_FAILED", "API_RATE_LIMITED")
COUNTER = {"API_CALL": "calls", "API_AUTH_FAILED": "authFailures", "API_RATE_LIMITED": "rateLimited"}
READS = frozenset({"get_item", "query", "batch_get_item"})


# -- the writer's side -----------------------------------------------------------------------------


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def ev(kind: str, when: datetime, email: str | None, plan: str | None = None, **extra: Any) -> dict[str, Any]:
    reason = None if kind == "API_CALL" else ("MISSING_KEY" if email is None else "RATE_LIMIT_MINUTE")
    return event(kind, at=when, email=email, plan=plan, reason=reason, **extra)


def scenario() -> list[tuple[str, list[dict[str, Any]]]]:
    """Batches (shard, events) in the order they are flushed: both sides of the November boundary.

    A user's plan changes only between batches, so "the plan of the last call" means one thing.
    """
    shard_a, shard_b = "shardId-000000000000", "shardId-000000000001"
    first = [
        ev("API_CALL", at("2026-11-05T10:00:00"), ADA, "pro"),
        *(ev("API_CALL", at("2026-11-29T09:15:30.250"), ADA, "pro") for _ in range(3)),  # one instant
        ev("API_AUTH_FAILED", at("2026-11-29T09:20:00"), ADA),
        ev("API_CALL", at("2026-11-30T23:59:59.999"), BOB, "free"),
        *(ev("API_AUTH_FAILED", at("2026-11-30T22:00:00"), None, ip=KEYLESS_IP) for _ in range(2)),
    ]
    second = [
        ev("API_RATE_LIMITED", at("2026-11-30T18:00:00"), ADA, "pro"),
        ev("API_CALL", at("2026-11-02T08:00:00"), ADA, "pro"),  # earlier than anything flushed before
        # 00:30 at +01:00 is 23:30 UTC on November 30th: November's, sent in another zone and case
        ev("API_CALL", at("2026-11-30T23:30:00"), "Carol@Example.com", "free")
        | {"timestamp": "2026-12-01T00:30:00.000+01:00"},
        ev("API_CALL", at("2026-12-01T00:00:00"), BOB, "free"),
    ]
    third = [
        *(ev("API_CALL", at("2026-11-30T20:00:00"), ADA, "enterprise") for _ in range(2)),
        ev("API_CALL", at("2026-12-01T09:05:00"), ADA, "enterprise"),
        ev("API_AUTH_FAILED", at("2026-12-01T09:06:00"), ADA),
        ev("API_AUTH_FAILED", at("2026-12-01T10:00:00"), None, ip=KEYLESS_IP),
    ]
    rng = random.Random(11)
    crowd = [
        ev(
            rng.choice(TYPES),
            at("2026-11-24T00:00:00") + timedelta(seconds=rng.randrange(7 * 86400 + 11 * 3600)),
            f"user{n % 7}@example.com",
            "pro" if n % 7 < 3 else "free",
        )
        for n in range(300)
    ]
    return [
        (shard_a, first),
        (shard_b, second),
        (shard_a, third),
        (shard_b, crowd[:150]),
        (shard_a, crowd[150:]),
    ]


def write(
    client: Any, table: str, batches: list[tuple[str, list[dict[str, Any]]]], arrival: datetime = ARRIVAL
) -> None:
    """Flush each batch through the real sink, ranges following each other per shard."""
    sink = DynamoDBSink(client, table, "billing-test", retry_for=0, concurrency=4)
    ends: dict[str, int] = {}
    for shard, events in batches:
        if shard not in ends:
            sink.claim(shard)
        start = ends.get(shard)
        aggregate = Aggregate()
        for document in events:
            data = orjson.dumps(document)
            aggregate.add(decode_event(data, arrival), data)
        end = (start or 0) + len(events)
        flush = FlushRange(
            shard, None if start is None else Position(str(start)).key(), Position(str(end)).key()
        )
        sink.write(Batch(flush, aggregate, len(events)))
        ends[shard] = end
    sink.close()


# -- the reader's side, computed again from the events ------------------------------------------------


def utc(document: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(document["timestamp"]).astimezone(UTC)


def stamp(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def owner(document: dict[str, Any]) -> str | None:
    return document["userEmail"].lower() if document["userEmail"] else None


def counts(events: list[dict[str, Any]]) -> dict[str, int]:
    by_type = Counter(COUNTER[document["eventType"]] for document in events)
    return {name: by_type[name] for name in ("calls", "authFailures", "rateLimited")}


def expected_export(events: list[dict[str, Any]], month: str) -> list[dict[str, Any]]:
    users: dict[str, list[dict[str, Any]]] = {}
    for document in events:
        if owner(document) and f"{utc(document):%Y-%m}" == month:
            users.setdefault(owner(document) or "", []).append(document)
    rows = []
    for email in sorted(users):
        mine = sorted(users[email], key=utc)
        plans = [document["plan"] for document in mine if document["plan"]]
        rows.append(
            {
                "email": email,
                "plan": plans[-1] if plans else None,
                **counts(mine),
                "firstSeen": stamp(utc(mine[0])),
                "lastSeen": stamp(utc(mine[-1])),
            }
        )
    return rows


def expected_series(
    events: list[dict[str, Any]], label: Callable[[datetime], str], labels: list[str]
) -> list:
    return [
        {"bucket": name, **counts([document for document in events if label(utc(document)) == name])}
        for name in labels
    ]


def in_order(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(events, key=lambda document: (utc(document), document["eventId"]))


# -- fixtures ----------------------------------------------------------------------------------------


class ReadOnly:
    """A DynamoDB client that reads by key or index only: any other call (a Scan) fails the test."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        if name not in READS:
            raise AssertionError(f"the read side called {name}: only GetItem and Query are allowed")
        return getattr(self._client, name)


@dataclass
class Store:
    settings: ConsumerSettings
    client: Any  # the plain client (the writer's)
    reader: ReadOnly
    events: list[dict[str, Any]]

    @property
    def table(self) -> Table:
        return Table(self.reader, self.settings.analytics_table)


@pytest.fixture(scope="module")
def written() -> Iterator[Store]:
    """The scenario written once for the module (a write takes seconds); tests that change an item
    put it back (`altered`)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "ENVIRONMENT": "billing",
            "COLUMNS": "200",
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        with mock_aws():
            settings = ConsumerSettings.from_env({"ENVIRONMENT": "billing"})
            client = boto3.client("dynamodb")
            client.create_table(**analytics_table_spec(settings.analytics_table))
            batches = scenario()
            write(client, settings.analytics_table, batches)
            reader = ReadOnly(client)
            # The commands build their client with `consumer.aws.client`, and read the time once.
            patch.setattr(consumer_aws, "client", lambda service, region, *_: reader)
            patch.setattr(billing, "utc_now", lambda: NOW)
            patch.setattr(usage_command, "utc_now", lambda: NOW)
            yield Store(settings, client, reader, [document for _, events in batches for document in events])


@pytest.fixture
def store(written: Store) -> Iterator[Store]:
    written.reader.calls.clear()
    yield written
    assert set(written.reader.calls) <= READS


@contextmanager
def altered(store: Store, *keys: tuple[str, str]) -> Iterator[None]:
    """Items changed inside the block are put back as they were."""
    name = store.settings.analytics_table
    saved = [
        store.client.get_item(TableName=name, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True)[
            "Item"
        ]
        for pk, sk in keys
    ]
    try:
        yield
    finally:
        for item in saved:
            store.client.put_item(TableName=name, Item=item)


def run(store: Store, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="metering")
    billing.add_parser(parser.add_subparsers(required=True))
    args = parser.parse_args(list(argv))
    code: int = args.handler(args, store.settings)
    return code


def month_item_attributes(store: Store, email: str, month: str, update: str, **values: str) -> None:
    store.client.update_item(
        TableName=store.settings.analytics_table,
        Key={"pk": {"S": f"USER#{email}"}, "sk": {"S": f"MONTH#{month}"}},
        UpdateExpression=update,
        ExpressionAttributeNames={f"#{name}": name for name in ("firstSeen", "lastSeen", "plan")},
        **({"ExpressionAttributeValues": {k: {"S": v} for k, v in values.items()}} if values else {}),
    )


# -- export --------------------------------------------------------------------------------------------


def test_export_json_is_each_user_of_the_month_exactly(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """`export --format json`: one row per user of November, counters, plan and first/last seen exact."""
    assert run(store, "export", "--month", "2026-11", "--format", "json") == 0
    document = json.loads(capsys.readouterr().out)
    assert document == {"month": "2026-11", "users": expected_export(store.events, "2026-11")}
    ada = next(row for row in document["users"] if row["email"] == ADA)
    assert ada["firstSeen"] == "2026-11-02T08:00:00.000Z" and ada["lastSeen"] == "2026-11-30T20:00:00.000Z"
    assert ada["plan"] == "enterprise"  # its last November call; its rate-limited 18:00 call was pro
    assert [row["email"] for row in document["users"]][:3] == [ADA, BOB, CAROL]


def test_export_csv_on_each_side_of_the_boundary(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """CSV rows of November and of December: an event at 23:59:59.999 UTC stays in November."""
    for month in ("2026-11", "2026-12"):
        assert run(store, "export", "--month", month) == 0
        rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
        assert [row.pop("month") for row in rows] == [month] * len(rows)
        expected = [
            {name: "" if value is None else str(value) for name, value in row.items()}
            for row in expected_export(store.events, month)
        ]
        assert rows == expected
    bob_december = next(row for row in expected_export(store.events, "2026-12") if row["email"] == BOB)
    assert bob_december["firstSeen"] == "2026-12-01T00:00:00.000Z" and bob_december["calls"] == 1


def test_two_exports_are_byte_identical_files(store: Store, tmp_path: Path) -> None:
    """The same table exported twice gives the same bytes, in both formats."""
    for file_format in ("csv", "json"):
        first, second = tmp_path / f"1.{file_format}", tmp_path / f"2.{file_format}"
        assert run(store, "export", "--month", "2026-11", "--format", file_format, "--out", str(first)) == 0
        assert run(store, "export", "--month", "2026-11", "--format", file_format, "--out", str(second)) == 0
        assert first.read_bytes() == second.read_bytes() and len(first.read_bytes()) > 100
    assert (
        (tmp_path / "1.csv")
        .read_bytes()
        .startswith(
            b"month,email,plan,calls,authFailures,rateLimited,firstSeen,lastSeen\n2026-11,ada@example.com,enterprise,"
        )
    )


def test_month_items_without_first_last_seen_fall_back_to_the_archive(store: Store) -> None:
    """Items written before month items carried firstSeen/lastSeen/plan: the archive gives the same rows."""
    rows = expected_export(store.events, "2026-11")
    with altered(store, *((f"USER#{row['email']}", "MONTH#2026-11") for row in rows)):
        for row in rows:
            month_item_attributes(store, row["email"], "2026-11", "REMOVE #firstSeen, #lastSeen, #plan")
        export = month_export(store.table, "2026-11")
    assert [row.document() for row in export.rows] == expected_export(store.events, "2026-11")
    assert export.complete and not export.unknown_times


def test_month_items_own_first_last_seen_and_plan_are_used_when_present(store: Store) -> None:
    """A month item's own firstSeen, lastSeen and plan are what the export reports."""
    with altered(store, (f"USER#{BOB}", "MONTH#2026-11")):
        month_item_attributes(
            store,
            BOB,
            "2026-11",
            "SET #firstSeen = :f, #lastSeen = :l, #plan = :p",
            **{":f": "2026-11-30T23:59:59.999Z", ":l": "2026-11-30T23:59:59.999Z", ":p": "pro"},
        )
        bob = next(row for row in month_export(store.table, "2026-11").rows if row.email == BOB)
    assert (bob.first_seen, bob.last_seen, bob.plan) == ("2026-11-30T23:59:59.999Z",) * 2 + ("pro",)


def test_export_refuses_while_the_index_misses_a_user(store: Store, tmp_path: Path) -> None:
    """The index lists fewer users than GLOBAL's exact activeUsers: no file rather than a short invoice."""
    store.client.delete_item(
        TableName=store.settings.analytics_table,
        Key={"pk": {"S": f"USER#{CAROL}"}, "sk": {"S": "MONTH#2026-11"}},
    )
    out = tmp_path / "november.csv"
    with pytest.raises(CommandError, match="catching up") as refused:
        run(store, "export", "--month", "2026-11", "--out", str(out))
    assert refused.value.exit_code == 1 and not out.exists()


@pytest.mark.parametrize("month", ["2026-13", "26-11", "2026-1", "2027-01", "november"])
def test_export_refuses_a_month_that_is_not_one_or_not_begun(store: Store, month: str) -> None:
    """A malformed or future month is a usage error (exit 2), before any read."""
    with pytest.raises(CommandError) as refused:
        run(store, "export", "--month", month)
    assert refused.value.exit_code == 2 and store.reader.calls == []


def test_an_open_month_is_exported_with_a_warning(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """December is not over on December 1st: the file is written, stderr says its counts still grow."""
    assert run(store, "export", "--month", "2026-12") == 0
    assert "2026-12 is not over" in capsys.readouterr().err


# -- events ----------------------------------------------------------------------------------------


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_events_of_a_user_are_the_events_as_sent_in_order(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """`events --user --json`: every event of the window as sent, by timestamp then eventId."""
    assert run(store, "events", "--user", ADA, "--from", "2026-11-02", "--to", "2026-12-02", "--json") == 0
    expected = in_order([document for document in store.events if owner(document) == ADA])
    assert _json_lines(capsys.readouterr().out) == expected
    ties = [document for document in expected if document["timestamp"] == "2026-11-29T09:15:30.250Z"]
    assert len(ties) == 3 and [d["eventId"] for d in ties] == sorted(d["eventId"] for d in ties)


def test_events_window_is_half_open_and_types_filter(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """[from, to): an event at `from` is in, one at `to` is out; --type keeps only those types."""
    argv = ["events", "--user", ADA, "--from", "2026-11-29T09:15:30.250Z", "--to", "2026-11-30T20:00:00Z"]
    assert run(store, *argv, "--json") == 0
    window = [
        document
        for document in store.events
        if owner(document) == ADA
        and at("2026-11-29T09:15:30.250") <= utc(document) < at("2026-11-30T20:00:00")
    ]
    assert _json_lines(capsys.readouterr().out) == in_order(window)
    assert run(store, *argv, "--type", "API_AUTH_FAILED", "--type", "API_RATE_LIMITED", "--json") == 0
    refused = [document for document in window if document["eventType"] != "API_CALL"]
    assert _json_lines(capsys.readouterr().out) == in_order(refused) and len(refused) == 2


def test_events_of_a_user_named_in_another_case_and_zone(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """The email is canonicalised; an event sent at +01:00 is found by its UTC time."""
    assert (
        run(
            store,
            "events",
            "--user",
            "CAROL@example.com",
            "--from",
            "2026-11-30T23:00Z",
            "--to",
            "2026-11-30T23:31Z",
            "--json",
        )
        == 0
    )
    (carol,) = _json_lines(capsys.readouterr().out)
    assert carol["timestamp"] == "2026-12-01T00:30:00.000+01:00" and carol["userEmail"] == "Carol@Example.com"


def test_events_of_callers_without_a_user_by_ip(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """`events --ip`: keyless events of that source address, both sides of the boundary."""
    assert run(store, "events", "--ip", KEYLESS_IP, "--from", "3d", "--json") == 0
    expected = in_order([d for d in store.events if d["userEmail"] is None and d["sourceIp"] == KEYLESS_IP])
    assert _json_lines(capsys.readouterr().out) == expected and len(expected) == 3


def test_events_table_and_limit(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json a table; --limit stops after N events."""
    assert run(store, "events", "--user", ADA, "--from", "5d", "--limit", "2") == 0
    text = capsys.readouterr().out
    assert "2026-11-29T09:15:30.250Z" in text and "the first 2 events" in text
    assert run(store, "events", "--user", ADA, "--from", "5d", "--json", "--limit", "4") == 0
    assert len(_json_lines(capsys.readouterr().out)) == 4


@pytest.mark.parametrize(
    "argv",
    [
        ["--user", ADA, "--from", "91d"],  # the archive keeps 90 days
        ["--user", ADA, "--from", "2026-12-01", "--to", "2026-11-30"],
        ["--user", "not an email", "--from", "1d"],
        ["--ip", " ", "--from", "1d"],
        ["--ip", "x" * 65, "--from", "1d"],
        ["--user", ADA, "--from", "yesterday"],
    ],
)
def test_events_refuses_what_cannot_work(store: Store, argv: list[str]) -> None:
    """Windows beyond the archive, empty windows, bad callers and bad times: exit 2, nothing read."""
    with pytest.raises(CommandError) as refused:
        run(store, "events", *argv)
    assert refused.value.exit_code == 2 and store.reader.calls == []


# -- usage -----------------------------------------------------------------------------------------


def _usage(store: Store, capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert run(store, "usage", *argv, "--json") == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def test_usage_of_a_user_by_day_with_total_and_pattern(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """`usage --user --by day`: the user's days, all-time total (first/last seen, plan), 7 x 24 pattern."""
    document = _usage(
        store, capsys, "--user", ADA, "--by", "day", "--from", "2026-11-28", "--to", "2026-12-02"
    )
    mine = [d for d in store.events if owner(d) == ADA]
    days = ["2026-11-28", "2026-11-29", "2026-11-30", "2026-12-01"]
    assert document["buckets"] == expected_series(mine, lambda t: f"{t:%Y-%m-%d}", days)
    assert document["total"] == {
        "user": ADA,
        **counts(mine),
        "firstSeen": "2026-11-02T08:00:00.000Z",
        "lastSeen": "2026-12-01T09:06:00.000Z",
        "plan": "enterprise",
    }
    pattern = document["pattern"]
    start, end = at("2026-11-24T13:00:00"), at("2026-12-01T13:00:00")  # the 168 hours ending with 12:00
    assert (pattern["from"], pattern["to"]) == (stamp(start), stamp(end))
    cells = [[0] * 24 for _ in range(7)]
    for d in mine:
        if start <= utc(d) < end and d["eventType"] == "API_CALL":
            cells[utc(d).weekday()][utc(d).hour] += 1
    assert pattern["cells"] == cells and sum(map(sum, cells)) == 6  # not the calls of Nov 2 and 5


def test_usage_of_everyone_by_hour_minute_and_month(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --user: GLOBAL's buckets (keyless events included) and every user's counts in the window."""
    document = _usage(
        store, capsys, "--by", "hour", "--from", "2026-11-30T18:00Z", "--to", "2026-12-01T01:00Z"
    )
    hours = [f"2026-11-30T{h}" for h in range(18, 24)] + ["2026-12-01T00"]
    assert [
        {k: v for k, v in b.items() if k != "activeUsers"} for b in document["buckets"]
    ] == expected_series(store.events, lambda t: f"{t:%Y-%m-%dT%H}", hours)
    window = [
        d
        for d in store.events
        if owner(d) and at("2026-11-30T18:00:00") <= utc(d) < at("2026-12-01T01:00:00")
    ]
    users = {email: counts([d for d in window if owner(d) == email]) for email in {owner(d) for d in window}}
    assert {row.pop("user"): row for row in document["users"]} == users
    active = {b["bucket"]: b["activeUsers"] for b in document["buckets"] if "activeUsers" in b}
    assert active["2026-11-30T23"] == len(
        {owner(d) for d in window if f"{utc(d):%Y-%m-%dT%H}" == "2026-11-30T23"}
    )

    minutes = _usage(
        store, capsys, "--by", "minute", "--from", "2026-11-30T23:58Z", "--to", "2026-12-01T00:01Z"
    )
    labels = ["2026-11-30T23:58", "2026-11-30T23:59", "2026-12-01T00:00"]
    assert minutes["buckets"] == expected_series(store.events, lambda t: f"{t:%Y-%m-%dT%H:%M}", labels)

    months = _usage(store, capsys, "--by", "month", "--last", "90d")  # months starting since Sep 2
    assert [{k: v for k, v in b.items() if k != "activeUsers"} for b in months["buckets"]] == expected_series(
        store.events, lambda t: f"{t:%Y-%m}", ["2026-10", "2026-11", "2026-12"]
    )
    assert months["buckets"][1]["activeUsers"] == len(expected_export(store.events, "2026-11"))


def test_a_users_minutes_come_from_its_hour_items_and_earlier_minute_items(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user's minutes are counters of its hour item (issue 17); a minute item the earlier layout
    wrote (it lives 7 days) still counts, in `usage --user --by minute` and in the top users."""
    labels = ["2026-11-30T23:58", "2026-11-30T23:59", "2026-12-01T00:00"]
    window = ("--by", "minute", "--from", "2026-11-30T23:58Z", "--to", "2026-12-01T00:01Z")
    mine = [d for d in store.events if owner(d) == BOB]
    expected = expected_series(mine, lambda t: f"{t:%Y-%m-%dT%H:%M}", labels)
    assert _usage(store, capsys, "--user", BOB, *window)["buckets"] == expected
    in_window = counts([d for d in mine if f"{utc(d):%Y-%m-%dT%H:%M}" in labels])["calls"]
    assert in_window == 2
    key = {"pk": {"S": f"USER#{BOB}"}, "sk": {"S": "MINUTE#2026-11-30T23:58"}}
    earlier = key | {"calls": {"N": "4"}, "bucket": key["sk"]}
    store.client.put_item(TableName=store.settings.analytics_table, Item=earlier)
    try:
        expected[0]["calls"] += 4
        assert _usage(store, capsys, "--user", BOB, *window)["buckets"] == expected
        top = {row.pop("user"): row for row in _usage(store, capsys, *window)["users"]}
        assert top[BOB]["calls"] == 4 + in_window
    finally:
        store.client.delete_item(TableName=store.settings.analytics_table, Key=key)


def test_usage_last_is_the_buckets_ending_with_the_current_one(store: Store) -> None:
    """`--last 15m` is 15 minutes, the current one last; `--last 3d --by day` three days, today last."""
    report = build_report(store.table, UsageOptions(by="minute", last="15m"), NOW)
    assert [b.label for b in report.buckets][::14] == ["2026-12-01T12:16", "2026-12-01T12:30"]
    assert len(report.buckets) == 15
    days = build_report(store.table, UsageOptions(user=ADA, by="day", last="3d"), NOW)
    assert [b.label for b in days.buckets] == ["2026-11-29", "2026-11-30", "2026-12-01"]


def test_usage_renders_tables_and_a_heatmap(store: Store) -> None:
    """The terminal view: the total, the series and the weekday/hour heatmap."""
    console = Console(width=200, record=True)
    console.print(render_report(build_report(store.table, UsageOptions(user=ADA, by="hour", last="6h"), NOW)))
    text = console.export_text()
    assert "ada@example.com, all time" in text and "2026-11-02T08:00:00.000Z" in text
    assert "2026-12-01T09" in text and "Mon" in text and "Sun" in text and "█ = peak" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["--by", "minute", "--from", "8d"],  # minute items live 7 days
        ["--by", "hour", "--last", "8d"],
        ["--by", "minute", "--last", "2d"],  # without --user: one index query per bucket, a day at most
        ["--last", "15m", "--from", "1h"],
        ["--to", "1h"],
        ["--user", "ada", "--last", "1h"],
        ["--last", "15x"],
    ],
)
def test_usage_refuses_what_cannot_work(store: Store, argv: list[str]) -> None:
    """Windows past retention, too many index queries, conflicting options: exit 2 or 1, nothing read."""
    with pytest.raises(CommandError) as refused:
        run(store, "usage", *argv)
    assert refused.value.exit_code in (1, 2) and store.reader.calls == []


# -- the read module itself -------------------------------------------------------------------------------


def test_reads_are_key_and_index_queries_only(store: Store) -> None:
    """Every read of reads.usage goes through GetItem and Query (the wrapper fails a Scan)."""
    table = store.table
    usage_buckets(table, "GLOBAL", DAY, at("2026-11-01T00:00:00"), at("2026-12-02T00:00:00"))
    usage_buckets(table, f"USER#{ADA}", MONTH, at("2026-01-01T00:00:00"), NOW)
    week_pattern(table, f"USER#{ADA}", NOW)
    month_export(table, "2026-11")
    assert usage_buckets(table, f"USER#{ADA}", HOUR, NOW - timedelta(hours=2), NOW)[0].counts.calls == 0
    assert set(store.reader.calls) == READS
    with pytest.raises(AssertionError, match="scan"):
        store.reader.scan(TableName=store.settings.analytics_table)
    store.reader.calls.clear()
