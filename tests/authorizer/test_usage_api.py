"""`GET /v1/usage` (authorizer/usage_api.py): the caller's own numbers, and nothing for hostile requests.

Usage goes in through the real writer (`DynamoDBSink`) in moto; the expected numbers are computed
again from the events. Every other request shape must be refused without a read, and nothing it
carries may reach the answer.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from authorizer import usage_api
from authorizer.decision import Caller, Decision, Outcome
from authorizer.policy import build_response
from authorizer.request import parse_request
from authorizer.usage_api import ROUTE, WORST_CASE_DYNAMODB_SECONDS, UsageApiSettings, UsageEndpoint
from contract.environment import ConfigError
from contract.table import analytics_table_spec
from tests.deploy.aws_calls import iam_actions
from tests.functional.test_billing_reads import ReadOnly, counts, ev, owner, utc, write
from tests.samples import sample

ARRIVAL = datetime(2026, 11, 30, 12, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 12, 5, tzinfo=UTC)
TABLE = "complical-usage-analytics-test"
ADA, BOB = "ada@example.com", "bob@example.com"
FREE_ALLOWANCE = 10_000


def _events() -> list[tuple[str, list[dict[str, Any]]]]:
    """Ada (pro) over November and the last evening of October; Bob (free) just over his allowance."""
    ada = [
        ev("API_CALL", datetime(2026, 10, 31, 20, tzinfo=UTC), ADA, "pro"),  # October's
        *(ev("API_CALL", datetime(2026, 11, day, 9, tzinfo=UTC), ADA, "pro") for day in (1, 1, 7, 29, 30)),
        ev("API_AUTH_FAILED", datetime(2026, 11, 30, 8, tzinfo=UTC), ADA),
        ev("API_RATE_LIMITED", datetime(2026, 11, 30, 11, 59, 59, 999000, tzinfo=UTC), ADA, "pro"),
    ]
    bob = [
        ev("API_CALL", datetime(2026, 11, 3, 10, tzinfo=UTC), BOB, "free") for _ in range(FREE_ALLOWANCE + 5)
    ]
    return [("shardId-000000000000", ada), ("shardId-000000000001", bob)]


@pytest.fixture(scope="module")
def stored() -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    """The usage written once for the module (moto), and the events it was written from."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        with mock_aws():
            client = boto3.client("dynamodb")
            client.create_table(**analytics_table_spec(TABLE))
            batches = _events()
            write(client, TABLE, batches, ARRIVAL)
            yield client, [document for _, events in batches for document in events]


@pytest.fixture
def reader(stored: tuple[Any, list[dict[str, Any]]]) -> Iterator[ReadOnly]:
    read_only = ReadOnly(stored[0])
    yield read_only
    assert set(read_only.calls) <= {"get_item", "query"}


def endpoint(client: Any) -> UsageEndpoint:
    return UsageEndpoint(UsageApiSettings(analytics_table=TABLE), client, clock=lambda: NOW)


