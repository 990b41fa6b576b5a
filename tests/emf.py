"""CloudWatch Embedded Metric Format, checked against its specification (Amazon CloudWatch User Guide,
"Specification: Embedded metric format"), written out here rather than trusted to a library: the
authorizer's and the consumer's EMF lines are both held to it."""

from __future__ import annotations

import json
import math
from typing import Any

# CloudWatch's StandardUnit values, the only units EMF accepts.
_SIZES = ("Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes")
_BITS = ("Bits", "Kilobits", "Megabits", "Gigabits", "Terabits")
UNITS = {
    *("Seconds", "Microseconds", "Milliseconds", "Percent", "Count", "None", "Count/Second"),
    *_SIZES,
    *_BITS,
    *(f"{unit}/Second" for unit in _SIZES + _BITS),
}
MAX_DIMENSIONS, MAX_METRICS, MAX_VALUES = 30, 100, 100
MAX_EVENT_BYTES = 256 * 1024  # a CloudWatch Logs event, which is what an EMF document is


def parse_emf(line: str) -> dict[str, Any]:
    """A log event holds one JSON object and nothing else; NaN and Infinity are not JSON."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    assert len(line.encode()) <= MAX_EVENT_BYTES
    document = json.loads(line, parse_constant=refuse)
    assert isinstance(document, dict)
    return document


def assert_valid_emf(document: dict[str, Any], now_ms: float) -> None:
    metadata = document["_aws"]
    assert isinstance(metadata, dict)
    timestamp = metadata["Timestamp"]  # ms since the epoch; CloudWatch drops > 2 weeks old or 2 h ahead
    assert isinstance(timestamp, int) and not isinstance(timestamp, bool)
    assert now_ms - 14 * 86_400_000 < timestamp < now_ms + 2 * 3_600_000
    directives = metadata["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    for directive in directives:
        _assert_valid_directive(directive, document)


def _assert_valid_directive(directive: dict[str, Any], document: dict[str, Any]) -> None:
    assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
    namespace = directive["Namespace"]
    assert isinstance(namespace, str) and namespace.strip() and len(namespace) <= 255
    dimension_sets = directive["Dimensions"]
    assert isinstance(dimension_sets, list)
    for dimension_set in dimension_sets:
        assert isinstance(dimension_set, list) and len(dimension_set) <= MAX_DIMENSIONS
        assert len(set(dimension_set)) == len(dimension_set)
        for name in dimension_set:  # each a root member holding a string
            value = document[name]
            assert isinstance(name, str) and isinstance(value, str) and value.strip() and len(value) <= 1024
    metrics = directive["Metrics"]
    assert isinstance(metrics, list) and 1 <= len(metrics) <= MAX_METRICS
    for metric in metrics:
        assert set(metric) <= {"Name", "Unit", "StorageResolution"}
        name = metric["Name"]
        assert isinstance(name, str) and name.strip() and len(name) <= 255
        assert not any(name in dimension_set for dimension_set in dimension_sets)
        _assert_number_or_numbers(document[name])
        assert metric.get("Unit", "None") in UNITS
        assert metric.get("StorageResolution", 60) in (1, 60)


def _assert_number_or_numbers(value: Any) -> None:
    values = value if isinstance(value, list) else [value]
    assert 1 <= len(values) <= MAX_VALUES
    for number in values:
        assert isinstance(number, int | float) and not isinstance(number, bool) and math.isfinite(number)
