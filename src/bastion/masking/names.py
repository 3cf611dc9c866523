"""Classification of a column by its name, its table's name and its type.

This module owns the name rules: `classify_name("customer_email", TEXT)` says the column holds
e-mail addresses, and why. Names are split into words whatever their style (snake_case,
camelCase, kebab-case, `EMailAddress`, `e_mail`); a rule is a phrase of words (`date of birth`)
that also matches its words glued together (`dateofbirth`). When several phrases occur, the last
one wins, as the last noun of an English compound names what it is (`email_token` is a token,
`token_email` an e-mail). Words after it that describe something else make the name harmless
(`email_verified`, `token_count`, `password_changed_at`), as do words before it such as `is_`,
`has_`, `num_`. Finally the type must be able to hold the class: a timestamp is never an e-mail,
an integer never a token. It does not look at values (detectors do) or at configuration labels
(the classifier does).

Decided on purpose: `city`, `country`, `state` and `username` are not sensitive on their own;
a bare `name` is a person's name only in a table of people (customers, users, employees...);
`card_last4` is not a card number (PCI DSS allows showing the last four digits).
"""

from __future__ import annotations

from typing import NamedTuple

from bastion.masking import name_rules as rules
from bastion.masking import pgtypes
from bastion.masking.classes import SensitiveClass

_C = SensitiveClass


class NameMatch(NamedTuple):
    sensitive_class: SensitiveClass
    reason: str


def _build_phrases() -> dict[str, tuple[SensitiveClass | None, str]]:
    phrases: dict[str, tuple[SensitiveClass | None, str]] = {}
    for sensitive_class, spellings in rules.RULES.items():
        for phrase in spellings:
            key = phrase.replace(" ", "")
            if key in phrases and phrases[key][0] != sensitive_class:
                raise AssertionError(f"name rule {phrase!r} is given two classes")
            phrases[key] = (sensitive_class, phrase)
    return phrases


_PHRASES = _build_phrases()
_LONGEST_PHRASE_WORDS = 5


def split_words(name: str) -> list[str]:
    """`customerEMailAddress_2` -> ["customer", "e", "mail", "address", "2"], lower-cased."""
    words: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            words.append("".join(current).lower())
            current.clear()

    previous = ""
    for index, char in enumerate(name):
        if not char.isalnum():
            flush()
        else:
            if current:
                following = name[index + 1] if index + 1 < len(name) else ""
                if (
                    (char.isupper() and previous.islower())
                    or (char.isdigit() != previous.isdigit())
                    or (char.isupper() and previous.isupper() and following.islower())
                ):
                    flush()
            current.append(char)
        previous = char
    flush()
    return words


def type_family(type_oid: int | None) -> str | None:
    """The family `rules.FAMILIES` speaks of; None when the type is not known (name decides)."""
    if type_oid is None:
        return None
    if type_oid in pgtypes.INTEGER_TYPES:
        return "int"
    if type_oid == pgtypes.NUMERIC:
        return "numeric"
    if type_oid == pgtypes.DATE:
        return "date"
    if type_oid in (pgtypes.TIMESTAMP, pgtypes.TIMESTAMPTZ):
        return "timestamp"
    if type_oid in (pgtypes.INET, pgtypes.CIDR):
        return "inet"
    if type_oid == pgtypes.BYTEA:
        return "bytea"
    if pgtypes.is_json(type_oid):
        return "json"
    if type_oid == pgtypes.UUID:
        return "uuid"
    if pgtypes.can_hold_text(type_oid):
        return "text"
    return "other"


def _find_phrases(words: list[str]) -> list[tuple[int, int, SensitiveClass | None, str]]:
    found: list[tuple[int, int, SensitiveClass | None, str]] = []
    for start in range(len(words)):
        for end in range(start + 1, min(len(words), start + _LONGEST_PHRASE_WORDS) + 1):
            rule = _PHRASES.get("".join(words[start:end]))
            if rule is not None:
                found.append((start, end, rule[0], rule[1]))
        word = words[start]
        if not any(f[0] == start and f[1] == start + 1 for f in found):
            for suffix in rules.GLUED_SUFFIXES:
                if len(word) > len(suffix) and word.endswith(suffix):
                    sensitive_class, phrase = _PHRASES[suffix]
                    found.append((start, start + 1, sensitive_class, phrase))
                    break
    return found


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _person_table(table: str | None) -> bool:
    if not table:
        return False
    words = split_words(table)
    if not words:
        return False
    return _singular(words[-1]) in rules.PERSON_TABLES or "_".join(words) in rules.PERSON_TABLES


def classify_name(
    column: str, type_oid: int | None = None, *, table: str | None = None
) -> NameMatch | None:
    """The class a column's name says it holds, with the reason; None when nothing matches.

    `type_oid` (None: unknown) vetoes classes the type cannot hold; `table` gives context for
    a bare `name` column.
    """
    words = split_words(column)
    if not words:
        return None
    family = type_family(type_oid)
    if words == ["name"] and _person_table(table):
        if family not in (None, "text"):
            return None
        return NameMatch(
            _C.PERSON_NAME, f"name rule: person_name ('name' in a table of people, {table!r})"
        )
    found = _find_phrases(words)
    if not found:
        return None
    start, end, sensitive_class, phrase = max(found, key=lambda f: (f[1], f[1] - f[0]))
    if sensitive_class is None:
        return None
    after = words[end:]
    harmless_after = rules.NOT_THE_VALUE_AFTER | rules.NOT_THE_VALUE_AFTER_CLASS.get(
        sensitive_class, frozenset()
    )
    if any(word in harmless_after for word in after):
        return None
    if any(word in rules.NOT_THE_VALUE_BEFORE for word in words[:start]):
        return None
    if family is not None and family not in rules.FAMILIES[sensitive_class]:
        return None
    return NameMatch(
        sensitive_class, f"name rule: {sensitive_class.value} ({phrase!r} in {column!r})"
    )
