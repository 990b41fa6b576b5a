"""The stage's access-log format: one JSON object of `$context` variables per request (issue 10).

`FIELDS` is the one definition. `ecs/api-gateway.yaml` writes it as the stage's
`AccessLogSetting.Format` and `metering simulate` renders its lines from it; tests/deploy checks the
template against it and feeds a rendered line to the consumer's decoder
(`consumer.core.access_logs`), so the three cannot drift. API Gateway writes `-` for a variable it
has no value for: `integrationLatency` when no integration ran (the authorizer refused),
`userEmail` and `apiKeyId` for callers without a valid key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Final

# JSON field -> the API Gateway (REST) `$context` variable it holds. Every value is a quoted string.
FIELDS: Final[Mapping[str, str]] = {
    "requestId": "$context.requestId",
    "requestTimeEpoch": "$context.requestTimeEpoch",  # milliseconds
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",  # the route template, `/items/{id}`
    "path": "$context.path",  # as requested, with the stage: `/prod/items/42`
    "stage": "$context.stage",  # what the consumer strips from `path`: `/items/42`, as routes read it
    "status": "$context.status",
    "responseLatency": "$context.responseLatency",  # ms, request received to response sent
    "integrationLatency": "$context.integrationLatency",  # ms, the backend's share
    "sourceIp": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "userEmail": "$context.authorizer.userEmail",  # authorizer.policy's context
    "apiKeyId": "$context.authorizer.apiKeyId",
}
FORMAT: Final = json.dumps(FIELDS, separators=(",", ":"))
SUBSCRIPTION_FILTER: Final = "usage-stream"  # the subscription delivering the group to the stream

_VARIABLE = re.compile(r"\$context(?:\.[A-Za-z0-9]+)+")


def render(line_format: str, values: Mapping[str, str]) -> str:
    """A line as API Gateway writes it: each `$context` variable replaced by its value from `values`.

    Values are JSON-escaped, so any value keeps the line JSON; a variable without a value raises
    `KeyError` (a format naming a variable its renderer does not know is a drift to catch).
    """
    return _VARIABLE.sub(lambda found: json.dumps(values[found.group()])[1:-1], line_format)


def line(fields: Mapping[str, str]) -> str:
    """A line of `FORMAT` from its fields' values, by field name (`requestId`, ...)."""
    return render(FORMAT, {FIELDS[name]: value for name, value in fields.items()})
