"""The stage's access-log format: one JSON object of `$context` variables per request (issue 10).

`FIELDS` is the one definition. `ecs/api-gateway.yaml` writes it as the stage's
`AccessLogSetting.Format` and `metering simulate` renders its lines from it; tests/deploy checks the
template against it and feeds a rendered line to the consumer's decoder
(`consumer.core.access_logs`), so the three cannot drift. API Gateway writes `-` for a variable it
has no value for: `integrationLatency` when no integration ran (the authorizer refused),
`userEmail` and `apiKeyId` for callers without a valid key, `errorType` for a response of the backend's
own, and `resourcePath` for a request that matched no route.

API Gateway has been seen not to escape `"` and `\\` inside `$context` values (DataBiosphere/azul#4348),
so a value a caller writes could break the line. Hence: the format holds one such value only, the
path, last (`CALLER_FIELD`); every other value is API Gateway's (ids, numbers, the route template),
our authorizer's (`userEmail` matches `EMAIL_PATTERN`) or a parsed address, none of which can hold a
quote. The consumer reads the fields before it by position and the path as all that remains, so
the line counts whether or not API Gateway escaped it. The user agent is left out: the usage event
carries it already.
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
    "stage": "$context.stage",  # what the consumer strips from `path`: `/items/42`, as routes read it
    "status": "$context.status",
    "responseLatency": "$context.responseLatency",  # ms, request received to response sent
    "integrationLatency": "$context.integrationLatency",  # ms, the backend's share
    "sourceIp": "$context.identity.sourceIp",
    "userEmail": "$context.authorizer.userEmail",  # authorizer.policy's context
    "apiKeyId": "$context.authorizer.apiKeyId",
    # The gateway response API Gateway answered with (`THROTTLED`, `ACCESS_DENIED`, ...), `-` for
    # the backend's own response: tells requests refused before the authorizer ran (`metering reconcile`).
    "errorType": "$context.error.responseType",
    "path": "$context.path",  # as requested, with the stage: `/prod/items/42`. The caller's: last
}
CALLER_FIELD: Final = "path"  # the one value a caller writes, last in FIELDS
FORMAT: Final = json.dumps(FIELDS, separators=(",", ":"))
SUBSCRIPTION_FILTER: Final = "usage-stream"  # the subscription delivering the group to the stream

_VARIABLE = re.compile(r"\$context(?:\.[A-Za-z0-9]+)+")


def render(line_format: str, values: Mapping[str, str], *, escape: bool = True) -> str:
    """A line as API Gateway writes it: each `$context` variable replaced by its value from `values`.

    Values are JSON-escaped, so any value keeps the line JSON; `escape=False` writes them as they
    are, as API Gateway has been seen to. A variable without a value raises `KeyError` (a format
    naming a variable its renderer does not know is a drift to catch).
    """
    if escape:
        return _VARIABLE.sub(lambda found: json.dumps(values[found.group()])[1:-1], line_format)
    return _VARIABLE.sub(lambda found: values[found.group()], line_format)


def variables(line_format: str) -> list[str]:
    """The `$context` variables of a format, in order."""
    return _VARIABLE.findall(line_format)


def literals(line_format: str) -> list[str]:
    """The text of a format around its variables: one more item than `variables`."""
    return _VARIABLE.split(line_format)


def line(fields: Mapping[str, str], *, escape: bool = True) -> str:
    """A line of `FORMAT` from its fields' values, by field name (`requestId`, ...)."""
    return render(FORMAT, {FIELDS[name]: value for name, value in fields.items()}, escape=escape)
