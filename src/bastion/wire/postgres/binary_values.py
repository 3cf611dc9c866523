"""Binary-format parameter values rendered as text, for people (approvers) to read.

Only the common scalar types are decoded; anything else, or a value whose length does not fit
its type, is shown as hex with its type OID, so nothing is hidden or misread.
"""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, date, datetime, timedelta

_POSTGRES_EPOCH = datetime(2000, 1, 1)
_POSTGRES_EPOCH_DATE = date(2000, 1, 1)
_TEXT_TYPES = frozenset({18, 19, 25, 114, 142, 1042, 1043})  # char, name, text, json, xml...
_FIXED: dict[int, tuple[str, str]] = {
    21: (">h", "int"),
    23: (">i", "int"),
    20: (">q", "int"),
    26: (">I", "int"),
    700: (">f", "float"),
    701: (">d", "float"),
}


def render_binary(type_oid: int, data: bytes) -> str:
    try:
        text = _render(type_oid, data)
    except (struct.error, ValueError, OverflowError, UnicodeDecodeError):
        text = None
    return text if text is not None else f"\\x{data.hex()} (binary, type {type_oid})"


def _render(type_oid: int, data: bytes) -> str | None:
    if type_oid in _FIXED:
        fmt, _ = _FIXED[type_oid]
        if len(data) != struct.calcsize(fmt):
            return None
        return str(struct.unpack(fmt, data)[0])
    if type_oid in _TEXT_TYPES:
        return data.decode("utf-8")
    if type_oid == 3802 and data[:1] == b"\x01":  # jsonb: a version byte, then text
        return data[1:].decode("utf-8")
    if type_oid == 16 and len(data) == 1:
        return "true" if data[0] else "false"
    if type_oid == 2950 and len(data) == 16:
        return str(uuid.UUID(bytes=data))
    if type_oid == 17:
        return "\\x" + data.hex()
    if type_oid == 1082 and len(data) == 4:
        return (_POSTGRES_EPOCH_DATE + timedelta(days=struct.unpack(">i", data)[0])).isoformat()
    if type_oid in (1114, 1184) and len(data) == 8:
        moment = _POSTGRES_EPOCH + timedelta(microseconds=struct.unpack(">q", data)[0])
        if type_oid == 1184:
            return moment.replace(tzinfo=UTC).isoformat()
        return moment.isoformat()
    return None
