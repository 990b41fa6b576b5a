"""`metering local-aws` whose Kinesis answers HTTP 500 to every request while a flag file exists.

    python -m tests.integration.failing_emulator --port P --flag FILE

A Kinesis that fails at the HTTP level, as moto 5.2.6 made the emulator do (issue 16), for the
bounded-stop test. The KCL speaks h2c to Kinesis, so a TCP proxy cannot answer it with a 500.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable
from typing import Any

from metering import emulator


class FailingKinesis(emulator.AtomicRequests):
    flag = ""

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if emulator.signing_service(environ) == "kinesis" and os.path.exists(self.flag):
            start_response("500 Internal Server Error", [("Content-Type", "application/x-amz-json-1.1")])
            return [b'{"__type": "InternalFailure", "message": "injected by the test"}']
        return super().__call__(environ, start_response)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--flag", required=True)
    args = parser.parse_args()
    FailingKinesis.flag = args.flag
    emulator.AtomicRequests = FailingKinesis  # type: ignore[misc]
    emulator.serve(args.port)


if __name__ == "__main__":
    main()
