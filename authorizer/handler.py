"""The Lambda entry point: one `Authorizer` per container, built lazily from the environment.

REST API answers follow API Gateway's protocol: an Allow policy; a Deny policy when rate limited
(the ACCESS_DENIED gateway response turns it into 429); `Unauthorized` raised for key failures (401);
any other error raised for a key-store outage (500). HTTP API v2 gets the simple response for all.
Each invocation prints its metrics as CloudWatch EMF on stdout (`authorizer.metrics.EmfMetrics`).
"""

from __future__ import annotations

import os
from typing import Any

from authorizer.clients import dynamodb_client
from authorizer.decision import Outcome
from authorizer.errors import KeyStoreUnavailable, Unauthorized
from authorizer.metrics import EmfMetrics
from authorizer.producer import ProducerStats
from authorizer.request import ApiFormat, parse_request
from authorizer.service import Authorizer
from authorizer.settings import AuthorizerSettings

__all__ = ["Unauthorized", "drain", "get_authorizer", "lambda_handler", "producer_stats", "reset"]

_instance: Authorizer | None = None  # Lambda reuses the container: build clients once, not per call


def get_authorizer() -> Authorizer:
    global _instance  # noqa: PLW0603 - the one per-container instance Lambda's reuse model asks for
    if _instance is None:
        settings = AuthorizerSettings.from_env(os.environ)
        authorizer = Authorizer(
            settings, dynamodb=dynamodb_client(), metrics=EmfMetrics(settings.environment)
        )
        authorizer.check_configuration()  # a misconfiguration stops the cold start, loudly
        _instance = authorizer
    return _instance


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    request = parse_request(event)
    decision, response = get_authorizer().authorize(request)
    if request.api_format is ApiFormat.HTTP_V2:
        return response
    if decision.outcome is Outcome.AUTH_FAILED:
        raise Unauthorized()
    if decision.outcome is Outcome.UNAVAILABLE:
        raise KeyStoreUnavailable(f"cannot authorize: {decision.reason}")
    return response


def drain(timeout_s: float) -> None:
    """Wait until every emitted event was sent or failed; `TimeoutError` if some are still pending."""
    if _instance is not None and not _instance.producer.flush(timeout_s):
        raise TimeoutError(f"usage events still pending after {timeout_s} s")


def producer_stats() -> ProducerStats:
    """Counters of sent / failed / dropped / pending events of this container's producer."""
    return get_authorizer().producer_stats()


def reset(timeout_s: float = 5.0) -> None:
    """Stop and forget the container's authorizer (tests, or a driver switching environments)."""
    global _instance  # noqa: PLW0603
    if _instance is not None:
        _instance.producer.close(timeout_s)
    _instance = None
