"""The image builds for linux/arm64 (Graviton Fargate) as it does for linux/amd64: checked statically.

No Docker engine runs here, so `docker buildx build --platform linux/arm64 .` is not run. What a
build for either platform depends on is checked instead:

- the Dockerfile names no platform and runs no architecture-specific step: buildx picks each base
  image's variant for the target platform;
- the base image, python:3.11-slim-bookworm, is published for arm64v8 (docker-library/official-images,
  library/python), and the one apt package, Debian bookworm's openjdk-17-jre-headless, is built
  for arm64 (deb.debian.org pool, bookworm and bookworm-security);
- every Python distribution the image installs is pure Python, or one of those verified to publish
  manylinux aarch64 wheels for CPython 3.11 (`pip download --platform manylinux2014_aarch64
  --only-binary=:all:` on 2026-11-30): a new compiled dependency fails this test until checked;
- the KCL's jars hold no native library (Netty's epoll jar without its platform classifier is Java
  only; Netty falls back to NIO);
- ecs/consumer.yaml runs the task on the architecture it is told (CpuArchitecture -> RuntimePlatform).
"""

from __future__ import annotations

import re
import zipfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from cfnlint.decode import cfn_yaml
from packaging.requirements import Requirement

from consumer import daemon

ROOT = Path(__file__).resolve().parents[2]
MULTI_ARCH_BASES = {"python:3.11-slim-bookworm"}
ARM64_APT_PACKAGES = {"openjdk-17-jre-headless"}
# Compiled distributions with a cp311 manylinux aarch64 wheel on PyPI (checked with pip download).
ARM64_WHEELS = {
    "": {"msgspec", "orjson"},
    "local": {
        "cffi", "charset-normalizer", "cryptography", "lazy-object-proxy", "markupsafe", "msgspec",
        "orjson", "pydantic-core", "pyyaml", "regex", "rpds-py", "wrapt",
    },
}  # fmt: skip
ARCHITECTURE_WORDS = re.compile(
    r"amd64|x86[_-]64|aarch64|arm64|armv8|i[36]86|uname -m|print-architecture", re.I
)
DOWNLOADS = re.compile(r"\b(curl|wget)\b|^ADD\s+https?://", re.I | re.M)


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_the_dockerfile_names_no_platform_and_builds_from_multi_arch_bases() -> None:
    bases = [args.split()[0] for keyword, args in _instructions() if keyword == "FROM"]
    assert not any("--platform" in args for keyword, args in _instructions() if keyword == "FROM")
    assert set(bases) == MULTI_ARCH_BASES


def test_no_step_is_architecture_specific_or_downloads_a_binary() -> None:
    for keyword, args in _instructions():
        if keyword in ("RUN", "ADD", "COPY", "ENV", "ARG"):
            assert not ARCHITECTURE_WORDS.search(args), args
            assert not DOWNLOADS.search(f"{keyword} {args}"), args


def test_apt_installs_only_packages_debian_builds_for_arm64() -> None:
    installs = [args for keyword, args in _instructions() if keyword == "RUN" and "apt-get install" in args]
    packages = {
        word
        for args in installs
        for command in args.split("&&")
        if "apt-get install" in command
        for word in command.split("install", 1)[1].split()
        if not word.startswith("-")
    }
    assert packages == ARM64_APT_PACKAGES


def _closure(extra: str) -> set[str]:
    """The distributions `pip install .[extra]` installs (from this environment's metadata)."""
    todo: list[tuple[str, frozenset[str]]] = [("complical-usage-metering", frozenset({extra} - {""}))]
    visited: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in visited:
            continue
        visited.add((name, extras))
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue  # an optional dependency of a dependency that this environment lacks
        for line in requires:
            requirement = Requirement(line)
            environments = [{"extra": e} for e in extras] or [{"extra": ""}]
            if requirement.marker is None or any(requirement.marker.evaluate(e) for e in environments):
                todo.append((_canonical(requirement.name), frozenset(requirement.extras)))
    return {name for name, _ in visited} - {"complical-usage-metering"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _compiled(names: set[str]) -> set[str]:
    found = set()
    for name in names:
        try:
            wheel = distribution(name).read_text("WHEEL") or ""
        except PackageNotFoundError:
            continue
        if "Root-Is-Purelib: false" in wheel:
            found.add(name)
    return found


def test_every_compiled_python_dependency_publishes_an_arm64_wheel() -> None:
    for extra, verified in ARM64_WHEELS.items():
        compiled = _compiled(_closure(extra))
        assert compiled <= verified, f"check an aarch64 wheel exists for {sorted(compiled - verified)}"
    assert _compiled(_closure("")) == ARM64_WHEELS[""]  # the list stays current


def test_the_kcl_jars_hold_no_native_library() -> None:
    jars = sorted(Path(daemon.JARS_DIR).glob("*.jar"))
    assert jars
    for jar in jars:
        with zipfile.ZipFile(jar) as archive:
            native = [n for n in archive.namelist() if n.endswith((".so", ".dll", ".dylib", ".jnilib"))]
        assert not native, f"{jar.name}: {native}"


def test_the_task_runs_on_the_architecture_the_stack_is_given() -> None:
    template = cfn_yaml.load(str(ROOT / "ecs" / "consumer.yaml"))
    platform = template["Resources"]["TaskDefinition"]["Properties"]["RuntimePlatform"]
    assert platform == {"OperatingSystemFamily": "LINUX", "CpuArchitecture": {"Ref": "CpuArchitecture"}}
    assert "ARM64" in template["Parameters"]["CpuArchitecture"]["AllowedValues"]
