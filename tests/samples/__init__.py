"""Events nobody here wrote: sample events of aws-lambda-powertools (Python), unchanged.

From https://github.com/aws-powertools/powertools-lambda-python `tests/events/` (MIT-0), at commit:
- `apiGatewayAuthorizerRequestEvent.json` (6c5095ba78ca): an HTTP API's REQUEST authorizer event,
  payload format 1.0 (`resourceId` reads `ANY /request`);
- `apiGatewayAuthorizerV2Event.json` (8ff04535e23f): the same, payload format 2.0;
- `apiGatewayProxyV2LambdaAuthorizerEvent.json` (b74428ef786a): an HTTP API v2 proxy event behind a
  Lambda authorizer, its context under `requestContext.authorizer.lambda`.
Tests copy one and change only what the case needs (a key header, the stage, the route).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def sample(name: str) -> dict[str, Any]:
    """A fresh copy of the sample event `name` (file name without `.json`)."""
    loaded: dict[str, Any] = json.loads((Path(__file__).parent / f"{name}.json").read_text())
    return loaded
