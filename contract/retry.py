"""How every component retries: a bound (attempts and/or a deadline), full jitter, what to retry on.

Full jitter (a random wait between 0 and an exponentially growing cap) keeps many shards or
containers from hammering a recovering service in step. botocore's standard retry mode already
retries each AWS call; these loops ride out longer trouble around whole idempotent operations.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Retry:
    """Retry `retry_on` errors until `attempts` calls were made or `deadline` seconds have passed.

    At least one bound is required. The last error is raised when the bound is reached; a wait is
    never longer than the time left before the deadline.
    """

    retry_on: tuple[type[BaseException], ...]
    attempts: int | None = None
    deadline: float | None = None
    base: float = 0.2  # the first wait's cap, doubled per attempt
    cap: float = 8.0
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    jitter: Callable[[float, float], float] = field(default=random.uniform)

    def __post_init__(self) -> None:
        if self.attempts is None and self.deadline is None:
            raise ValueError("a retry needs attempts or a deadline")

    def call(
        self, operation: Callable[[], T], on_retry: Callable[[int, BaseException], None] | None = None
    ) -> T:
        until = None if self.deadline is None else self.monotonic() + self.deadline
        attempt = 0
        while True:
            attempt += 1
            try:
                return operation()
            except self.retry_on as error:
                left = None if until is None else until - self.monotonic()
                if (self.attempts is not None and attempt >= self.attempts) or (
                    left is not None and left <= 0
                ):
                    raise
                if on_retry is not None:
                    on_retry(attempt, error)
                wait = self.jitter(0, min(self.cap, self.base * 2 ** (attempt - 1)))
                self.sleep(wait if left is None else min(wait, left))
