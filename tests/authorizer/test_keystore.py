"""Functional tests of the keys table against moto."""

from __future__ import annotations

import pytest

from authorizer.errors import KeyNotFound, KeyStoreUnavailable
from authorizer.keys import hash_key
from authorizer.keystore import create_key, get_key, list_keys, revoke_key
from consumer.testing import FakeClock
from contract.plans import PLANS, get_plan
from tests.authorizer.conftest import KEYS_TABLE, Aws, new_key


def test_create_stores_only_the_hash(aws: Aws) -> None:
    """A created key is stored by id with its hash, owner, plan limits and creation time; never the secret."""
    key_id, secret = create_key(aws.dynamodb, KEYS_TABLE, "ada@example.com", "pro", FakeClock(1_795_000_000))
    item = aws.dynamodb.get_item(TableName=KEYS_TABLE, Key={"key_id": {"S": key_id}})["Item"]
    assert item["key_hash"]["S"] == hash_key(secret)
    assert secret not in str(item)
    record = get_key(aws.dynamodb, KEYS_TABLE, key_id)
    assert record is not None and record.active
    assert (record.email, record.plan, record.per_second, record.per_minute) == (
        "ada@example.com",
        "pro",
        50,
        2000,
    )
    assert record.created_at == "2026-11-18T11:06:40.000Z" and record.last_used_at is None


def test_list_and_revoke(aws: Aws) -> None:
    """Listed keys show their status; a revoked key stays listed as revoked."""
    first, _ = new_key(aws, "a@example.com")
    second, _ = new_key(aws, "b@example.com", "enterprise")
    revoke_key(aws.dynamodb, KEYS_TABLE, first)
    statuses = {record.key_id: record.status for record in list_keys(aws.dynamodb, KEYS_TABLE)}
    assert statuses == {first: "revoked", second: "active"}


def test_revoking_an_unknown_key_raises(aws: Aws) -> None:
    """Revoking an id that does not exist raises KeyNotFound and creates nothing."""
    with pytest.raises(KeyNotFound):
        revoke_key(aws.dynamodb, KEYS_TABLE, "nosuchkey123")
    assert list_keys(aws.dynamodb, KEYS_TABLE) == []


def test_bad_plan_and_email_are_refused(aws: Aws) -> None:
    """Unknown plans and non-emails are refused before anything is written."""
    with pytest.raises(ValueError, match="plan"):
        create_key(aws.dynamodb, KEYS_TABLE, "a@example.com", "platinum", FakeClock())
    with pytest.raises(ValueError, match="email"):
        create_key(aws.dynamodb, KEYS_TABLE, "not an email", "free", FakeClock())


def test_keys_go_only_to_emails_the_consumer_can_count(aws: Aws) -> None:
    """An address over 254 characters could not be an item key in the consumer: no key for it."""
    local = "a" * 64
    create_key(aws.dynamodb, KEYS_TABLE, f"{local}@{'b' * 185}.com", "free", FakeClock())  # 254
    with pytest.raises(ValueError, match="email"):
        create_key(aws.dynamodb, KEYS_TABLE, f"{local}@{'b' * 186}.com", "free", FakeClock())


def test_missing_table_is_a_typed_error(aws: Aws) -> None:
    """DynamoDB errors surface as KeyStoreUnavailable."""
    with pytest.raises(KeyStoreUnavailable):
        get_key(aws.dynamodb, "no-such-table", "abc")
    with pytest.raises(KeyStoreUnavailable):
        list_keys(aws.dynamodb, "no-such-table")


def test_plans_have_increasing_limits() -> None:
    """Free < pro < enterprise, and every per-minute limit allows a full second's burst."""
    assert get_plan("free").per_second == 5 and get_plan("free").per_minute == 100
    ordered = [PLANS["free"], PLANS["pro"], PLANS["enterprise"]]
    assert [p.per_second for p in ordered] == sorted(p.per_second for p in ordered)
    assert all(plan.per_minute >= plan.per_second for plan in ordered)
