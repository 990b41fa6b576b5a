"""The dashboard and the alarms of ecs/monitoring.yaml show only metrics that are published.

Every metric they reference is read out of the template (the dashboard's JSON after `Fn::Sub`, each
alarm's metric or metric-math queries, SEARCH expressions included) and checked: custom metrics
against contract/cloudwatch.py (name, namespace, exactly its dimension names), AWS metrics against
`AWS_METRICS` below. A renamed metric, a dropped dimension or a dashboard pinned to the wrong
resource fails here, not as an empty graph or an alarm that can never fire.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from authorizer.decision import Outcome
from consumer.core.events import Reason
from contract.cloudwatch import BY_NAME, DISTRIBUTION, MAXIMUM, METRICS, NAMESPACE, SUM
from metering.cost import CostInputs

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "ecs" / "monitoring.yaml"
TOPIC = {"Ref": "AlarmTopic"}
ALARM = "AWS::CloudWatch::Alarm"
# What the key and topic policies admit (aws:SourceArn): an alarm named otherwise cannot notify.
ALARM_NAME_PREFIX = "complical-usage-${Environment}-"

# Real AWS metrics the template may use, with their dimension names (each service's CloudWatch
# documentation). Add one here only after checking it there.
AWS_METRICS: dict[tuple[str, str], frozenset[str]] = {
    **{
        ("AWS/Kinesis", name): frozenset({"StreamName"})
        for name in (
            "IncomingRecords",
            "IncomingBytes",
            "WriteProvisionedThroughputExceeded",
            "ReadProvisionedThroughputExceeded",
            "GetRecords.IteratorAgeMilliseconds",
        )
    },
    **{
        ("AWS/SQS", name): frozenset({"QueueName"})
        for name in ("ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage")
    },
    **{
        ("AWS/Lambda", name): frozenset({"FunctionName"})
        for name in ("Invocations", "Errors", "Throttles", "Duration")
    },
    **{
        ("ECS/ContainerInsights", name): frozenset({"ClusterName", "ServiceName"})
        for name in ("RunningTaskCount", "DesiredTaskCount")
    },
}

# The parameter a dimension's value must come from: a graph pinned to "prod", or to another
# resource, shows nothing or another environment's figures.
DIMENSION_PARAMETERS = {
    "Environment": "Environment",
    "StreamName": "StreamName",
    "QueueName": "DeadLetterQueueName",
    "FunctionName": "AuthorizerFunctionName",
    "ClusterName": "ClusterName",
    "ServiceName": "ServiceName",
}
# Dimensions pinned to a literal: the value must be one the code publishes.
DIMENSION_VALUES = {
    "Reason": {reason.value for reason in Reason},
    "Outcome": {outcome.value for outcome in Outcome},
}
# The statistics that read each folding right (contract.cloudwatch): a summed gauge or an averaged
# count shows a wrong figure. A percentile of a distribution is a pNN statistic.
STATISTICS = {
    SUM: {"Sum"},
    MAXIMUM: {"Maximum"},
    DISTRIBUTION: {"Maximum", "Minimum", "Average"},
}
PERCENTILE = re.compile(r"p\d{1,2}(\.\d+)?")
# ActiveUsers is the hour's figure, published at the start of the hour: read per hour.
PERIODS = {"ActiveUsers": 3600}
PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "monitoring",
}
SEARCH = re.compile(r"SEARCH\('(?P<query>[^']*)',\s*'(?P<stat>[^']+)',\s*(?P<period>\d+)\)")
SCHEMA = re.compile(r"\{(?P<schema>[^}]*)\}(?P<terms>.*)")
TERM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True, slots=True)
class MetricRef:
    where: str
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str | None], ...]  # value None: a SEARCH over every value
    stat: str
    period: int


# --- Reading the template -------------------------------------------------------------------------


def _load(path: Path = TEMPLATE) -> dict[str, Any]:
    template: dict[str, Any] = cfn_yaml.load(str(path))
    return template


def _placeholder(template: dict[str, Any], parameter: str) -> str:
    """What a parameter stands for here: its default if a number (the JSON needs one), else a marker."""
    declared = template["Parameters"][parameter]
    return str(declared["Default"]) if declared["Type"] == "Number" else f"<{parameter}>"


def _substitute(template: dict[str, Any], text: str, variables: dict[str, str] | None = None) -> str:
    """`Fn::Sub` as CloudFormation applies it; an unknown name fails, as the deployment would."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):  # ${!Literal} is written out as ${Literal}
            return "${" + name[1:] + "}"
        if variables and name in variables:
            return variables[name]
        if name in template["Parameters"]:
            return _placeholder(template, name)
        if name in PSEUDO:
            return PSEUDO[name]
        resource, _, attribute = name.partition(".")
        assert resource in template["Resources"], f"Fn::Sub of an unknown name: {name}"
        return f"{attribute.lower() or 'ref'}:{resource}"

    return re.sub(r"\$\{([^}]*)\}", value, text)


