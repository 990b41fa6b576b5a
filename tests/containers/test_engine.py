"""Where no engine can be had, the tier says why (the `engine` fixture turns it into a skip)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.containers import engine as engines

pytestmark = pytest.mark.containers


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A machine where nothing answers on the Docker socket."""
    monkeypatch.setattr(engines, "_answers", lambda env: False)
    return monkeypatch


def test_without_root_no_engine_is_started_and_the_reason_says_so(no_engine: pytest.MonkeyPatch) -> None:
    """No engine answering and no root: unavailable, because dockerd needs root."""
    no_engine.setattr(shutil, "which", lambda name: f"/usr/sbin/{name}")
    no_engine.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(engines.EngineUnavailable, match="needs root"), engines.engine():
        pass


def test_an_engine_that_cannot_be_installed_is_unavailable_with_apts_error(
    no_engine: pytest.MonkeyPatch,
) -> None:
    """No dockerd and apt failing (no mirror reachable): unavailable, with apt's own message."""

    def apt(*command: str, **kwargs: object) -> None:
        raise RuntimeError("apt-get exited 100:\nE: Unable to locate package docker.io")

    no_engine.setattr(shutil, "which", lambda name: None)
    no_engine.setattr(os, "geteuid", lambda: 0)
    no_engine.setattr(engines, "run", apt)
    with (
        pytest.raises(engines.EngineUnavailable, match=r"Unable to locate package docker\.io"),
        engines.engine(),
    ):
        pass
