"""The contract between the authorizer and the consumer holds: one event shape, one email rule."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from consumer.core.events import InvalidEvent, UsageEvent, decode_event
from consumer.testing import event
from contract.events import UsageEventV1, canonical_email

NOW = datetime(2026, 11, 24, 18, tzinfo=UTC)


def test_the_decoder_reads_exactly_the_fields_the_producer_writes() -> None:
    decoded = {field.encode_name for field in msgspec.structs.fields(UsageEvent)}
    assert decoded == set(UsageEventV1.__annotations__)


def _decodes(email: str) -> bool:
    try:
        decode_event(orjson.dumps(event(email=email)), NOW)
    except InvalidEvent:
        return False
    return True


def _canonical(email: str) -> bool:
    try:
        canonical_email(email)
    except ValueError:
        return False
    return True


@given(st.text(min_size=1, max_size=300).filter(lambda text: text == text.strip()))
@example("kate@example.com")
@example("\u212aate@example.com")  # the Kelvin sign: lower-cases to 'k' with Unicode rules
@example("\u0430lice@example.com")  # a Cyrillic 'a'
@example("a" * 64 + "@" + "b" * 189)  # 254 characters
@example("a" * 64 + "@" + "b" * 190)
@example("ops+billing@xn--bcher-kva.example")
def test_the_key_store_and_the_decoder_accept_the_same_emails(email: str) -> None:
    """Keys are issued only to emails the consumer counts by, and the consumer counts no other."""
    assert _decodes(email) == _canonical(email)


def test_the_decoder_refuses_an_email_with_a_line_break() -> None:
    """`$` would match before a final newline: the pattern ends with `\\Z`, so no key ends in one."""
    assert not _decodes("ops@x.io\n")


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("Kate@Example.COM", "kate@example.com"), ("  ops@x.io ", "ops@x.io")],
)
def test_an_email_has_one_canonical_form(raw: str, canonical: str) -> None:
    assert canonical_email(raw) == canonical


@pytest.mark.parametrize(
    "raw", ["\u212aate@example.com", "\u0430lice@example.com", "a@b@c", "no-at", "a b@c.d", "a@b.c\nd"]
)
def test_look_alike_and_malformed_emails_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="ASCII only"):
        canonical_email(raw)
