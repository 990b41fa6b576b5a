"""`GET /v1/usage`: the calling key's user's own usage, behind the same API Gateway and authorizer.

A Lambda proxy integration, of a REST API or of an HTTP API (payload format 2.0, `version` "2.0").
The user is the one the authorizer put in the request's context (`requestContext.authorizer`, or
`requestContext.authorizer.lambda` in an HTTP API's event: `userEmail`, with `apiKeyId` and
`plan`), never anything the request says: the endpoint takes no parameters, and a request carrying
any is refused, so no query string can name another user. Calls to it pass the authorizer like any
other, so they are rate limited and metered; its own count shows up after the consumer's next flush
(seconds). The templates (ecs/api-gateway.yaml) deploy it behind a REST API.

| request | status | `error` |
|---|---|---|
| `GET /v1/usage` with the authorizer's context | 200 | (none) |
| not an API Gateway event (not a JSON object) | 400 | `BAD_REQUEST` |
| no authorizer context, or an empty one | 401 | `UNAUTHENTICATED` |
| a context without a canonical `userEmail` and an `apiKeyId`, or not `ALLOWED` | 403 | `FORBIDDEN` |
| any method but GET | 405 (`Allow: GET`) | `METHOD_NOT_ALLOWED` |
| another resource, or path parameters (`/v1/usage/{user}`) | 404 | `NOT_FOUND` |
| any query string parameter | 400 | `UNSUPPORTED_PARAMETER` |
| the analytics table could not be read | 503 | `UNAVAILABLE` |

Nothing from the request is echoed back. Reads: one GetItem and one Query of the analytics table
(`reads.usage.usage_summary`); the role needs `dynamodb:GetItem` and `dynamodb:Query` on
that table and nothing else. Each call is one attempt with the authorizer's short timeouts
(`authorizer.clients`): at most `WORST_CASE_DYNAMODB_SECONDS`, well under a 5 s Lambda timeout.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from authorizer.clients import DYNAMODB_CALL_LIMIT_SECONDS, dynamodb_client
from authorizer.decision import Caller, Outcome
from contract.environment import Reader, environment_name, resource_name
from contract.events import canonical_email
from reads import Table
from reads.usage import usage_summary

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

ROUTE = "/v1/usage"
WORST_CASE_DYNAMODB_SECONDS = 2 * DYNAMODB_CALL_LIMIT_SECONDS  # one GetItem, one single-page Query
_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UsageApiSettings:
    environment: str = "local"
    analytics_table: str = "complical-usage-analytics-local"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> UsageApiSettings:
        read = Reader(env)
        environment = read("ENVIRONMENT", "local", environment_name)
        return cls(
            environment=environment,
            analytics_table=read(
                "ANALYTICS_TABLE_NAME", f"complical-usage-analytics-{environment}", resource_name
            ),
        )


class Refused(Exception):
    """A request the endpoint does not answer with usage: its status, code and message."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.headers = status, code, dict(headers or {})


