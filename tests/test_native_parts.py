"""Bastion knows which of its C extensions are missing, and says so when it starts."""

from __future__ import annotations

import pytest

from bastion import app
from bastion.wire.postgres import framing


def test_this_build_has_every_c_extension() -> None:
    assert app.missing_native_parts() == []


def test_a_missing_extension_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "NATIVE_ROWS", False)
    monkeypatch.setattr(app, "NATIVE_CONFIRM", False)
    monkeypatch.setattr(app, "NATIVE_SPANS", False)
    monkeypatch.setattr(app, "skip_messages", framing.skip_messages_in_python)
    assert app.missing_native_parts() == [
        "bastion.masking._rowmask",
        "bastion.masking._confirm",
        "bastion.masking._spans",
        "bastion.wire.postgres._walk",
    ]
