"""House rules for the masking package: every module says what it owns, the package stays
pure (no sockets, no event loop), and Python's `re` never touches data."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import bastion.masking

PACKAGE = Path(bastion.masking.__file__).parent
FORBIDDEN = {"re", "regex", "asyncio", "uvloop", "socket", "selectors"}


def modules() -> list[str]:
    return [info.name for info in pkgutil.iter_modules([str(PACKAGE)])]


def test_every_module_has_a_docstring() -> None:
    for name in modules():
        module = importlib.import_module(f"bastion.masking.{name}")
        assert module.__doc__ and len(module.__doc__.strip()) > 40, name


def test_no_regular_expressions_of_python_and_no_io() -> None:
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & FORBIDDEN, (path.name, imported & FORBIDDEN)
