"""Values shared by the configuration tests."""

from __future__ import annotations

# A password-looking value that must never appear in any message or output.
SECRET = "hunter2-Sup3rSecret"
