"""Build the authorizer's answer to API Gateway from a decision (pure).

REST API: an IAM policy with a context; HTTP API v2: the simple response (`EnableSimpleResponses`).
Context values must be strings, numbers or booleans, so absent values are left out.
"""

from __future__ import annotations

from typing import Any

from authorizer.decision import Decision
from authorizer.request import ApiFormat, Request

ANONYMOUS = "anonymous"


def build_response(decision: Decision, request: Request) -> dict[str, Any]:
    context = _context(decision)
    if request.api_format is ApiFormat.HTTP_V2:
        return {"isAuthorized": decision.allowed, "context": context}
    return {
        "principalId": decision.caller.key_id if decision.caller else ANONYMOUS,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    # an Allow names the exact method, never "*" (every method of the API): without
                    # an ARN the answer is a Deny, whatever the decision (the service refuses those too)
                    "Effect": "Allow" if decision.allowed and request.method_arn else "Deny",
                    "Resource": request.method_arn or "*",
                }
            ],
        },
        "context": context,
    }


def _context(decision: Decision) -> dict[str, str | int]:
    context: dict[str, str | int] = {"outcome": decision.outcome.value}
    if decision.caller is not None:
        context |= {
            "userEmail": decision.caller.email,
            "apiKeyId": decision.caller.key_id,
            "plan": decision.caller.plan,
        }
    if decision.reason is not None:
        context["reason"] = decision.reason.value
    if decision.retry_after_seconds is not None:
        context["retryAfter"] = decision.retry_after_seconds
    return context
