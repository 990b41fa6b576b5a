"""Both images as built from the Dockerfile: who they run as, what they hold, where the daemon looks."""

from __future__ import annotations

import pytest

from tests.containers.conftest import LOCAL, PRODUCTION, ROOT, Images

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1200)]
BOTH = pytest.mark.parametrize("image", [PRODUCTION, LOCAL])
# Run with -P, from /: the installed package, whatever the working directory holds.
WHERE_THE_DAEMON_LOOKS = """
import pathlib
from consumer import daemon
properties, jars = pathlib.Path(daemon.PROPERTIES_DIR), pathlib.Path(daemon.JARS_DIR)
print(properties)
print(len(list(jars.glob('*.jar'))))
print((properties / 'consumer.properties').is_file())
print((properties / 'logback.xml').read_text() == open('/dev/stdin').read())
"""


def _python(images: Images, image: str, code: str) -> str:
    return images.docker("run", "--rm", "--entrypoint", "python", image, "-P", "-c", code)


@BOTH
def test_the_image_runs_as_uid_10001(images: Images, image: str) -> None:
    """Numeric and not root, so that runtimes can verify runAsNonRoot."""
    assert images.docker("run", "--rm", "--entrypoint", "id", image).split()[:2] == [
        "uid=10001(metering)",
        "gid=10001(metering)",
    ]


@BOTH
def test_metering_help_works(images: Images, image: str) -> None:
    """The entrypoint is the `metering` CLI, every subcommand listed."""
    shown = images.docker("run", "--rm", image, "--help")
    assert all(command in shown for command in ("consume", "provision", "usage", "simulate"))


@pytest.mark.parametrize(("image", "emulator"), [(PRODUCTION, False), (LOCAL, True)])
def test_only_the_local_image_holds_the_emulator(images: Images, image: str, emulator: bool) -> None:
    """moto and hypercorn are in EXTRAS=local only: production holds neither."""
    found = _python(
        images,
        image,
        "import importlib.util as u; print(*(bool(u.find_spec(m)) for m in ('moto', 'hypercorn')))",
    )
    assert found.split() == [str(emulator)] * 2


@BOTH
def test_the_kcl_jars_and_properties_are_where_the_daemon_looks(images: Images, image: str) -> None:
    """consumer.daemon's PROPERTIES_DIR holds this checkout's properties; JARS_DIR holds the KCL."""
    logback = (ROOT / "properties" / "logback.xml").read_text()
    run = ("run", "--rm", "-i", "--entrypoint", "python", image, "-P", "-c", WHERE_THE_DAEMON_LOOKS)
    result = images.engine.docker(*run, input=logback)
    properties, jars, has_properties, same_logback = result.stdout.split()
    assert properties.startswith("/opt/metering/lib/python3") and properties.endswith(
        "site-packages/properties"
    )
    assert int(jars) > 50 and has_properties == "True" and same_logback == "True"
