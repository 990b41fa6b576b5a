"""Build the Lambda deployment zip: `python -m authorizer.build_zip [--out dist/authorizer.zip]`.

This package and `contract` go in: boto3 comes with the Lambda Python runtime, and nothing else is
imported (import-linter checks it). Entries get a fixed timestamp, so the same sources give a
byte-identical zip.
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("authorizer", "contract")
FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def build(out: Path) -> int:
    """Write the zip and return its size in bytes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        sources = sorted(source for package in PACKAGES for source in (ROOT / package).rglob("*.py"))
        for source in sources:
            entry = zipfile.ZipInfo(str(source.relative_to(ROOT)), FIXED_TIME)
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, source.read_bytes(), compress_type=zipfile.ZIP_DEFLATED)
    return out.stat().st_size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("dist/authorizer.zip"))
    args = parser.parse_args(argv)
    size = build(args.out)
    print(f"{args.out}: {size} bytes ({size / 1024:.1f} KiB), handler authorizer.handler.lambda_handler")


if __name__ == "__main__":
    main()
