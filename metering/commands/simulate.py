"""`metering simulate`: drive the real Lambda authorizer in-process with API Gateway requests.

Each simulated user gets a real key through the key store (as `metering keys create` does); a few
hot users on the free plan hit their rate limits; a share of requests carries a missing, malformed
or unknown key. Keys created here are revoked at the end. Secrets passed with `--key` (made with
`metering keys create`) join the traffic as they are and are left untouched.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from authorizer.errors import KeyStoreUnavailable
from authorizer.keys import generate_key
from consumer import aws
from consumer.settings import ConsumerSettings
from metering.errors import usage_error

HOT_USERS = 3
BAD_KEY_SHARE = 0.05
ROUTES = [("GET", "/items/{id}", "/items/{n}"), ("POST", "/items", "/items"), ("GET", "/search", "/search")]


@dataclass
class Summary:
    outcomes: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        outcomes = ", ".join(f"{name} {count}" for name, count in sorted(self.outcomes.items()))
        return (
            f"simulated {sum(self.outcomes.values())} requests in {self.seconds:.1f} s ({outcomes}); "
            f"usage events sent {self.sent}, failed {self.failed}, dropped {self.dropped}"
        )


@dataclass(frozen=True)
class SimUser:
    email: str
    key_id: str
    secret: str


def simulate(
    settings: ConsumerSettings,
    *,
    rate: float,
    duration: float,
    users: int,
    keys: Sequence[str] = (),
    seed: int | None = None,
) -> Summary:
    from authorizer import handler, keystore

    os.environ.setdefault("ENABLE_KINESIS_ANALYTICS", "true")
    # The emulator can stall for a second under load; real Kinesis keeps the tight default.
    os.environ.setdefault("KINESIS_READ_TIMEOUT_SECONDS", "2")
    if users < 1 and not keys:
        raise usage_error("simulate: nothing to simulate: give --users above 0 or at least one --key")
    handler.reset()
    rng = random.Random(seed)
    dynamodb = aws.client("dynamodb", settings.region)
    created: list[SimUser] = []
    try:  # whatever was created is revoked, even if creating the rest or the run fails
        _create_users(dynamodb, settings.api_keys_table, users, keystore, created)
        return _run(handler, rng, [user.secret for user in created] + list(keys), rate, duration)
    finally:
        for user in created:
            keystore.revoke_key(dynamodb, settings.api_keys_table, user.key_id)


def _run(handler: Any, rng: random.Random, secrets: list[str], rate: float, duration: float) -> Summary:
    weights = [10.0 if i < HOT_USERS else 1.0 for i in range(len(secrets))]
    summary = Summary()
    started = time.monotonic()
    try:
        for n in range(int(rate * duration)):
            _pace(started, n / rate)
            request = _request(rng, secrets, weights)
            summary.outcomes[_outcome(handler, request)] += 1
    except KeyboardInterrupt:
        pass  # stopping early is normal: report what was sent
    finally:
        with contextlib.suppress(TimeoutError):  # the stats below say what is still pending
            handler.drain(timeout_s=30)
        stats = handler.producer_stats()
        summary.sent, summary.failed, summary.dropped = stats.sent, stats.failed, stats.dropped
        summary.seconds = time.monotonic() - started
    return summary


def _create_users(dynamodb: Any, table: str, count: int, keystore: Any, into: list[SimUser]) -> None:
    """Appends each user as soon as its key exists, so the caller can revoke a partial population."""
    for i in range(count):
        email = f"user{i:03d}@example.com"
        plan = "free" if i < HOT_USERS else "pro"
        key_id, secret = keystore.create_key(dynamodb, table, email, plan, time.time)
        into.append(SimUser(email, key_id, secret))


def _request(rng: random.Random, secrets: list[str], weights: list[float]) -> dict[str, Any]:
    method, resource, path = rng.choice(ROUTES)
    headers = {"user-agent": "metering-simulate/1.0"}
    roll = rng.random()
    if roll < BAD_KEY_SHARE / 3:
        pass  # no key at all
    elif roll < 2 * BAD_KEY_SHARE / 3:
        headers["x-api-key"] = "not-a-key"
    elif roll < BAD_KEY_SHARE:
        headers["x-api-key"] = generate_key()[1]  # well-formed, never stored: unknown
    else:
        headers["x-api-key"] = rng.choices(secrets, weights)[0]
    return {
        "type": "REQUEST",
        "methodArn": f"arn:aws:execute-api:us-east-1:123456789012:simapi/prod/{method}{resource}",
        "resource": resource,
        "path": path.replace("{n}", str(rng.randint(1, 999))),
        "httpMethod": method,
        "headers": headers,
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": f"198.51.100.{rng.randint(1, 40)}", "userAgent": headers["user-agent"]},
        },
    }


def _outcome(handler: Any, request: dict[str, Any]) -> str:
    try:
        response = handler.lambda_handler(request, None)
    except handler.Unauthorized:
        return "unauthorized"
    except KeyStoreUnavailable:
        return "key_store_unavailable"
    effect = response["policyDocument"]["Statement"][0]["Effect"]
    return "allowed" if effect == "Allow" else "rate_limited"


def _pace(started: float, offset: float) -> None:
    delay = started + offset - time.monotonic()
    if delay > 0:
        time.sleep(delay)
