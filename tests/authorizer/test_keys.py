"""Unit tests of key generation, parsing and hashing."""

from __future__ import annotations

import hashlib

from authorizer.keys import KEY_LENGTH, PREFIX, generate_key, hash_key, hashes_match, parse_key


def test_generated_key_parses_back_to_its_id() -> None:
    """A fresh key carries the public prefix, its id, and parses back to that id."""
    key_id, secret = generate_key()
    parsed = parse_key(secret)
    assert secret.startswith(f"{PREFIX}{key_id}_")
    assert len(secret) == KEY_LENGTH
    assert parsed is not None and parsed.key_id == key_id


def test_keys_are_unique() -> None:
    """Two keys never share an id or a secret."""
    keys = [generate_key() for _ in range(200)]
    assert len({key_id for key_id, _ in keys}) == 200
    assert len({secret for _, secret in keys}) == 200


def test_hash_is_sha256_of_the_whole_key() -> None:
    """The stored hash is the SHA-256 hex digest of the whole key."""
    _, secret = generate_key()
    assert hash_key(secret) == hashlib.sha256(secret.encode()).hexdigest()
    assert parse_key(secret).key_hash == hash_key(secret)  # type: ignore[union-attr]


def test_a_changed_character_fails_the_checksum() -> None:
    """Altering any secret character makes the key malformed, so no lookup is needed."""
    _, secret = generate_key()
    position = len(PREFIX) + 20
    altered = secret[:position] + ("A" if secret[position] != "A" else "B") + secret[position + 1 :]
    assert parse_key(altered) is None


def test_wrong_shapes_are_not_keys() -> None:
    """Empty, short, long, wrongly prefixed or non-ASCII strings do not parse."""
    _, secret = generate_key()
    for raw in ["", "ck_", secret[:-1], secret + "0", "xx" + secret[2:], secret[:-9] + "é" + secret[-8:]]:
        assert parse_key(raw) is None


def test_hashes_match_compares_exactly() -> None:
    """Equal hashes match; any other string, including non-ASCII, does not."""
    digest = hash_key("ck_x")
    assert hashes_match(digest, digest)
    assert not hashes_match(digest, digest[:-1] + "0")
    assert not hashes_match(digest, "é")


def test_parsed_key_repr_shows_only_the_id() -> None:
    """The repr of a parsed key names the id and nothing derived from the secret."""
    key_id, secret = generate_key()
    text = repr(parse_key(secret))
    assert key_id in text and hash_key(secret) not in text and secret not in text
