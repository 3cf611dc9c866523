"""How find_postgres_bin_dir looks for the server binaries: PATH, Debian layout, pg_config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bastion.demo import pgserver
from bastion.demo.pgserver import PostgresNotFound, find_postgres_bin_dir
from bastion.errors import BastionError


def _fake_tools(bin_dir: Path, *names: str) -> Path:
    bin_dir.mkdir(parents=True)
    for name in names:
        tool = bin_dir / name
        tool.write_text("#!/bin/sh\nexit 0\n")
        tool.chmod(0o755)
    return bin_dir


@pytest.fixture
def empty_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Nothing on PATH and no Debian layout, so each test adds exactly what it needs."""
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    monkeypatch.setenv("PATH", str(path_dir))
    monkeypatch.setattr(pgserver, "DEBIAN_ROOT", tmp_path / "usr-lib-postgresql")
    return tmp_path


def test_finds_the_real_server_binaries() -> None:
    try:
        bin_dir = find_postgres_bin_dir()
    except PostgresNotFound:
        if os.environ.get("CI", "").lower() == "true":
            raise
        pytest.skip("PostgreSQL server binaries are not installed")
    for tool in ("pg_ctl", "initdb", "postgres"):
        assert os.access(bin_dir / tool, os.X_OK)


def test_path_comes_first(empty_search: Path) -> None:
    on_path = _fake_tools(empty_search / "path" / "pg", "pg_ctl", "initdb")
    os.environ["PATH"] = str(on_path)
    _fake_tools(empty_search / "usr-lib-postgresql" / "15" / "bin", "pg_ctl", "initdb")
    assert find_postgres_bin_dir() == on_path


def test_only_one_tool_on_path_is_not_enough(empty_search: Path) -> None:
    _fake_tools(empty_search / "path" / "only", "pg_ctl")
    os.environ["PATH"] = str(empty_search / "path" / "only")
    debian = _fake_tools(empty_search / "usr-lib-postgresql" / "15" / "bin", "pg_ctl", "initdb")
    assert find_postgres_bin_dir() == debian


def test_debian_layout_prefers_the_highest_complete_version(empty_search: Path) -> None:
    root = empty_search / "usr-lib-postgresql"
    _fake_tools(root / "9.6" / "bin", "pg_ctl", "initdb")
    _fake_tools(root / "13" / "bin", "pg_ctl", "initdb")
    expected = _fake_tools(root / "15" / "bin", "pg_ctl", "initdb")
    _fake_tools(root / "16" / "bin", "pg_ctl")  # client-only install: no initdb
    (root / "common").mkdir()
    assert find_postgres_bin_dir() == expected


def test_pg_config_is_the_last_resort(empty_search: Path) -> None:
    server_bin = _fake_tools(empty_search / "opt" / "pgsql" / "bin", "pg_ctl", "initdb")
    pg_config = empty_search / "path" / "pg_config"
    pg_config.write_text(f"#!/bin/sh\necho '{server_bin}'\n")
    pg_config.chmod(0o755)
    assert find_postgres_bin_dir() == server_bin


@pytest.mark.usefixtures("empty_search")
def test_nothing_found_names_the_package_to_install() -> None:
    with pytest.raises(PostgresNotFound) as raised:
        find_postgres_bin_dir()
    assert isinstance(raised.value, BastionError)
    assert "sudo apt-get install postgresql" in str(raised.value)
