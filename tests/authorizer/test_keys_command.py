"""Tests of `metering keys` and of the table specs, against moto."""

from __future__ import annotations

from pathlib import Path

import pytest

from authorizer.tables import table_specs, ttl_specs
from metering.cli import main
from tests.authorizer.conftest import KEYS_TABLE, LIMITS_TABLE, Aws


def run(*argv: str) -> int:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    return int(exited.value.code or 0)


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS_TABLE_NAME", KEYS_TABLE)
    monkeypatch.setenv("COLUMNS", "200")


def test_create_list_revoke(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    """Create prints the secret once; list shows the key without it; revoke marks it revoked."""
    assert run("keys", "create", "--email", "ada@example.com", "--plan", "pro") == 0
    created = capsys.readouterr().out
    key_id = created.split("key id:")[1].split()[0]
    secret = created.split("secret:")[1].split()[0]
    assert secret.startswith(f"ck_{key_id}_")
    assert run("keys", "list") == 0
    listing = capsys.readouterr().out
    assert key_id in listing and "active" in listing and secret not in listing
    assert run("keys", "revoke", key_id) == 0
    capsys.readouterr()
    run("keys", "list")
    assert "revoked" in capsys.readouterr().out


def test_errors_exit_non_zero_with_one_line_on_stderr(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown id exits 1, a bad email 2 (a bad command line), each with one `metering:` line."""
    assert run("keys", "revoke", "nosuchkey123") == 1
    assert capsys.readouterr().err == "metering: no key with id 'nosuchkey123'\n"
    assert run("keys", "create", "--email", "nope") == 2
    assert capsys.readouterr().err.startswith("metering: keys create: not an email address")


def test_table_specs_create_both_tables_with_ttl(aws: Aws) -> None:
    """The specs create on-demand tables, and TTL is enabled on the rate-limit windows."""
    names = [spec["TableName"] for spec in table_specs(KEYS_TABLE, LIMITS_TABLE)]
    assert names == [KEYS_TABLE, LIMITS_TABLE]
    assert all(spec["BillingMode"] == "PAY_PER_REQUEST" for spec in table_specs("a", "b"))
    description = aws.dynamodb.describe_time_to_live(TableName=LIMITS_TABLE)["TimeToLiveDescription"]
    assert description == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    assert [spec["TableName"] for spec in ttl_specs(KEYS_TABLE, LIMITS_TABLE)] == [LIMITS_TABLE]


def test_build_zip_holds_the_authorizer_the_contract_and_powertools(tmp_path: object) -> None:
    """The Lambda zip holds the authorizer, the contract, the reads and the vendored Powertools,
    reproducibly."""
    import zipfile
    from pathlib import Path

    from authorizer.build_zip import build

    first, second = Path(str(tmp_path)) / "a.zip", Path(str(tmp_path)) / "b.zip"
    assert build(first) == build(second) > 0
    assert first.read_bytes() == second.read_bytes()
    names = zipfile.ZipFile(first).namelist()
    assert {"authorizer/handler.py", "contract/events.py"} <= set(names)
    top_level = {name.split("/")[0].split("-")[0] for name in names}  # a dist-info folder as its package
    assert top_level == {
        "authorizer",
        "contract",
        "reads",
        "aws_lambda_powertools",
        "typing_extensions.py",
        "typing_extensions",
    }
    assert all(name.endswith(".py") or "/licenses/" in name for name in names)


def test_build_zip_refuses_a_library_the_lock_does_not_hold(tmp_path: Path) -> None:
    """The zip vendors what uv.lock records: an installed Powertools of another version is refused."""
    from authorizer.build_zip import LOCK, UnlockedVersion, build

    lock = tmp_path / "uv.lock"
    lock.write_text(
        LOCK.read_text().replace(
            'name = "aws-lambda-powertools"\nversion = "', 'name = "aws-lambda-powertools"\nversion = "0.'
        )
    )
    with pytest.raises(UnlockedVersion, match=r"aws-lambda-powertools \S+ is installed but uv\.lock has 0\."):
        build(tmp_path / "a.zip", lock)
