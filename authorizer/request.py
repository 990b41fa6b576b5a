"""Read an API Gateway REQUEST authorizer event of any shape into a `Request` (pure, never raises).

Both the REST API format and the HTTP API v2 payload are accepted. Anything of the wrong type is treated
as absent, so a malformed event becomes a clean deny instead of an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from authorizer.keys import KEY_ID_PATTERN, PREFIX
from contract.events import MAX_REQUEST_FIELD_CHARS

MAX_KEY_CHARS = 256  # longer than any key of ours; bounds the work done on hostile input
MAX_FIELD_CHARS = MAX_REQUEST_FIELD_CHARS  # keeps every event far below the consumer's 16 KiB record limit
MAX_ARN_CHARS = 2048
MAX_EPOCH_MILLIS = 10**13  # the year 2286, as the access-log decoder's bound
_MAX_SCANNED_CHARS = 16 * 1024
# a key pasted into a path or a user agent must not reach the events either
_KEY_LIKE = re.compile(rf"{PREFIX}{KEY_ID_PATTERN}_[A-Za-z0-9_-]{{4,}}", re.ASCII)
REDACTED = "[REDACTED]"
# The one method a REST Allow may name: every part concrete. `*` and `?` are IAM policy wildcards,
# refused anywhere: an Allow must never reach another account, API, stage, verb or path. The stage
# is a REST stage name or `$default`, the stage every HTTP API has (payload format 1.0 sends a
# methodArn too).
_METHOD_ARN = re.compile(
    r"arn:aws(?:-cn|-us-gov)?:execute-api:[a-z]{2}(?:-[a-z]+)+-\d:\d{12}:[a-z0-9]{1,64}/"
    r"(?:\$default|[A-Za-z0-9_-]{1,128})/"
    r"(?:GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)(?:/[^*?\s]*)?",
    re.ASCII,
)


class ApiFormat(StrEnum):
    REST = "REST"
    HTTP_V2 = "HTTP_V2"


class KeyProblem(StrEnum):
    MISSING_KEY = "MISSING_KEY"
    MALFORMED_KEY = "MALFORMED_KEY"


@dataclass(frozen=True, slots=True)
class Request:
    api_format: ApiFormat
    presented_key: str | None
    key_problem: KeyProblem | None
    method_arn: str | None
    http_method: str | None
    resource_path: str | None
    path: str | None
    source_ip: str | None
    user_agent: str | None
    request_id: str | None
    received_ms: int | None = None  # when API Gateway received it: `requestTimeEpoch` (v2: `timeEpoch`)

    def __repr__(self) -> str:  # never show the presented key
        return f"Request({self.api_format}, {self.http_method} {self.path}, id={self.request_id})"


def parse_request(event: object) -> Request:
    data: dict[str, Any] = event if isinstance(event, dict) else {}
    context = _mapping(data.get("requestContext"))
    headers = _headers(data)
    presented, problem = _presented_key(headers)
    if data.get("version") == "2.0":
        return _http_v2(data, context, headers, presented, problem)
    identity = _mapping(context.get("identity"))
    return Request(
        api_format=ApiFormat.REST,
        presented_key=presented,
        key_problem=problem,
        method_arn=_method_arn(data.get("methodArn")),
        http_method=_text(data.get("httpMethod")) or _text(context.get("httpMethod")),
        resource_path=_text(data.get("resource")) or _text(context.get("resourcePath")),
        path=_text(data.get("path")),
        source_ip=_text(identity.get("sourceIp")),
        user_agent=_text(identity.get("userAgent")) or _text(headers.get("user-agent")),
        request_id=_text(context.get("requestId")),
        received_ms=_epoch_millis(context.get("requestTimeEpoch")),
    )


def _http_v2(
    data: dict[str, Any],
    context: dict[str, Any],
    headers: dict[str, Any],
    presented: str | None,
    problem: KeyProblem | None,
) -> Request:
    http = _mapping(context.get("http"))
    route_key = _text(data.get("routeKey")) or _text(context.get("routeKey"))
    return Request(
        api_format=ApiFormat.HTTP_V2,
        presented_key=presented,
        key_problem=problem,
        method_arn=_arn(data.get("routeArn")),
        http_method=_text(http.get("method")),
        # routeKey reads "GET /items/{id}"; the template is the part after the method
        resource_path=route_key.partition(" ")[2] or route_key if route_key else None,
        path=_text(data.get("rawPath")) or _text(http.get("path")),
        source_ip=_text(http.get("sourceIp")),
        user_agent=_text(http.get("userAgent")) or _text(headers.get("user-agent")),
        request_id=_text(context.get("requestId")),
        received_ms=_epoch_millis(context.get("timeEpoch")),
    )


def _presented_key(headers: dict[str, Any]) -> tuple[str | None, KeyProblem | None]:
    """The key of `x-api-key`, else of `Authorization: Bearer`: a blank or unusable `x-api-key`
    (some clients send one empty) must not hide a good Bearer token. With no key in either, a
    malformed value is reported rather than a missing one."""
    api_key = _validated(headers["x-api-key"]) if "x-api-key" in headers else (None, KeyProblem.MISSING_KEY)
    if api_key[0] is not None:
        return api_key
    bearer = _bearer(headers.get("authorization"))
    if bearer[0] is None and api_key[1] is KeyProblem.MALFORMED_KEY:
        return api_key
    return bearer


def _bearer(authorization: object) -> tuple[str | None, KeyProblem | None]:
    if authorization is None:
        return None, KeyProblem.MISSING_KEY
    if not isinstance(authorization, str):
        return None, KeyProblem.MALFORMED_KEY
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None, KeyProblem.MISSING_KEY
    return _validated(token)


def _validated(value: object) -> tuple[str | None, KeyProblem | None]:
    if not isinstance(value, str) or len(value) > MAX_KEY_CHARS:
        return None, KeyProblem.MALFORMED_KEY
    value = value.strip()
    if not value:
        return None, KeyProblem.MISSING_KEY
    if not value.isascii() or not value.isprintable():
        return None, KeyProblem.MALFORMED_KEY
    return value, None


def _headers(data: dict[str, Any]) -> dict[str, Any]:
    """Lower-cased single-value headers; REST passes names as the client sent them."""
    headers: dict[str, Any] = {}
    multi = _mapping(data.get("multiValueHeaders"))
    for name, values in multi.items():
        if isinstance(name, str) and isinstance(values, list) and values:
            headers[name.lower()] = values[-1]
    for name, value in _mapping(data.get("headers")).items():
        if isinstance(name, str):
            headers[name.lower()] = value
    return headers


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _arn(value: object) -> str | None:
    """The method or route ARN exactly as sent: the policy must name it, so it is never cut or redacted.

    It goes into the policy API Gateway evaluates, never into events or logs.
    """
    if isinstance(value, str) and 0 < len(value) <= MAX_ARN_CHARS and value.isascii() and value.isprintable():
        return value
    return None


def _method_arn(value: object) -> str | None:
    """A REST method ARN the policy may name, or None (the request is then refused as malformed)."""
    arn = _arn(value)
    return arn if arn is not None and _METHOD_ARN.fullmatch(arn) else None


def _epoch_millis(value: object) -> int | None:
    """A positive whole number of epoch milliseconds (API Gateway sends one), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < MAX_EPOCH_MILLIS:
        return value
    return None


def _text(value: object) -> str | None:
    """A descriptive field, capped, UTF-8 encodable, with anything key-like redacted."""
    if not isinstance(value, str) or not value:
        return None
    # redact before truncating, so a key cut in half at the cap is not left half visible
    value = _KEY_LIKE.sub(REDACTED, value[:_MAX_SCANNED_CHARS])[:MAX_FIELD_CHARS]
    # lone surrogates (legal in JSON escapes) cannot be encoded to UTF-8 later: replace them now
    return value.encode("utf-8", "replace").decode("utf-8")
