"""Dates and timestamps in text format, whatever the session's DateStyle.

The server prints dates as the client's DateStyle asks: ISO `1985-03-14`, SQL `03/14/1985`,
German `14.03.1985`, Postgres `Thu Mar 14 10:20:30 1985 PST`. This module owns reading the ISO
form (for `partial` and `hash`) and `redact_template`, which rewrites a value of any style to
1900-01-01 00:00:00 in that same style: day and month both become 01, so the order the style
uses does not matter, and 1900-01-01 was a Monday, so a printed weekday stays true.
"""

from __future__ import annotations

import datetime
from typing import Final

_MONTHS: Final = frozenset(
    {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}
)
_WEEKDAYS: Final = frozenset({"mon", "tue", "wed", "thu", "fri", "sat", "sun"})

REDACTED_DATE: Final = datetime.date(1900, 1, 1)


def is_iso(value: bytes) -> bool:
    """`YYYY-MM-DD...` with a four-digit year of the common era."""
    return (
        len(value) >= 10
        and value[4:5] == b"-"
        and value[7:8] == b"-"
        and value[:4].isdigit()
        and not value.endswith(b" BC")
    )


def parse_iso_date(value: bytes) -> datetime.date | None:
    if not is_iso(value):
        return None
    try:
        return datetime.date.fromisoformat(value[:10].decode("ascii"))
    except ValueError:
        return None


def parse_iso_timestamp(value: bytes) -> datetime.datetime | None:
    """An ISO timestamp, aware when it carries an offset (timestamptz)."""
    if not is_iso(value):
        return None
    try:
        return datetime.datetime.fromisoformat(value.decode("ascii"))
    except ValueError:
        return None


def format_timestamp(moment: datetime.datetime, *, with_zone: bool) -> bytes:
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    return (text + "+00" if with_zone else text).encode("ascii")


def redact_template(value: bytes) -> bytes:
    """The same DateStyle layout with every part replaced: year 1900, day and month 01, time
    00:00:00, month name Jan, weekday Mon; time zones are kept, ` BC` is dropped."""
    text = value.decode("ascii", "replace")
    out: list[str] = []
    position = 0
    in_time = False
    while position < len(text):
        char = text[position]
        end = position + 1
        if char.isdigit():
            while end < len(text) and text[end].isdigit():
                end += 1
            run = text[position:end]
            following = text[end] if end < len(text) else ""
            previous = text[position - 1] if position else ""
            if following == ":":
                in_time = True
            if in_time or previous == ":":
                out.append("0" * len(run))
            elif len(run) >= 3:
                out.append("1900")
            else:
                out.append("01" if len(run) == 2 else "1")
        elif char.isalpha():
            while end < len(text) and text[end].isalpha():
                end += 1
            word = text[position:end]
            lower = word.lower()
            if len(word) == 3 and lower in _MONTHS:
                out.append("Jan")
            elif len(word) == 3 and lower in _WEEKDAYS:
                out.append("Mon")
            elif word == "BC":
                if out and out[-1] == " ":
                    out.pop()
            else:
                out.append(word)
        else:
            if char.isspace():
                in_time = False
            out.append(char)
        position = end
    return "".join(out).encode("ascii")