def request(email: str | None = ADA, plan: str | None = "pro", **fields: Any) -> dict[str, Any]:
    """A REST proxy event of GET /v1/usage as API Gateway sends it after our authorizer allowed it."""
    authorizer: dict[str, Any] = {"principalId": "k1", "outcome": "ALLOWED", "apiKeyId": "abcdefghijkl"}
    if email is not None:
        authorizer["userEmail"] = email
    if plan is not None:
        authorizer["plan"] = plan
    return {
        "resource": ROUTE,
        "path": ROUTE,
        "httpMethod": "GET",
        "headers": {"x-api-key": "[REDACTED]"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {"httpMethod": "GET", "resourcePath": ROUTE, "authorizer": authorizer},
        "body": None,
        "isBase64Encoded": False,
    } | fields


def body(response: dict[str, Any]) -> dict[str, Any]:
    assert response["headers"]["Content-Type"] == "application/json"
    assert response["headers"]["Cache-Control"] == "no-store"
    document: dict[str, Any] = json.loads(response["body"])
    return document


def expected(events: list[dict[str, Any]], email: str) -> dict[str, Any]:
    mine = [d for d in events if owner(d) == email and f"{utc(d):%Y-%m}" == "2026-11"]
    days = [f"2026-11-{day:02d}" for day in range(1, 31)]
    per_day = [{"date": day, **counts([d for d in mine if f"{utc(d):%Y-%m-%d}" == day])} for day in days]
    return {"month": counts(mine), "days": per_day, "today": per_day[-1]}


# -- the caller's own numbers ---------------------------------------------------------------------------


def test_the_caller_gets_its_own_today_month_days_and_allowance(
    stored: tuple[Any, list[dict[str, Any]]], reader: ReadOnly
) -> None:
    """Today's and this month's counters, every day of the month so far, the plan and what remains."""
    answer = endpoint(reader).answer(request())
    assert answer["statusCode"] == 200
    document, truth = body(answer), expected(stored[1], ADA)
    assert document["user"] == ADA and document["asOf"] == "2026-11-30T12:05:00.000Z"
    assert (
        document["today"]
        == truth["today"]
        == {"date": "2026-11-30", "calls": 1, "authFailures": 1, "rateLimited": 1}
    )
    assert document["days"] == truth["days"]
    assert document["month"] == {
        "month": "2026-11",
        **truth["month"],
        "allowance": 1_000_000,
        "remaining": 1_000_000 - truth["month"]["calls"],
        "overage": 0,
    }
    assert truth["month"]["calls"] == 5  # October's call is not November's
    assert document["plan"] == {"name": "pro", "monthlyCalls": 1_000_000, "perSecond": 50, "perMinute": 2000}
    assert sorted(reader.calls) == ["get_item", "query"]  # one key read, one key query


def test_a_caller_over_its_allowance_has_nothing_remaining(
    stored: tuple[Any, list[dict[str, Any]]], reader: ReadOnly
) -> None:
    """Free plan, 10,005 calls: remaining 0, overage 5; a day without calls is listed with zeros."""
    document = body(endpoint(reader).answer(request(BOB, "free")))
    assert document["month"]["calls"] == FREE_ALLOWANCE + 5
    assert (document["month"]["remaining"], document["month"]["overage"]) == (0, 5)
    assert document["today"] == {"date": "2026-11-30", "calls": 0, "authFailures": 0, "rateLimited": 0}
    assert document["days"] == expected(stored[1], BOB)["days"]


def test_a_caller_without_usage_or_with_an_unknown_plan(reader: ReadOnly) -> None:
    """A user who never called gets zeros; a plan the contract does not know has no allowance."""
    document = body(endpoint(reader).answer(request("new@example.com", "platinum")))
    assert document["month"] == {
        "month": "2026-11",
        "calls": 0,
        "authFailures": 0,
        "rateLimited": 0,
        "allowance": None,
        "remaining": None,
        "overage": None,
    }
    assert len(document["days"]) == 30 and document["plan"]["name"] == "platinum"
    assert body(endpoint(reader).answer(request("new@example.com", None)))["plan"]["monthlyCalls"] is None


# -- hostile requests ---------------------------------------------------------------------------------


def _refused(reader: ReadOnly, event: Any, status: int, code: str) -> dict[str, Any]:
    answer = endpoint(reader).answer(event)
    document = body(answer)
    assert (answer["statusCode"], document["error"]) == (status, code), document
    assert BOB not in answer["body"] and "@" not in answer["body"]  # nothing echoed, no one's usage
    assert reader.calls == []  # refused before any read
    return answer


@pytest.mark.parametrize("event", [None, [], "GET /v1/usage", 42, b"{}", 1.5, True])
def test_what_is_not_a_proxy_event_is_a_bad_request(reader: ReadOnly, event: Any) -> None:
    _refused(reader, event, 400, "BAD_REQUEST")


@pytest.mark.parametrize(
    "context",
    [
        None,
        {},
        "ada@example.com",
        {"authorizer": None},
        {"authorizer": {}},
        {"authorizer": "userEmail=ada@example.com"},
        {"authorizer": ["ada@example.com"]},
    ],
)
def test_no_authorizer_context_is_401(reader: ReadOnly, context: Any) -> None:
    """Without the authorizer's context there is no caller: 401 (as if the authorizer had not run)."""
    event = request()
    if context is None:
        del event["requestContext"]
    else:
        event["requestContext"] = context
    _refused(reader, event, 401, "UNAUTHENTICATED")


@pytest.mark.parametrize(
    "authorizer",
    [
        {"apiKeyId": "abcdefghijkl", "plan": "pro"},  # no user
        {"userEmail": "", "apiKeyId": "abcdefghijkl"},
        {"userEmail": ["bob@example.com"], "apiKeyId": "abcdefghijkl"},
        {"userEmail": 7, "apiKeyId": "abcdefghijkl"},
        {"userEmail": "Bob@Example.com", "apiKeyId": "abcdefghijkl"},  # not how the authorizer writes it
        {"userEmail": " bob@example.com", "apiKeyId": "abcdefghijkl"},
        {"userEmail": "bob@example.com,ada@example.com", "apiKeyId": "abcdefghijkl"},
        {"userEmail": "*", "apiKeyId": "abcdefghijkl"},
        {"userEmail": "b" * 300 + "@example.com", "apiKeyId": "abcdefghijkl"},
        {"userEmail": "bob@example.com"},  # no key
        {"userEmail": "bob@example.com", "apiKeyId": ""},
        {"userEmail": "bob@example.com", "apiKeyId": 12},
        {"userEmail": "bob@example.com", "apiKeyId": "abcdefghijkl", "outcome": "RATE_LIMITED"},
    ],
)
def test_a_context_without_a_usable_caller_is_403(reader: ReadOnly, authorizer: dict[str, Any]) -> None:
    event = request()
    event["requestContext"]["authorizer"] = authorizer
    _refused(reader, event, 403, "FORBIDDEN")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "get", None, 1])
