"""Errors of the authorizer package; AWS error codes are translated into these where the call is made."""

from __future__ import annotations


class AuthorizerError(Exception):
    """Base class of every error this package raises on purpose."""


class KeyStoreUnavailable(AuthorizerError):
    """The keys table could not be read or written (timeout, throttling, missing table)."""


class KeyNotFound(AuthorizerError):
    """No key with this id exists in the keys table."""


class RateLimitUnavailable(AuthorizerError):
    """The rate-limit table could not be updated for a reason that passes (timeout, throttling, 5xx):
    the request is allowed (fail open) and counted."""


class RateLimitMisconfigured(AuthorizerError):
    """The rate-limit table is missing, or the role may not use it: limits must not silently lift.
    Fatal at cold start; after it, requests are refused (fail closed)."""


class Unauthorized(Exception):
    """Raised by `lambda_handler` to make a REST API answer 401: API Gateway's documented protocol."""

    def __init__(self) -> None:
        super().__init__("Unauthorized")
