"""Errors of the consumer package; AWS error codes are translated into these where the call is made."""


class MeteringError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(MeteringError):
    """A setting from the environment is invalid; the message names the variable."""


class Superseded(MeteringError):
    """Another record processor has claimed this shard's flushes since we did: we must not write."""


class SinkUnavailable(MeteringError):
    """A durable write failed after its bounded retries; nothing past it may be checkpointed."""
