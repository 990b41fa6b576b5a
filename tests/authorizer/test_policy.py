"""Unit tests of building API Gateway answers."""

from __future__ import annotations

from authorizer.decision import Caller, Decision, Outcome, Reason
from authorizer.policy import build_response
from authorizer.request import parse_request
from tests.authorizer.conftest import METHOD_ARN, http_v2_event, rest_event

CALLER = Caller(key_id="abcdefghijkl", email="ada@example.com", plan="pro")


def test_allow_policy_with_caller_context() -> None:
    """An allowed REST request gets an Allow on its method ARN and the caller in the context."""
    response = build_response(Decision(Outcome.ALLOWED, CALLER), parse_request(rest_event()))
    assert response == {
        "principalId": "abcdefghijkl",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": METHOD_ARN}],
        },
        "context": {
            "outcome": "ALLOWED",
            "userEmail": "ada@example.com",
            "apiKeyId": "abcdefghijkl",
            "plan": "pro",
        },
    }


def test_rate_limited_deny_carries_reason_and_retry_after() -> None:
    """A rate-limited request gets a Deny whose context says why and when to retry."""
    decision = Decision(Outcome.RATE_LIMITED, CALLER, Reason.RATE_LIMIT_MINUTE, retry_after_seconds=17)
    response = build_response(decision, parse_request(rest_event()))
    assert response["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert response["context"]["reason"] == "RATE_LIMIT_MINUTE"
    assert response["context"]["retryAfter"] == 17


def test_anonymous_deny_has_only_scalar_context() -> None:
    """A deny without a caller is anonymous, and its context holds no nulls (API Gateway rejects them)."""
    response = build_response(Decision(Outcome.AUTH_FAILED, reason=Reason.MISSING_KEY), parse_request(None))
    assert response["principalId"] == "anonymous"
    assert response["policyDocument"]["Statement"][0]["Resource"] == "*"
    assert response["context"] == {"outcome": "AUTH_FAILED", "reason": "MISSING_KEY"}


def test_http_v2_simple_response() -> None:
    """HTTP API v2 requests get the simple response format."""
    allowed = build_response(Decision(Outcome.ALLOWED, CALLER), parse_request(http_v2_event()))
    denied = build_response(
        Decision(Outcome.AUTH_FAILED, reason=Reason.UNKNOWN_KEY), parse_request(http_v2_event())
    )
    assert allowed["isAuthorized"] is True and allowed["context"]["apiKeyId"] == "abcdefghijkl"
    assert denied == {"isAuthorized": False, "context": {"outcome": "AUTH_FAILED", "reason": "UNKNOWN_KEY"}}


def test_allow_never_names_every_method() -> None:
    """Without a method ARN even an allowed decision answers Deny: an Allow on "*" would open the API."""
    response = build_response(Decision(Outcome.ALLOWED, CALLER), parse_request(rest_event(methodArn=None)))
    assert response["policyDocument"]["Statement"][0] == {
        "Action": "execute-api:Invoke",
        "Effect": "Deny",
        "Resource": "*",
    }