def _resolve(template: dict[str, Any], value: Any) -> str:
    """A property's value as a string: literal, `Ref` of a parameter or resource, or `Fn::Sub`."""
    if isinstance(value, str):
        return value
    (function, argument), *_ = value.items()
    if function == "Ref":
        return _placeholder(template, argument) if argument in template["Parameters"] else f"ref:{argument}"
    assert function == "Fn::Sub", f"teach the test {function}"
    if isinstance(argument, str):
        return _substitute(template, argument)
    text, variables = argument
    return _substitute(template, text, {k: _resolve(template, v) for k, v in variables.items()})


def _dashboard(template: dict[str, Any]) -> dict[str, Any]:
    (dashboard,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    body: dict[str, Any] = json.loads(_resolve(template, dashboard["Properties"]["DashboardBody"]))
    return body


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in template["Resources"].items() if r["Type"] == ALARM}


# --- Metric references ----------------------------------------------------------------------------


def _search(expression: str, where: str) -> MetricRef:
    """The metric a SEARCH expression finds: its schema's namespace and dimensions, one MetricName."""
    match = SEARCH.fullmatch(expression.strip())
    assert match, f"{where}: teach the test this SEARCH form: {expression}"
    schema = SCHEMA.fullmatch(match["query"].strip())
    assert schema, f"{where}: a SEARCH without a {{namespace,dimensions}} schema: {expression}"
    namespace, *names = (part.strip() for part in schema["schema"].split(","))
    terms = dict(TERM.findall(schema["terms"]))
    # Free text besides Name="value" terms could match any other metric.
    assert not TERM.sub("", schema["terms"]).strip(), f"{where}: free text in {expression}"
    assert "MetricName" in terms, f"{where}: a SEARCH must name its metric: {expression}"
    assert set(terms) - {"MetricName"} <= set(names), f"{where}: a term outside the schema: {expression}"
    dimensions = tuple((name, terms.get(name)) for name in names)
    return MetricRef(where, namespace, terms["MetricName"], dimensions, match["stat"], int(match["period"]))


def _expression(expression: str, where: str) -> MetricRef | None:
    """A SEARCH finds metrics; any other expression is arithmetic on the ids of listed metrics."""
    assert "SELECT" not in expression.upper(), f"{where}: teach the test Metrics Insights queries"
    return _search(expression, where) if "SEARCH(" in expression else None


def _dashboard_refs(template: dict[str, Any]) -> Iterator[MetricRef]:
    for index, widget in enumerate(_dashboard(template)["widgets"]):
        properties = widget["properties"]
        where = f"dashboard widget {index} ({properties.get('title', widget['type'])})"
        for entry in properties.get("metrics", []):
            options: dict[str, Any] = entry[-1] if isinstance(entry[-1], dict) else {}
            names = [part for part in entry if not isinstance(part, dict)]
            assert not {".", "..."} & set(names), f"{where}: write {entry} out in full"
            if not names:
                ref = _expression(options["expression"], where)
                if ref is not None:
                    yield ref
                continue
            namespace, name, *pairs = names
            assert len(pairs) % 2 == 0, f"{where}: dimensions are name, value pairs: {entry}"
            yield MetricRef(
                where,
                namespace,
                name,
                tuple(zip(pairs[::2], pairs[1::2], strict=True)),
                options.get("stat", properties.get("stat", "Average")),
                options.get("period", properties.get("period", 300)),
            )


def _metric(template: dict[str, Any], where: str, spec: dict[str, Any], stat: str, period: int) -> MetricRef:
    """An alarm's metric: `spec` is the alarm's own properties, or a query's MetricStat.Metric."""
    dimensions = tuple((d["Name"], _resolve(template, d["Value"])) for d in spec.get("Dimensions", []))
    return MetricRef(where, spec["Namespace"], spec["MetricName"], dimensions, stat, period)


