"""Build the Lambda deployment zip: `python -m authorizer.build_zip [--out dist/authorizer.zip]`.

This package, `contract` and `reads` (what `GET /v1/usage` answers from) go in, with the
pure-Python libraries the Lambda runtime lacks, copied from this environment's installation
(sources and licences): Powertools, for the EMF metrics, and its `typing_extensions`, at exactly
the versions uv.lock records (a different installed version is refused: the zip ships what CI
tested). boto3, botocore and jmespath come with the Lambda Python runtime, and nothing else is
imported (import-linter checks it). Entries are sorted and get a fixed timestamp, so the same
sources and library versions give a byte-identical zip.
"""

from __future__ import annotations

import argparse
import tomllib
import zipfile
from collections.abc import Iterator
from importlib.metadata import distribution
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("authorizer", "contract", "reads")
VENDORED = ("aws-lambda-powertools", "typing-extensions")  # distribution names
FIXED_TIME = (2020, 1, 1, 0, 0, 0)
LOCK = ROOT / "uv.lock"


class UnlockedVersion(Exception):
    """A vendored library is installed at another version than uv.lock records."""


def build(out: Path, lock: Path = LOCK) -> int:
    """Write the zip and return its size in bytes."""
    check_locked(lock)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, source in sorted(_entries()):
            entry = zipfile.ZipInfo(name, FIXED_TIME)
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, source.read_bytes(), compress_type=zipfile.ZIP_DEFLATED)
    return out.stat().st_size


def _entries() -> Iterator[tuple[str, Path]]:
    """(name in the zip, file) for our packages' modules and the vendored libraries' files."""
    for package in PACKAGES:
        for source in (ROOT / package).rglob("*.py"):
            yield str(source.relative_to(ROOT)), source
    for name in VENDORED:
        dist = distribution(name)
        for file in dist.files or ():
            if (file.suffix == ".py" and "__pycache__" not in file.parts) or "licenses" in file.parts:
                yield file.as_posix(), Path(str(dist.locate_file(file)))


def check_locked(lock: Path = LOCK) -> None:
    """Refuse to vendor a library at a version other than the lock's (`UnlockedVersion`)."""
    locked = {package["name"]: package["version"] for package in tomllib.loads(lock.read_text())["package"]}
    for name in VENDORED:
        installed = distribution(name).version
        if locked.get(name) != installed:
            raise UnlockedVersion(
                f"{name} {installed} is installed but uv.lock has {locked.get(name)}: run bin/setup.sh"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("dist/authorizer.zip"))
    args = parser.parse_args(argv)
    size = build(args.out)
    print(f"{args.out}: {size} bytes ({size / 1024:.1f} KiB), handler authorizer.handler.lambda_handler")


if __name__ == "__main__":
    main()