def test_only_get_is_answered(reader: ReadOnly, method: Any) -> None:
    answer = _refused(reader, request(httpMethod=method), 405, "METHOD_NOT_ALLOWED")
    assert answer["headers"]["Allow"] == "GET"


@pytest.mark.parametrize(
    "fields",
    [
        {
            "resource": "/v1/usage/{user}",
            "path": "/v1/usage/bob@example.com",
            "pathParameters": {"user": BOB},
        },
        {"resource": "/v1/usage/{proxy+}", "path": "/v1/usage/bob", "pathParameters": {"proxy": "bob"}},
        {"pathParameters": {"email": BOB}},
        {"resource": "/v1/keys"},
        {"resource": None},
    ],
)
def test_other_paths_and_path_parameters_are_404(reader: ReadOnly, fields: dict[str, Any]) -> None:
    _refused(reader, request(**fields), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "fields",
    [
        {"queryStringParameters": {"user": BOB}},
        {"queryStringParameters": {"email": BOB}, "multiValueQueryStringParameters": {"email": [BOB]}},
        {"multiValueQueryStringParameters": {"userEmail": [ADA, BOB]}},
        {"queryStringParameters": {"apiKeyId": "zzzzzzzzzzzz"}},
        {"queryStringParameters": {"month": "2026-10"}},
        {"queryStringParameters": {"x": "@" * 1_000_000}},
        {"queryStringParameters": {f"k{n}": BOB for n in range(10_000)}},
        {"queryStringParameters": "user=bob@example.com"},
    ],
)
def test_query_parameters_are_refused_never_read(reader: ReadOnly, fields: dict[str, Any]) -> None:
    """The endpoint takes no parameters: none can name another user (or month), however big."""
    _refused(reader, request(**fields), 400, "UNSUPPORTED_PARAMETER")


