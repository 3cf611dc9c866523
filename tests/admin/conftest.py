"""Fixtures for the admin tests: `cli`, the `bastion` command line run in process (see
`served.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from admin.served import Cli


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """The command line of a user whose config directory is `tmp_path/config`."""
    return Cli(tmp_path / "config", monkeypatch, capsys)
