"""Fixtures of the container tier: one engine and one build of both images for the whole session."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.containers import engine as engines

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION, LOCAL = "complical-usage-metering:latest", "complical-usage-metering:local"


def _from_image() -> str:
    """The name the Dockerfile's FROM uses, which the local base image is tagged as."""
    (name,) = {
        line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("FROM ")
    }
    return name


@dataclass
class Images:
    engine: engines.Engine
    seconds: dict[str, float] = field(default_factory=dict)  # what each step took, for BENCHMARKS.md

    def docker(self, *args: str, timeout: float = 600) -> str:
        return self.engine.docker(*args, timeout=timeout).stdout

    def size(self, image: str) -> int:
        return int(self.docker("image", "inspect", "--format", "{{.Size}}", image))


@pytest.fixture(scope="session")
def engine() -> Iterator[engines.Engine]:
    try:
        with engines.engine() as running:
            yield running
    except engines.EngineUnavailable as exc:
        pytest.skip(f"no container engine can be started here: {exc}")


@pytest.fixture(scope="session")
def images(engine: engines.Engine) -> Images:
    """Both images, built once from the unchanged Dockerfile on the local base image."""
    built = Images(engine, {"engine start": engine.seconds_to_start})
    began = time.monotonic()
    engines.import_base(engine, _from_image())
    built.seconds["base image"] = time.monotonic() - began
    for name, extras in ((PRODUCTION, ""), (LOCAL, "local")):
        began = time.monotonic()
        built.docker(
            "build", "--quiet", "--build-arg", f"EXTRAS={extras}", "-t", name, str(ROOT), timeout=900
        )
        built.seconds[f"build {name}"] = time.monotonic() - began
    print(f"\n[images] {built.seconds}; sizes {[built.size(i) >> 20 for i in (PRODUCTION, LOCAL)]} MiB")
    return built