def test_what_the_request_says_elsewhere_never_changes_the_user(reader: ReadOnly) -> None:
    """A body, headers or stage variables naming Bob: the answer is Ada's, from the context alone."""
    event = request(
        body=json.dumps({"userEmail": BOB}),
        headers={"x-user-email": BOB, "x-api-key": "[REDACTED]"},
        stageVariables={"userEmail": BOB},
    )
    event["requestContext"]["identity"] = {"user": BOB}
    document = body(endpoint(reader).answer(event))
    assert document["user"] == ADA and BOB not in json.dumps(document)


# -- HTTP API events (payload format 2.0), from aws-lambda-powertools' samples -----------------------


def allowed_context(email: str = ADA, plan: str = "pro") -> dict[str, Any]:
    """The context our authorizer answers an HTTP API's 2.0 authorizer event (powertools' sample) with."""
    answer = build_response(
        Decision(Outcome.ALLOWED, Caller("abcdefghijkl", email, plan)),
        parse_request(sample("apiGatewayAuthorizerV2Event")),
    )
    assert answer["isAuthorized"] is True
    context: dict[str, Any] = answer["context"]
    return context


def http_request(**fields: Any) -> dict[str, Any]:
    """powertools' v2 proxy event behind a Lambda authorizer, as a GET /v1/usage our authorizer allowed:
    its route, path and authorizer context set, its query and path parameters gone."""
    event = sample("apiGatewayProxyV2LambdaAuthorizerEvent")
    del event["queryStringParameters"], event["pathParameters"]
    event |= {"routeKey": f"GET {ROUTE}", "rawPath": ROUTE, "rawQueryString": ""}
    event["requestContext"]["routeKey"] = f"GET {ROUTE}"
    event["requestContext"]["http"]["path"] = ROUTE
    event["requestContext"]["authorizer"]["lambda"] = allowed_context()
    return event | fields


def test_an_http_api_event_gets_the_same_answer_as_a_rest_one(reader: ReadOnly) -> None:
    """An HTTP API v2 proxy event, the authorizer's context under `authorizer.lambda`: the caller's usage."""
    rest = endpoint(reader).answer(request())
    answer = endpoint(reader).answer(http_request())
    assert answer["statusCode"] == 200 and body(answer) == body(rest) and body(answer)["user"] == ADA
    any_method = http_request(routeKey=f"ANY {ROUTE}")
    assert endpoint(reader).answer(any_method)["statusCode"] == 200


def _http_variant(change: str) -> dict[str, Any]:
    event = http_request()
    context = event["requestContext"]
    if change == "sample-as-is":
        return sample("apiGatewayProxyV2LambdaAuthorizerEvent")  # its context names no caller
    if change == "jwt-authorizer":
        context["authorizer"] = {"jwt": {"claims": {"email": ADA}, "scopes": []}}
    elif change == "context-beside-lambda":
        context["authorizer"] = allowed_context()
    elif change == "rate-limited":
        context["authorizer"]["lambda"]["outcome"] = "RATE_LIMITED"
    elif change == "post":
        context["http"]["method"] = "POST"
    elif change == "default-route":
        event["routeKey"] = "$default"
    elif change == "path-parameters":
        event |= {"routeKey": f"GET {ROUTE}/{{user}}", "pathParameters": {"user": BOB}}
    elif change == "raw-query":
        event["rawQueryString"] = f"user={BOB}"
    elif change == "query-parameters":
        event["queryStringParameters"] = {"user": BOB}
    return event


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ("sample-as-is", 403, "FORBIDDEN"),
        ("jwt-authorizer", 401, "UNAUTHENTICATED"),
        ("context-beside-lambda", 401, "UNAUTHENTICATED"),
        ("rate-limited", 403, "FORBIDDEN"),
        ("post", 405, "METHOD_NOT_ALLOWED"),
        ("default-route", 404, "NOT_FOUND"),
        ("path-parameters", 404, "NOT_FOUND"),
        ("raw-query", 400, "UNSUPPORTED_PARAMETER"),
        ("query-parameters", 400, "UNSUPPORTED_PARAMETER"),
    ],
)
def test_http_api_events_are_refused_as_rest_ones_are(
    reader: ReadOnly, change: str, status: int, code: str
) -> None:
    """The same refusals for an HTTP API's events: no Lambda authorizer context, another method,
    route or any parameter; nothing read."""
    _refused(reader, _http_variant(change), status, code)