def _alarm_refs(template: dict[str, Any]) -> Iterator[MetricRef]:
    for name, alarm in _alarms(template).items():
        where = f"alarm {name}"
        if "MetricName" in alarm:
            stat = alarm.get("Statistic") or alarm["ExtendedStatistic"]
            yield _metric(template, where, alarm, stat, alarm["Period"])
        for query in alarm.get("Metrics", []):
            if "MetricStat" in query:
                given = query["MetricStat"]
                yield _metric(template, where, given["Metric"], given["Stat"], given["Period"])
            elif (ref := _expression(query["Expression"], where)) is not None:
                yield ref


def _refs(template: dict[str, Any]) -> list[MetricRef]:
    return [*_dashboard_refs(template), *_alarm_refs(template)]


# --- The checks, as lists of problems (so that one run shows them all) -----------------------------


def _unpublished(refs: list[MetricRef]) -> list[str]:
    problems = []
    for ref in refs:
        names = {name for name, _ in ref.dimensions}
        if ref.namespace == NAMESPACE:
            metric = BY_NAME.get(ref.name)
            if metric is None:
                problems.append(f"{ref.where}: {ref.name} is not in contract/cloudwatch.py")
            elif names != set(metric.dimension_names) or len(names) != len(ref.dimensions):
                expected = metric.dimension_names
                problems.append(f"{ref.where}: {ref.name} has dimensions {expected}, not {names}")
        elif (ref.namespace, ref.name) not in AWS_METRICS:
            problems.append(f"{ref.where}: {ref.namespace} {ref.name} is not a known AWS metric")
        elif names != AWS_METRICS[ref.namespace, ref.name]:
            problems.append(f"{ref.where}: {ref.namespace} {ref.name} is not published by {sorted(names)}")
    return problems


def _mispinned(template: dict[str, Any], refs: list[MetricRef]) -> list[str]:
    problems = []
    for ref in refs:
        for name, value in ref.dimensions:
            if value is None:
                if name in DIMENSION_PARAMETERS:
                    problems.append(f"{ref.where}: {ref.name} must pin {name} (to its parameter)")
            elif name in DIMENSION_PARAMETERS:
                if value != _placeholder(template, DIMENSION_PARAMETERS[name]):
                    problems.append(f"{ref.where}: {ref.name} {name}={value}, not the parameter's value")
            elif value not in DIMENSION_VALUES.get(name, ()):
                problems.append(f"{ref.where}: {ref.name} {name}={value} is never published")
    return problems


def _misread(refs: list[MetricRef]) -> list[str]:
    """Statistics that give wrong figures: a count not summed, a gauge summed, an hourly figure per minute."""
    problems = []
    for ref in refs:
        metric = BY_NAME.get(ref.name)
        if ref.namespace != NAMESPACE or metric is None:
            continue
        percentile = metric.folding == DISTRIBUTION and PERCENTILE.fullmatch(ref.stat)
        fits = ref.stat in STATISTICS[metric.folding] or bool(percentile)
        if not fits or ref.period != PERIODS.get(ref.name, ref.period):
            problems.append(f"{ref.where}: {ref.name} read as {ref.stat} over {ref.period} s")
    return problems


# --- Tests ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return _load()


@pytest.fixture(scope="module")
def refs(template: dict[str, Any]) -> list[MetricRef]:
    found = _refs(template)
    assert any(ref.where.startswith("dashboard") for ref in found)
    assert any(ref.where.startswith("alarm") for ref in found)
    return found


def test_every_metric_shown_is_published(refs: list[MetricRef]) -> None:
    """Custom metrics are in the catalogue with exactly its dimensions; AWS ones are real."""
    assert _unpublished(refs) == []


def test_every_dimension_value_is_the_stacks_or_a_published_one(
    template: dict[str, Any], refs: list[MetricRef]
) -> None:
    """Resources come from the parameters, Environment always; literal values are published values."""
    assert _mispinned(template, refs) == []


def test_every_custom_metric_is_read_with_a_statistic_that_fits(refs: list[MetricRef]) -> None:
    """Counts are summed; ActiveUsers is the hour's Maximum; latencies are percentiles or extremes."""
    assert _misread(refs) == []


