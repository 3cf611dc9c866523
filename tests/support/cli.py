"""Running the `bastion` command line as a separate process, as users do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def bastion_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def audit_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`bastion audit ARGS --data-dir DATA_DIR`."""
    return bastion_cli("audit", *args, "--data-dir", str(data_dir))
