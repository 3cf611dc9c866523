"""PostgreSQL type OIDs as masking sees them: which types can hold free text, which cannot.

This module owns the built-in type OIDs masking needs (they are fixed across server versions)
and the two families that drive every decision: types whose values can carry text worth
scanning, and types that cannot (numbers, dates, booleans, UUIDs, addresses...). A domain column
is described by its base type in a RowDescription, so domains need no entry here. An OID that is
not listed (an extension type such as citext, an enum, a composite) is assumed able to hold text:
scanning it is the fail-closed choice.
"""

from __future__ import annotations

from typing import Final

BOOL: Final = 16
BYTEA: Final = 17
CHAR: Final = 18  # "char": one byte
NAME: Final = 19
INT8: Final = 20
INT2: Final = 21
INT2VECTOR: Final = 22
INT4: Final = 23
REGPROC: Final = 24
TEXT: Final = 25
OID: Final = 26
TID: Final = 27
XID: Final = 28
CID: Final = 29
OIDVECTOR: Final = 30
JSON: Final = 114
XML: Final = 142
POINT: Final = 600
LSEG: Final = 601
PATH: Final = 602
BOX: Final = 603
POLYGON: Final = 604
LINE: Final = 628
CIDR: Final = 650
FLOAT4: Final = 700
FLOAT8: Final = 701
UNKNOWN: Final = 705
CIRCLE: Final = 718
MACADDR8: Final = 774
MONEY: Final = 790
MACADDR: Final = 829
INET: Final = 869
BPCHAR: Final = 1042
VARCHAR: Final = 1043
DATE: Final = 1082
TIME: Final = 1083
TIMESTAMP: Final = 1114
TIMESTAMPTZ: Final = 1184
INTERVAL: Final = 1186
TIMETZ: Final = 1266
BIT: Final = 1560
VARBIT: Final = 1562
NUMERIC: Final = 1700
REGPROCEDURE: Final = 2202
REGOPER: Final = 2203
REGOPERATOR: Final = 2204
REGCLASS: Final = 2205
REGTYPE: Final = 2206
RECORD: Final = 2249
UUID: Final = 2950
PG_LSN: Final = 3220
TSVECTOR: Final = 3614
TSQUERY: Final = 3615
JSONB: Final = 3802
INT4RANGE: Final = 3904
NUMRANGE: Final = 3906
TSRANGE: Final = 3908
TSTZRANGE: Final = 3910
DATERANGE: Final = 3912
INT8RANGE: Final = 3926
JSONPATH: Final = 4072
XID8: Final = 5069

# Array type -> element type, for the arrays masking may have to replace by an empty array
# (the binary array format names its element type, and the server checks it).
ARRAY_ELEMENT: Final[dict[int, int]] = {
    1000: BOOL,
    1001: BYTEA,
    1002: CHAR,
    1003: NAME,
    1005: INT2,
    1007: INT4,
    1009: TEXT,
    1014: BPCHAR,
    1015: VARCHAR,
    1016: INT8,
    1021: FLOAT4,
    1022: FLOAT8,
    1028: OID,
    1041: INET,
    651: CIDR,
    1115: TIMESTAMP,
    1182: DATE,
    1183: TIME,
    1185: TIMESTAMPTZ,
    1187: INTERVAL,
    1231: NUMERIC,
    1270: TIMETZ,
    2951: UUID,
    199: JSON,
    3807: JSONB,
    143: XML,
}

INTEGER_TYPES: Final = frozenset({INT2, INT4, INT8})
DATETIME_TYPES: Final = frozenset({DATE, TIME, TIMETZ, TIMESTAMP, TIMESTAMPTZ, INTERVAL})
# Types whose text and binary forms are both the character string itself.
STRING_TYPES: Final = frozenset({TEXT, VARCHAR, BPCHAR, NAME, UNKNOWN, XML})

# Never scanned: their values cannot carry free text (ARCHITECTURE.md §4, "skip what cannot
# hold secrets"). Arrays and ranges of these are listed too.
NOT_TEXTUAL: Final = frozenset(
    {
        BOOL,
        BYTEA,  # text form is hex; a secret stored as bytea is a column to label, not to scan
        INT2,
        INT4,
        INT8,
        INT2VECTOR,
        OIDVECTOR,
        OID,
        REGPROC,
        REGPROCEDURE,
        REGOPER,
        REGOPERATOR,
        REGCLASS,
        REGTYPE,
        TID,
        XID,
        XID8,
        CID,
        FLOAT4,
        FLOAT8,
        NUMERIC,
        MONEY,
        DATE,
        TIME,
        TIMETZ,
        TIMESTAMP,
        TIMESTAMPTZ,
        INTERVAL,
        UUID,
        INET,
        CIDR,
        MACADDR,
        MACADDR8,
        BIT,
        VARBIT,
        PG_LSN,
        POINT,
        LSEG,
        PATH,
        BOX,
        POLYGON,
        LINE,
        CIRCLE,
        INT4RANGE,
        INT8RANGE,
        NUMRANGE,
        TSRANGE,
        TSTZRANGE,
        DATERANGE,
    }
    | {array for array, element in ARRAY_ELEMENT.items() if element not in STRING_TYPES}
    - {199, 3807, 143}  # json[], jsonb[], xml[] hold text
)

# Type names (as pg_type.typname spells them) for the column classifier, which sees catalog
# rows rather than OIDs only.
TYPE_NAMES: Final[dict[str, int]] = {
    "bool": BOOL,
    "bytea": BYTEA,
    "char": CHAR,
    "name": NAME,
    "int8": INT8,
    "int2": INT2,
    "int4": INT4,
    "text": TEXT,
    "oid": OID,
    "json": JSON,
    "xml": XML,
    "float4": FLOAT4,
    "float8": FLOAT8,
    "money": MONEY,
    "inet": INET,
    "cidr": CIDR,
    "bpchar": BPCHAR,
    "varchar": VARCHAR,
    "date": DATE,
    "time": TIME,
    "timestamp": TIMESTAMP,
    "timestamptz": TIMESTAMPTZ,
    "interval": INTERVAL,
    "timetz": TIMETZ,
    "numeric": NUMERIC,
    "uuid": UUID,
    "jsonb": JSONB,
}


def can_hold_text(type_oid: int) -> bool:
    """Whether values of this type may carry free text worth scanning (unknown types may)."""
    return type_oid not in NOT_TEXTUAL


def is_json(type_oid: int) -> bool:
    return type_oid in (JSON, JSONB)
