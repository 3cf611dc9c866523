"""DataRow bodies and RowDescription columns built by hand with `struct` for the plan tests."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from bastion.wire.postgres.backend import Column


def datarow(values: Sequence[bytes | str | None]) -> bytes:
    """A DataRow body: int16 field count, then int32 length (-1: NULL) and bytes per field."""
    out = [struct.pack("!h", len(values))]
    for value in values:
        if value is None:
            out.append(struct.pack("!i", -1))
        else:
            raw = value.encode() if isinstance(value, str) else value
            out.append(struct.pack("!i", len(raw)) + raw)
    return b"".join(out)


def fields(body: bytes) -> list[bytes | None]:
    """Split a DataRow body back into its field values (an independent reader for checks)."""
    (count,) = struct.unpack_from("!h", body, 0)
    position = 2
    out: list[bytes | None] = []
    for _ in range(count):
        (length,) = struct.unpack_from("!i", body, position)
        position += 4
        if length < 0:
            out.append(None)
        else:
            out.append(body[position : position + length])
            position += length
    assert position == len(body), "trailing bytes after the last field"
    return out


def column(
    type_oid: int,
    *,
    name: str = "c",
    table_oid: int = 0,
    attnum: int = 0,
    type_modifier: int = -1,
    format: int = 0,
) -> Column:
    return Column(
        name=name,
        table_oid=table_oid,
        attnum=attnum,
        type_oid=type_oid,
        type_size=-1,
        type_modifier=type_modifier,
        format=format,
    )
