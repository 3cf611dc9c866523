"""Masking the rows of `COPY ... TO STDOUT`, in text, csv and binary format.

A COPY's rows carry no RowDescription: the server only says how many columns there are and
whether they are text or binary (CopyOutResponse). Their origins come from the statement
instead (`copy_columns`): `COPY t [(cols)]` copies the columns of t, found in the target's
catalog; `COPY (query)` copies the query's outputs, where a plain column of a base table is
found in the catalog and anything else is a computed column (typed text, since its type is not
known, and tainted by what its expression reads).

`CopyOutRewriter` then applies an ordinary row mask plan to each row. In text and csv format
the server sends one row per CopyData message; the row is turned into a DataRow body of text
values, masked, and written back in the same format. A binary COPY's tuples already have the
layout of a DataRow body; the stream starts with a signature and header (sent in the same
message as the first tuple) and ends with a trailer (-1). Anything that does not parse as
that is a ProtocolViolation: the session closes rather than relay a row it could not inspect.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Final, NamedTuple, Protocol

from bastion.errors import ProtocolViolation
from bastion.masking import pgtypes
from bastion.masking.classifier import CatalogColumn
from bastion.masking.copy_rows import CopyFormat, data_row_to_row, row_to_data_row
from bastion.masking.plan import RowMaskPlan
from bastion.sql.statement import CopyInfo, OutputColumn, StatementInfo, TableRef

_INT16 = struct.Struct("!h")
_INT32 = struct.Struct("!i")
SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00"
_HEADER_FIXED: Final = len(SIGNATURE) + 8  # signature, flags, header extension length
_HAS_OIDS: Final = 1 << 16


class CopyColumn(NamedTuple):
    """A COPY column as a mask plan sees it (the wire's RowDescription fields it needs)."""

    name: str
    table_oid: int
    attnum: int
    type_oid: int
    type_modifier: int
    format: int


class NamedRelation(Protocol):
    @property
    def oid(self) -> int: ...

    @property
    def name(self) -> str: ...


class RelationCatalog(Protocol):
    """What resolving a COPY's columns needs of a target's catalog (bastion.catalog's
    Catalog satisfies it)."""

    @property
    def relations(self) -> Mapping[int, NamedRelation]: ...

    def find(self, schema: str, name: str) -> NamedRelation | None: ...

    def columns_of(self, oid: int) -> Sequence[CatalogColumn]: ...


def decode_copy_response(body: bytes | memoryview) -> tuple[int, tuple[int, ...]]:
    """CopyOutResponse: the overall format (0 text, 1 binary) and each column's format."""
    try:
        overall = body[0]
        count = _INT16.unpack_from(body, 1)[0]
        formats = struct.unpack_from(f"!{count}h", body, 3) if count > 0 else ()
    except (IndexError, struct.error) as error:
        raise ProtocolViolation("a CopyOutResponse is shorter than it says") from error
    if count < 0 or len(body) != 3 + 2 * count:
        raise ProtocolViolation("a CopyOutResponse has a wrong length")
    return overall, tuple(formats)


def copy_format(copy: CopyInfo) -> CopyFormat | None:
    """The text or csv format of a COPY's rows; None for binary."""
    if copy.format == "binary":
        return None
    return CopyFormat.of(
        copy.format,
        copy.delimiter,
        copy.null,
        copy.quote,
        copy.escape,
        copy.force_quote,
        copy.encoding or "utf-8",
    )


def copy_columns(
    statement: StatementInfo, find: TableFinder, binary: bool
) -> list[CopyColumn] | None:
    """The columns a COPY sends, origins included; None when they cannot all be told (a star
    over a table the catalog does not have, or a statement without known outputs)."""
    outputs = statement.outputs
    if outputs is None:
        return None
    columns: list[CopyColumn] = []
    code = 1 if binary else 0
    for output in outputs:
        resolved = _resolved(output, find)
        if resolved is None:
            if output.star:
                return None
            # Computed: its type is not known here, so its text form is what gets masked.
            name = output.refs[0].name if output.plain and output.refs else "?column?"
            columns.append(CopyColumn(name, 0, 0, pgtypes.TEXT, -1, code))
            continue
        columns.extend(
            CopyColumn(c.column, c.table_oid, c.attnum, c.type_oid, -1, code) for c in resolved
        )
    return columns


def computed_outputs(statement: StatementInfo, find: TableFinder) -> bool:
    """Whether any column of the COPY is computed (or cannot be resolved at all)."""
    outputs = statement.outputs
    if outputs is None:
        return True
    return any(_resolved(output, find) is None for output in outputs)


class TableFinder:
    """Finds a relation of a statement in the catalog: by schema and name when the statement
    qualifies it, else by name when exactly one schema has it (search_path is not followed:
    an ambiguous name is not resolved)."""

    def __init__(self, catalog: RelationCatalog) -> None:
        by_name: dict[str, list[int]] = {}
        for oid, relation in catalog.relations.items():
            by_name.setdefault(relation.name, []).append(oid)
        self._by_name = {name: oids[0] for name, oids in by_name.items() if len(oids) == 1}
        self._catalog = catalog

    def columns(self, table: TableRef) -> Sequence[CatalogColumn] | None:
        if table.schema:
            relation = self._catalog.find(table.schema, table.name)
            oid = relation.oid if relation is not None else None
        else:
            oid = self._by_name.get(table.name)
        if oid is None:
            return None
        return self._catalog.columns_of(oid) or None


def _resolved(output: OutputColumn, find: TableFinder) -> Sequence[CatalogColumn] | None:
    if output.opaque or not output.refs:
        return None
    ref = output.refs[0]
    if ref.table is None or not (output.star or output.plain):
        return None
    columns = find.columns(ref.table)
    if columns is None:
        return None
    if output.star:
        return columns
    for column in columns:
        if column.column == ref.name:
            return (column,)
    return None


class CopyOutRewriter:
    """Masks the CopyData messages of one COPY ... TO STDOUT with a row mask plan."""

    def __init__(self, plan: RowMaskPlan, text: CopyFormat | None, *, header: bool) -> None:
        self.plan = plan
        self._text = text
        self._skip_header = header and text is not None
        self._started = False  # binary: the signature and header were read
        self._ended = False  # binary: the trailer was read

    def rewrite(self, data: memoryview) -> bytes:
        """One CopyData body, masked."""
        text = self._text
        if text is None:
            return self._binary(data)
        if self._skip_header:  # HEADER: the column names, not data
            self._skip_header = False
            return bytes(data)
        return data_row_to_row(self.plan.apply(memoryview(row_to_data_row(data, text))), text)

    def finish(self) -> None:
        """The COPY ended (CopyDone): a binary stream must have ended with its trailer."""
        if self._text is None and self._started and not self._ended:
            raise ProtocolViolation("a binary COPY ended without its trailer")

    def _binary(self, data: memoryview) -> bytes:
        if self._ended:
            raise ProtocolViolation("binary COPY data after its trailer")
        position = 0
        pieces: list[bytes | memoryview] = []
        if not self._started:
            position = _binary_header(data)
            pieces.append(data[:position])
            self._started = True
        size = len(data)
        apply = self.plan.apply
        while position < size:
            end = _tuple_end(data, position)
            if end < 0:  # the trailer
                if position + 2 != size:
                    raise ProtocolViolation("binary COPY data after its trailer")
                pieces.append(data[position:])
                self._ended = True
                break
            pieces.append(apply(data[position:end]))
            position = end
        return b"".join(pieces)


def _binary_header(data: memoryview) -> int:
    if len(data) < _HEADER_FIXED or bytes(data[: len(SIGNATURE)]) != SIGNATURE:
        raise ProtocolViolation("a binary COPY does not start with its signature")
    flags: int
    extension: int
    flags, extension = struct.unpack_from("!ii", data, len(SIGNATURE))
    if flags & _HAS_OIDS:
        raise ProtocolViolation("a binary COPY with row OIDs is not supported")
    if extension < 0 or _HEADER_FIXED + extension > len(data):
        raise ProtocolViolation("a binary COPY header is shorter than it says")
    return _HEADER_FIXED + extension


def _tuple_end(data: memoryview, position: int) -> int:
    """Where the tuple at `position` ends; -1 for the trailer. Whole tuples only: a tuple
    split across CopyData messages is refused (servers send one or more whole tuples)."""
    try:
        count = _INT16.unpack_from(data, position)[0]
        if count == -1:
            return -1
        if count < 0:
            raise ProtocolViolation(f"a binary COPY tuple has {count} fields")
        position += 2
        for _ in range(count):
            length = _INT32.unpack_from(data, position)[0]
            if length < -1:
                raise ProtocolViolation(f"a binary COPY field has length {length}")
            position += 4 + max(length, 0)
    except struct.error as error:
        raise ProtocolViolation("a binary COPY tuple is cut short") from error
    if position > len(data):
        raise ProtocolViolation("a binary COPY tuple is cut short")
    return position
