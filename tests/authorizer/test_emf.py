"""The authorizer's metrics: each request's stdout lines are valid CloudWatch EMF carrying exactly the
metrics, units and dimensions `contract.cloudwatch` lists for the authorizer, with the right values.

`assert_valid_emf` checks a document against the EMF specification (Amazon CloudWatch User Guide,
"Specification: Embedded metric format"), written out here rather than trusted to the library.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import authorizer.handler as handler_module
from authorizer.decision import Outcome
from authorizer.errors import KeyStoreUnavailable, Unauthorized
from authorizer.keys import hash_key
from authorizer.metrics import DECISIONS, EmfMetrics, Tally
from authorizer.producer import NullProducer, ProducerStats
from authorizer.service import Authorizer
from consumer.testing import FakeClock
from contract.cloudwatch import AUTHORIZER, ENVIRONMENT, NAMESPACE, published_by
from contract.events import UsageEventV1
from tests.authorizer.conftest import START, Aws, http_v2_event, new_key, rest_event
from tests.authorizer.test_handler import FailingRateLimits
from tests.emf import assert_valid_emf, parse_emf

OURS = published_by(AUTHORIZER)
LATENCY_STEP_S = 0.25  # the fake monotonic clock's tick: every request takes exactly 250 ms


# --- the specification ---------------------------------------------------------------------------


def _valid(now_ms: float) -> dict[str, Any]:
    directive = {"Namespace": "N", "Dimensions": [["Environment"]], "Metrics": [{"Name": "Decisions"}]}
    return {
        "_aws": {"Timestamp": int(now_ms), "CloudWatchMetrics": [directive]},
        "Environment": "test",
        "Decisions": 1,
    }


def _directive(document: dict[str, Any]) -> dict[str, Any]:
    directive: dict[str, Any] = document["_aws"]["CloudWatchMetrics"][0]
    return directive


@pytest.mark.parametrize(
    ("breakage", "damage"),
    [
        ("no metadata", lambda d: d.pop("_aws")),
        ("timestamp in seconds", lambda d: d["_aws"].update(Timestamp=d["_aws"]["Timestamp"] // 1000)),
        ("timestamp a string", lambda d: d["_aws"].update(Timestamp=str(d["_aws"]["Timestamp"]))),
        ("no directive", lambda d: d["_aws"].update(CloudWatchMetrics=[])),
        ("dimension missing at the root", lambda d: d.pop("Environment")),
        ("dimension not a string", lambda d: d.update(Environment=7)),
        ("metric missing at the root", lambda d: d.pop("Decisions")),
        ("metric not a number", lambda d: d.update(Decisions="1")),
        ("101 values", lambda d: d.update(Decisions=[1] * 101)),
        ("unknown unit", lambda d: _directive(d)["Metrics"][0].update(Unit="Requests")),
        ("unknown member", lambda d: _directive(d).update(Service="x")),
        ("no namespace", lambda d: _directive(d).pop("Namespace")),
    ],
)
def test_the_checker_refuses_what_the_specification_refuses(breakage: str, damage: Any) -> None:
    now_ms = time.time() * 1000
    assert_valid_emf(_valid(now_ms), now_ms)
    broken = _valid(now_ms)
    damage(broken)
    with pytest.raises((AssertionError, KeyError)):
        assert_valid_emf(broken, now_ms)


# --- the authorizer's lines ----------------------------------------------------------------------


def published(lines: str) -> dict[str, float]:
    """One request's stdout: every line valid EMF in our namespace, every metric as the catalogue has
    it. Returns the values by metric, with its dimensions besides Environment: "Decisions{ALLOWED}"."""
    now_ms = time.time() * 1000
    values: dict[str, float] = {}
    for line in lines.splitlines():
        document = parse_emf(line)
        assert_valid_emf(document, now_ms)
        assert document[ENVIRONMENT] == "test"
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == NAMESPACE
            for definition in directive["Metrics"]:
                metric = OURS[definition["Name"]]
                assert definition == {"Name": metric.name, "Unit": metric.unit}  # standard resolution
                assert directive["Dimensions"] == [list(metric.dimension_names)]
                dimensions = ",".join(document[name] for name in metric.dimensions)
                key = f"{metric.name}{{{dimensions}}}" if dimensions else metric.name
                assert key not in values  # once per request
                value = document[metric.name]
                values[key] = sum(value) if isinstance(value, list) else value
    return values


def decided(outcome: Outcome, **others: float) -> dict[str, float]:
    """What a request publishes besides its producer counts: its decision and its latency."""
    return {f"Decisions{{{outcome}}}": 1.0, "HandlerLatency": LATENCY_STEP_S * 1000, **others}


class Ticker:
    """A monotonic clock that moves one step each time it is read."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += LATENCY_STEP_S
        return self.now