def test_an_unreadable_table_is_503(reader: ReadOnly) -> None:
    """DynamoDB failing (here: no such table) is a 503 with a JSON body, not an exception."""
    failing = UsageEndpoint(UsageApiSettings(analytics_table="no-such-table"), reader, clock=lambda: NOW)
    answer = failing.answer(request())
    assert answer["statusCode"] == 503 and body(answer)["error"] == "UNAVAILABLE"

    class Throttled:
        def get_item(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Code": "ThrottlingException"}}, "GetItem")

    answer = UsageEndpoint(UsageApiSettings(), Throttled(), clock=lambda: NOW).answer(request())
    assert answer["statusCode"] == 503


# -- the Lambda around it ---------------------------------------------------------------------------


def test_lambda_handler_builds_one_endpoint_per_container(
    stored: tuple[Any, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settings from the environment, the client built once; the answer is the caller's."""
    monkeypatch.setenv("ENVIRONMENT", "test")
    usage_api.reset()
    try:
        first = usage_api.lambda_handler(request(), None)
        assert first["statusCode"] == 200 and body(first)["user"] == ADA
        built = usage_api.usage_endpoint()
        assert usage_api.lambda_handler(request(BOB, "free"), None)["statusCode"] == 200
        assert usage_api.usage_endpoint() is built
    finally:
        usage_api.reset()


def test_settings_name_the_table_like_the_consumer() -> None:
    """ANALYTICS_TABLE_NAME, by default complical-usage-analytics-{ENVIRONMENT}; bad values stop start-up."""
    assert (
        UsageApiSettings.from_env({"ENVIRONMENT": "prod"}).analytics_table == "complical-usage-analytics-prod"
    )
    assert UsageApiSettings.from_env({"ANALYTICS_TABLE_NAME": "t1"}).analytics_table == "t1"
    with pytest.raises(ConfigError, match="ANALYTICS_TABLE_NAME"):
        UsageApiSettings.from_env({"ANALYTICS_TABLE_NAME": "no spaces allowed"})


def test_its_role_needs_only_get_item_and_query() -> None:
    """Derived from the code (as tests/deploy does for the authorizer): a read-only role suffices."""
    calls = iam_actions(
        ["authorizer", "contract", "reads"], ["authorizer.usage_api:lambda_handler"], ["dynamodb", "kinesis"]
    )
    assert calls == {"dynamodb:GetItem", "dynamodb:Query"}
    assert WORST_CASE_DYNAMODB_SECONDS <= 1.5


def test_it_imports_only_the_contract_the_authorizer_boto_and_the_standard_library() -> None:
    tree = ast.parse(Path(usage_api.__file__).read_text())
    modules = {
        (node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    } | {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    allowed = {"__future__", "json", "logging", "os", "collections", "dataclasses", "datetime", "typing"}
    assert modules <= allowed | {
        "authorizer",
        "contract",
        "reads",
        "botocore",
        "boto3",
        "mypy_boto3_dynamodb",
    }


def test_a_whole_day_later_today_moves(stored: tuple[Any, list[dict[str, Any]]], reader: ReadOnly) -> None:
    """On December 1st the month is December's: Ada has no calls yet, and one day is listed."""
    later = UsageEndpoint(
        UsageApiSettings(analytics_table=TABLE), reader, clock=lambda: NOW + timedelta(days=1)
    )
    document = body(later.answer(request()))
    assert document["month"]["month"] == "2026-12" and document["month"]["calls"] == 0
    assert [day["date"] for day in document["days"]] == ["2026-12-01"]
