"""The request path's worst case against a DynamoDB that never answers (a black-holed endpoint)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from authorizer.clients import dynamodb_client
from authorizer.keys import generate_key
from authorizer.service import WORST_CASE_DYNAMODB_SECONDS, Authorizer
from authorizer.settings import AuthorizerSettings
from tests.authorizer.conftest import KEYS_TABLE, LIMITS_TABLE, Aws, count_calls, new_key, rest_event

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = AuthorizerSettings(api_keys_table=KEYS_TABLE, rate_limit_table=LIMITS_TABLE)


class SplitDynamoDB:
    """Reads keys through one client and sends every write to another."""

    def __init__(self, reads: Any, writes: Any) -> None:
        self._reads = reads
        self._writes = writes

    def get_item(self, **kwargs: Any) -> Any:
        return self._reads.get_item(**kwargs)

    def update_item(self, **kwargs: Any) -> Any:
        return self._writes.update_item(**kwargs)


def timed_context(authorizer: Authorizer, headers: dict[str, Any]) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    context = authorizer.handle(rest_event(headers))["context"]
    return context, time.perf_counter() - started


def test_the_bound_is_well_under_the_lambda_timeout() -> None:
    """The blocking DynamoDB calls of one request fit in half of the 5 s Lambda timeout."""
    assert WORST_CASE_DYNAMODB_SECONDS <= 2.5
    assert "Timeout: 5\n" in (ROOT / "ecs" / "api-gateway.yaml").read_text()


def test_black_holed_key_store_costs_two_quick_attempts(black_hole: str) -> None:
    """A key read that never answers is tried twice, at once, then denied within the bound."""
    client = dynamodb_client(endpoint_url=black_hole)
    attempts = count_calls(client, "GetItem", stage="before-send")
    context, elapsed = timed_context(Authorizer(SETTINGS, dynamodb=client), {"x-api-key": generate_key()[1]})
    assert context == {"outcome": "UNAVAILABLE", "reason": "KEY_STORE_UNAVAILABLE"}
    assert attempts[0] == 2
    assert elapsed < WORST_CASE_DYNAMODB_SECONDS


def test_black_holed_rate_limit_fails_open_and_skips_last_used(aws: Aws, black_hole: str) -> None:
    """A rate-limit update that never answers is tried once and the request allowed; the advisory
    last-used write is then skipped, as the request is already slow."""
    _, secret = new_key(aws)
    writes = dynamodb_client(endpoint_url=black_hole)
    attempts = count_calls(writes, "UpdateItem", stage="before-send")
    authorizer = Authorizer(SETTINGS, dynamodb=SplitDynamoDB(aws.dynamodb, writes))
    context, elapsed = timed_context(authorizer, {"x-api-key": secret})
    assert context["outcome"] == "ALLOWED"
    assert attempts[0] == 1  # the counter only, no last-used write
    assert elapsed < WORST_CASE_DYNAMODB_SECONDS
