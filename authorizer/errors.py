"""Errors of the authorizer package; AWS error codes are translated into these where the call is made."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from botocore.exceptions import ClientError


def aws_error_code(exc: ClientError) -> str:
    """The AWS error code of a failed call (`ConditionalCheckFailedException`, ...), or ""."""
    return str(exc.response.get("Error", {}).get("Code", ""))


class AuthorizerError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(AuthorizerError):
    """A setting from the environment is invalid; the message names the variable."""


class KeyStoreUnavailable(AuthorizerError):
    """The keys table could not be read or written (timeout, throttling, missing table)."""


class KeyNotFound(AuthorizerError):
    """No key with this id exists in the keys table."""


class RateLimitUnavailable(AuthorizerError):
    """The rate-limit table could not be updated; the caller decides whether to fail open."""


class Unauthorized(Exception):
    """Raised by `lambda_handler` to make a REST API answer 401: API Gateway's documented protocol."""

    def __init__(self) -> None:
        super().__init__("Unauthorized")
