"""A bounded LRU cache with per-entry expiry, on an injected clock (pure, not thread-safe).

One Lambda container serves one request at a time, so no locking is needed there.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class TtlCache(Generic[V]):
    def __init__(self, max_size: int, ttl_seconds: float, clock: Callable[[], float]) -> None:
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._max_size = max_size
        self._ttl = ttl_seconds
        self._clock = clock

    def get(self, key: str) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: V) -> None:
        if self._max_size <= 0 or self._ttl <= 0:
            return
        self._entries[key] = (self._clock() + self._ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_size:
            self._entries.popitem(last=False)

    def discard(self, key: str) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
