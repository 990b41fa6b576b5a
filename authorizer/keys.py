"""API key format, generation, parsing and hashing (pure).

A key reads `ck_<id>_<secret><crc>`: a public prefix, a 12-character id (the table's partition key,
safe to log and to show), a 256-bit secret, and a CRC32 of the rest. The checksum lets random garbage
be refused as malformed without a DynamoDB read. Only a SHA-256 of the whole key is stored: a fast hash
is enough because the secret is 256 bits of randomness, not a password.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import zlib
from dataclasses import dataclass

PREFIX = "ck_"
KEY_LENGTH = 67
_ID_ALPHABET = string.ascii_lowercase + string.digits
ID_LENGTH = 12
KEY_ID_PATTERN = f"[a-z0-9]{{{ID_LENGTH}}}"
_KEY = re.compile(rf"{PREFIX}({KEY_ID_PATTERN})_[A-Za-z0-9_-]{{43}}([0-9a-f]{{8}})", re.ASCII)


@dataclass(frozen=True, slots=True)
class ParsedKey:
    key_id: str
    key_hash: str

    def __repr__(self) -> str:  # the hash is not secret, but keep reprs short and boring
        return f"ParsedKey(key_id={self.key_id!r})"


def generate_key() -> tuple[str, str]:
    """Return a new `(key_id, secret)`; the secret is the whole key the user sends."""
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(ID_LENGTH))
    body = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return key_id, body + _checksum(body)


def parse_key(raw: str) -> ParsedKey | None:
    """Parse a presented key, or None when it cannot be one of ours (no lookup needed)."""
    if len(raw) != KEY_LENGTH:
        return None
    match = _KEY.fullmatch(raw)
    if match is None or not hmac.compare_digest(match.group(2), _checksum(raw[:-8])):
        return None
    return ParsedKey(key_id=match.group(1), key_hash=hash_key(raw))


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def hashes_match(presented_hash: str, stored_hash: str) -> bool:
    """Constant-time comparison, so response timing reveals nothing about the stored hash."""
    return hmac.compare_digest(presented_hash.encode(), stored_hash.encode())


def _checksum(body: str) -> str:
    return f"{zlib.crc32(body.encode('ascii')):08x}"
