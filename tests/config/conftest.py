"""Fixtures shared by the configuration tests: writing a configuration file to a temp dir."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

WriteConfig = Callable[[str], Path]


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """Write dedented YAML to tmp_path/bastion.yaml and return its path."""

    def write(text: str) -> Path:
        path = tmp_path / "bastion.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write
