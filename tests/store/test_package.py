"""The store package stays below the stores: it imports no store, and SQLite needs no psycopg."""

from __future__ import annotations

import subprocess
import sys


def modules_loaded_by(statement: str) -> set[str]:
    probe = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return set(result.stdout.split())


def test_the_helpers_import_no_store() -> None:
    loaded = modules_loaded_by("import bastion.store.sqlite, bastion.store.postgres")
    assert {"bastion.store.sqlite", "bastion.store.postgres"} <= loaded
    assert not {m for m in loaded if m.startswith(("bastion.audit", "bastion.approvals"))}


def test_the_sqlite_helper_does_not_load_psycopg() -> None:
    loaded = modules_loaded_by("import bastion.store.sqlite")
    assert "bastion.store.sqlite" in loaded
    assert "psycopg" not in loaded
