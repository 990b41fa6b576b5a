"""What a `metering` command raises when it cannot do its job; `metering.cli.main` reports it.

Every error a command raises on purpose is a `MeteringError` (the consumer's failures are too);
`CommandError` adds the exit code for a mistake in the command line itself.
"""

from __future__ import annotations

from consumer.errors import MeteringError

USAGE_ERROR = 2  # what argparse exits with for a bad command line


class CommandError(MeteringError):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def usage_error(message: str) -> CommandError:
    """A value the command line gave that cannot work (exit 2, as argparse's own errors)."""
    return CommandError(message, USAGE_ERROR)