class UsageEndpoint:
    """Answers one proxy event; never raises for anything the request holds."""

    def __init__(
        self,
        settings: UsageApiSettings,
        dynamodb: DynamoDBClient,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._table = Table(dynamodb, settings.analytics_table)
        self._clock = clock

    def answer(self, event: object) -> dict[str, Any]:
        try:
            caller = caller_of(event)
        except Refused as refused:
            return _error(refused)
        try:
            summary = usage_summary(self._table, caller.email, caller.plan or None, self._clock())
        except (BotoCoreError, ClientError) as exc:
            _log.warning("usage not read: error=%s", type(exc).__name__)
            return _error(Refused(503, "UNAVAILABLE", "usage cannot be read right now; try again shortly"))
        return _response(200, summary.document())


@dataclass(frozen=True, slots=True)
class _Proxied:
    """What the endpoint reads of a proxy event, whichever API type sent it."""

    authorizer: object  # the authorizer's context
    method: object
    route: object  # the route template the request matched
    path_parameters: object
    query: tuple[object, ...]  # every place a query string can be


def caller_of(event: object) -> Caller:
    """The caller of a `GET /v1/usage` request, from the authorizer's context only; `Refused` if not one."""
    if not isinstance(event, dict):
        raise Refused(400, "BAD_REQUEST", "not an API Gateway proxy request")
    request = _http_v2(event) if event.get("version") == "2.0" else _rest(event)
    authorizer = request.authorizer
    if not isinstance(authorizer, dict) or not authorizer:
        raise Refused(401, "UNAUTHENTICATED", "no caller: the request did not pass the authorizer")
    caller = _caller(authorizer)
    if request.method != "GET":
        raise Refused(405, "METHOD_NOT_ALLOWED", "GET only", {"Allow": "GET"})
    if request.route != ROUTE or request.path_parameters:
        raise Refused(404, "NOT_FOUND", f"the usage endpoint is GET {ROUTE}")
    if any(request.query):
        raise Refused(
            400,
            "UNSUPPORTED_PARAMETER",
            f"GET {ROUTE} takes no parameters: it answers for the calling key's user",
        )
    return caller


def _rest(event: dict[Any, Any]) -> _Proxied:
    context = _mapping(event.get("requestContext"))
    return _Proxied(
        authorizer=context.get("authorizer"),
        method=event.get("httpMethod"),
        route=event.get("resource"),
        path_parameters=event.get("pathParameters"),
        query=(event.get("queryStringParameters"), event.get("multiValueQueryStringParameters")),
    )


def _http_v2(event: dict[Any, Any]) -> _Proxied:
    """An HTTP API's payload 2.0: a Lambda authorizer's context sits under `authorizer.lambda`, and
    the route key ("GET /v1/usage", "ANY /v1/usage") names the route; `$default` names none."""
    context = _mapping(event.get("requestContext"))
    route_key = event.get("routeKey")
    return _Proxied(
        authorizer=_mapping(context.get("authorizer")).get("lambda"),
        method=_mapping(context.get("http")).get("method"),
        route=route_key.partition(" ")[2] if isinstance(route_key, str) else None,
        path_parameters=event.get("pathParameters"),
        query=(event.get("queryStringParameters"), event.get("rawQueryString")),
    )


def _mapping(value: object) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _caller(authorizer: dict[Any, Any]) -> Caller:
    email, key_id, plan = (authorizer.get(name) for name in ("userEmail", "apiKeyId", "plan"))
    outcome = authorizer.get("outcome", Outcome.ALLOWED.value)
    forbidden = Refused(403, "FORBIDDEN", "the request's authorization names no usable caller")
    if not isinstance(email, str) or not isinstance(key_id, str) or not key_id or outcome != Outcome.ALLOWED:
        raise forbidden
    try:
        canonical = canonical_email(email)
    except ValueError:
        raise forbidden from None
    if canonical != email:  # the authorizer only ever puts canonical emails in its context
        raise forbidden
    return Caller(key_id=key_id, email=email, plan=plan if isinstance(plan, str) else "")


def _error(refused: Refused) -> dict[str, Any]:
    return _response(refused.status, {"error": refused.code, "message": str(refused)}, refused.headers)


def _response(status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"statusCode": status, "headers": _HEADERS | dict(headers or {}), "body": json.dumps(body)}


_endpoint: UsageEndpoint | None = None  # Lambda reuses the container: build the client once, not per call


def usage_endpoint() -> UsageEndpoint:
    global _endpoint  # noqa: PLW0603 - the one per-container instance Lambda's reuse model asks for
    if _endpoint is None:
        _endpoint = UsageEndpoint(UsageApiSettings.from_env(os.environ), dynamodb_client())
    return _endpoint


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return usage_endpoint().answer(event)


def reset() -> None:
    """Forget the container's endpoint (tests, or a driver switching environments)."""
    global _endpoint  # noqa: PLW0603
    _endpoint = None