def test_every_published_metric_is_on_the_dashboard_or_in_an_alarm(refs: list[MetricRef]) -> None:
    shown = {ref.name for ref in refs if ref.namespace == NAMESPACE}
    assert {metric.name for metric in METRICS} - shown == set()


def test_every_alarm_notifies_the_topic_on_alarm_and_ok(template: dict[str, Any]) -> None:
    """ALARM and OK go to the stack's topic; each alarm says what to do and decides on missing data."""
    alarms = _alarms(template)
    assert len(alarms) == CostInputs().alarms  # what `metering cost` charges for
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [TOPIC], name
        assert alarm["OKActions"] == [TOPIC], name
        assert alarm["TreatMissingData"] in {"breaching", "notBreaching", "ignore", "missing"}, name
        assert len(str(alarm["AlarmDescription"])) > 80, name
        assert alarm["AlarmName"]["Fn::Sub"].startswith(ALARM_NAME_PREFIX), name


def test_cloudwatch_may_publish_to_the_topic(template: dict[str, Any]) -> None:
    """A customer managed key (CloudWatch cannot use alias/aws/sns), admitting this stack's alarms."""
    resources = template["Resources"]
    assert resources["AlarmTopic"]["Properties"]["KmsMasterKeyId"] == {"Ref": "AlarmTopicKey"}
    policies = (
        resources["AlarmTopicKey"]["Properties"]["KeyPolicy"],
        resources["AlarmTopicPolicy"]["Properties"]["PolicyDocument"],
    )
    cloudwatch = {"Service": "cloudwatch.amazonaws.com"}
    for policy in policies:
        (statement,) = [s for s in policy["Statement"] if s["Principal"] == cloudwatch]
        source = statement["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"]
        assert source.endswith(":alarm:" + ALARM_NAME_PREFIX + "*")


def test_the_dashboard_shows_every_alarm(template: dict[str, Any]) -> None:
    (widget,) = [w for w in _dashboard(template)["widgets"] if w["type"] == "alarm"]
    assert sorted(widget["properties"]["alarms"]) == sorted(f"arn:{name}" for name in _alarms(template))


@pytest.mark.parametrize(
    ("written", "wrong"),
    [
        ('"ApiCalls", "Environment"', '"ApiCall", "Environment"'),  # a misspelt custom metric
        ('MetricName=\\"Decisions\\"', 'MetricName=\\"Decision\\"'),  # in a SEARCH
        ("Value: DECODER_ERROR", "Value: DECODE_ERROR"),  # a dimension value never published
        ("- Name: Reason", "- Name: Cause"),  # a dimension the metric does not have
        ("MetricName: Duration", "MetricName: Durations"),  # not an AWS metric
        ('"StreamName", "${StreamName}", {"label": "incoming records"}', '"StreamName", "prod", {}'),
        ('"stat": "Maximum", "period": 3600', '"stat": "Sum", "period": 3600'),  # ActiveUsers summed
    ],
)
def test_the_checks_catch_a_wrong_reference(tmp_path: Path, written: str, wrong: str) -> None:
    """The checks above are not vacuous: each of these edits makes them report a problem."""
    text = TEMPLATE.read_text()
    assert written in text, written
    (tmp_path / "monitoring.yaml").write_text(text.replace(written, wrong))
    template = _load(tmp_path / "monitoring.yaml")
    refs = _refs(template)
    problems = _unpublished(refs) + _mispinned(template, refs) + _misread(refs)
    assert problems, wrong


def test_one_bad_access_log_line_never_raises_the_dead_letters_alarm(template: dict[str, Any]) -> None:
    """Dead letters alarm on what the consumer could not count; access-log lines (a caller may cause
    one) on their own metric, above a threshold of their own (issue 20)."""
    alarms = _alarms(template)
    dead_letters, lines = alarms["DeadLettersAlarm"], alarms["AccessLogLinesAlarm"]
    assert (dead_letters["MetricName"], dead_letters["Threshold"]) == ("UncountedRecords", 0)
    assert lines["MetricName"] == "RejectedAccessLogLines"
    assert lines["Threshold"] == {"Ref": "RejectedAccessLogLinesPerHour"}
    assert template["Parameters"]["RejectedAccessLogLinesPerHour"]["Default"] >= 1
