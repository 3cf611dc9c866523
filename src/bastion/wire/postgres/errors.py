"""The one exception the codec raises: the bytes do not form a valid message."""

from __future__ import annotations


class WireFormatError(ValueError):
    """Malformed, truncated or oversized protocol data. The message is safe to show a client."""