@dataclass
class ScriptedProducer(NullProducer):
    """Cumulative counters the test sets, as a background sender would have advanced them."""

    counters: ProducerStats = field(
        default_factory=lambda: ProducerStats(sent=0, failed=0, dropped=0, pending=0)
    )
    broken: bool = False

    def emit(self, event: UsageEventV1) -> None:
        if self.broken:
            raise RuntimeError("queue gone")

    def stats(self) -> ProducerStats:
        return self.counters


@pytest.fixture(autouse=True)
def lambda_environment(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The handler as Lambda builds it, with fake clocks. Powertools' settings that must not leak in
    (a `service` dimension, another namespace) are set; those that would stop the printing are not."""
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("ENABLE_KINESIS_ANALYTICS", "true")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "not-a-dimension")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Not/Ours")
    for name in ("POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_DEV"):
        monkeypatch.delenv(name, raising=False)
    lambda_with(monkeypatch)
    yield
    handler_module.reset()


def lambda_with(monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> None:
    """The next container's authorizer gets these constructor arguments, and fake clocks."""
    handler_module.reset()
    arguments = {"clock": FakeClock(START), "monotonic": Ticker(), **overrides}
    monkeypatch.setattr(handler_module, "Authorizer", functools.partial(Authorizer, **arguments))


def invoke(capsys: pytest.CaptureFixture[str], event: dict[str, Any]) -> dict[str, float]:
    """One invocation of the Lambda entry point; what it published."""
    capsys.readouterr()
    with contextlib.suppress(Unauthorized, KeyStoreUnavailable):  # API Gateway's 401 and 500
        handler_module.lambda_handler(event, None)
    return published(capsys.readouterr().out)


def test_each_request_publishes_its_decision_and_latency(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    """Allowed, refused for each key problem, rate limited (free plan: 5 a second): one decision each."""
    _, secret = new_key(aws)
    assert invoke(capsys, rest_event({"x-api-key": secret})) == decided(Outcome.ALLOWED)
    assert invoke(capsys, rest_event({})) == decided(Outcome.AUTH_FAILED)
    assert invoke(capsys, rest_event({"x-api-key": "garbage"})) == decided(Outcome.AUTH_FAILED)
    assert invoke(capsys, http_v2_event({"x-api-key": secret})) == decided(Outcome.ALLOWED)
    outcomes = [invoke(capsys, rest_event({"x-api-key": secret})) for _ in range(4)]
    assert outcomes == [decided(Outcome.ALLOWED)] * 3 + [decided(Outcome.RATE_LIMITED)]


def test_each_request_prints_one_line_per_dimension_set(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    """Decisions (Environment, Outcome) and the rest (Environment): two documents, nothing else."""
    _, secret = new_key(aws)
    handler_module.lambda_handler(rest_event({"x-api-key": secret}), None)
    lines = capsys.readouterr().out.splitlines()
    assert sorted(parse_emf(line)["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for line in lines) == [
        [["Environment"]],
        [["Environment", "Outcome"]],
    ]


def test_a_rate_limit_fail_open_is_published_with_its_request(
    aws: Aws, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        handler_module, "dynamodb_client", lambda: FailingRateLimits(aws.dynamodb, "Throttling")
    )
    _, secret = new_key(aws)
    for _ in range(2):
        assert invoke(capsys, rest_event({"x-api-key": secret})) == decided(
            Outcome.ALLOWED, RateLimitFailOpen=1
        )


def test_a_misconfigured_rate_limit_table_is_published_as_unavailable(
    aws: Aws, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = FailingRateLimits(aws.dynamodb, "ResourceNotFoundException")
    monkeypatch.setattr(handler_module, "dynamodb_client", lambda: failing)
    _, secret = new_key(aws)
    assert invoke(capsys, rest_event({"x-api-key": secret})) == decided(Outcome.UNAVAILABLE)


def test_producer_counts_are_published_as_deltas(
    aws: Aws, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender thread advances the totals between requests; each request publishes what changed."""
    producer = ScriptedProducer()
    lambda_with(monkeypatch, producer=producer)
    _, secret = new_key(aws, plan="enterprise")
    request = rest_event({"x-api-key": secret})
    assert invoke(capsys, request) == decided(Outcome.ALLOWED)
    producer.counters = ProducerStats(sent=3, failed=0, dropped=2, pending=4, retried=1)
    assert invoke(capsys, request) == decided(Outcome.ALLOWED, EventsSent=3, EventsDropped=2, EventsRetried=1)
    producer.counters = ProducerStats(sent=5, failed=1, dropped=2, pending=0, retried=1)
    assert invoke(capsys, request) == decided(Outcome.ALLOWED, EventsSent=2, EventsFailed=1)
    assert invoke(capsys, request) == decided(Outcome.ALLOWED)
    producer.broken = True  # an event lost on the way in counts as failed, in its own request
    assert invoke(capsys, request) == decided(Outcome.ALLOWED, EventsFailed=1)


def test_events_sent_add_up_to_the_stream(
    aws: Aws, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real producer and Kinesis (moto): waiting for each send, each request publishes its own."""
    monkeypatch.setenv("KINESIS_FLUSH_ON_RETURN_MS", "1000")
    _, secret = new_key(aws, plan="enterprise")
    requests = [invoke(capsys, http_v2_event({"x-api-key": secret})) for _ in range(5)]
    assert requests == [decided(Outcome.ALLOWED, EventsSent=1)] * 5
    assert len(aws.read_stream()) == 5


def test_every_metric_of_the_catalogue_is_published(
    aws: Aws, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Across outcomes, a fail-open and every producer counter, exactly the authorizer's metrics appear."""
    monkeypatch.setattr(
        handler_module, "dynamodb_client", lambda: FailingRateLimits(aws.dynamodb, "Throttling")
    )
    producer = ScriptedProducer(ProducerStats(sent=1, failed=1, dropped=1, pending=0, retried=1))
    lambda_with(monkeypatch, producer=producer)
    _, secret = new_key(aws)
    seen = {
        key.split("{")[0]
        for event in (rest_event({"x-api-key": secret}), rest_event({}))
        for key in invoke(capsys, event)
    }
    assert seen == set(OURS)


def test_nothing_secret_or_personal_is_published(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    """No key, key hash, key id, email or address: only the catalogue's low-cardinality dimensions."""
    key_id, secret = new_key(aws, email="grace@example.com")
    everything = ""
    for event in (rest_event({"x-api-key": secret}), rest_event({"x-api-key": secret + "x"}), rest_event({})):
        capsys.readouterr()
        with contextlib.suppress(Unauthorized):
            handler_module.lambda_handler(event, None)
        everything += capsys.readouterr().out
    assert everything.count("_aws") == 6
    for private in (secret, hash_key(secret), key_id, "grace@example.com", "grace", "203.0.113.9", "req-1"):
        assert private not in everything


def test_a_metrics_failure_never_costs_the_answer(
    aws: Aws, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken(Tally):
        def flush(self) -> None:
            raise OSError("stdout closed")

    monkeypatch.setattr(handler_module, "EmfMetrics", lambda environment: Broken())
    _, secret = new_key(aws)
    with caplog.at_level(logging.WARNING):
        response = handler_module.lambda_handler(rest_event({"x-api-key": secret}), None)
    assert response["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert "metrics not published: error=OSError" in caplog.text


def test_disabled_metrics_print_nothing_and_keep_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """POWERTOOLS_METRICS_DISABLED (set by `metering simulate`) silences the lines; nothing piles up."""
    metrics = EmfMetrics("test")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    for _ in range(150):  # past Powertools' 100 values, where it would print a full set by itself
        metrics.add(DECISIONS, dimensions=(Outcome.ALLOWED,))
        metrics.flush()
    assert capsys.readouterr().out == ""
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")
    metrics.add(DECISIONS, dimensions=(Outcome.ALLOWED,))
    metrics.flush()
    assert published(capsys.readouterr().out) == {"Decisions{ALLOWED}": 1.0}


def test_a_metric_needs_a_value_for_each_of_its_dimensions() -> None:
    with pytest.raises(ValueError, match="zip"):
        EmfMetrics("test").add(DECISIONS)


def test_the_zip_publishes_with_its_own_copy_of_powertools(tmp_path: Path) -> None:
    """Unzipped alone (boto3 and jmespath being the Lambda runtime's), the zip prints valid EMF from
    the Powertools and typing_extensions it carries."""
    from authorizer.build_zip import build

    build(tmp_path / "authorizer.zip")
    task = tmp_path / "task"
    zipfile.ZipFile(tmp_path / "authorizer.zip").extractall(task)
    script = (
        "import sys, authorizer.handler, aws_lambda_powertools, typing_extensions\n"
        "from authorizer.metrics import DECISIONS, EmfMetrics\n"
        "for module in (authorizer.handler, aws_lambda_powertools, typing_extensions):\n"
        "    assert module.__file__.startswith(sys.argv[1]), module.__file__\n"
        "metrics = EmfMetrics('test')\n"
        "metrics.add(DECISIONS, dimensions=('ALLOWED',))\n"
        "metrics.flush()\n"
    )
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("POWERTOOLS_", "PYTHON"))
    }
    result = subprocess.run(
        [sys.executable, "-c", script, str(task)],
        cwd=task,
        env={**environment, "PYTHONPATH": str(task), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert published(result.stdout) == {"Decisions{ALLOWED}": 1.0}
