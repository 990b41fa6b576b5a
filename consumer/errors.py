"""Errors of the consumer package; AWS errors become these in one place (`consumer.aws.translated`)."""


class MeteringError(Exception):
    """Base class of every error this package raises on purpose."""


class Superseded(MeteringError):
    """Another record processor has claimed this shard's flushes since we did: we must not write."""


class SinkUnavailable(MeteringError):
    """An AWS call failed for a reason that may pass (timeout, throttling, outage); retried in bounds.

    Raised by a sink once its bounded retries are spent: nothing past it may be checkpointed.
    """


class Misconfigured(MeteringError):
    """An AWS call failed in a way retrying cannot help: a missing resource or permission, or a request
    refused as invalid. The message says what to fix."""
