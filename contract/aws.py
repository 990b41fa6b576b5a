"""AWS error codes, read without importing botocore (this package ships in the Lambda zip)."""

from __future__ import annotations

from typing import Any


def aws_error_code(exc: Any) -> str:
    """The AWS error code of a failed call (`ConditionalCheckFailedException`, ...), or ""."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


# Errors that will not go away by themselves: a missing resource, missing permissions, a request the
# service refuses as invalid. Retrying them only delays the operator's fix.
CONFIGURATION_ERRORS = frozenset(
    {
        "ResourceNotFoundException",
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "ValidationException",
        "InvalidSignatureException",
        "MissingAuthenticationTokenException",
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
        "NotFound",  # SNS: no such topic
        "AuthorizationError",  # SNS: access denied
    }
)


def is_configuration_error(exc: Any) -> bool:
    return aws_error_code(exc) in CONFIGURATION_ERRORS
