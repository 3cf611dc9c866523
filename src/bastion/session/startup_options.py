"""The startup `options` parameter: split it, take out Bastion's own settings, rebuild it.

PostgreSQL reads `options` as command-line switches (`-c name=value` or `--name=value`),
separated by spaces, with backslash escaping a space or a backslash. Settings named `bastion.*`
are addressed to Bastion (for example `bastion.auth=token`) and are never forwarded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bastion.errors import ProtocolViolation

BASTION_PREFIX = "bastion."


@dataclass(frozen=True, slots=True)
class StartupOptions:
    bastion: dict[str, str] = field(default_factory=dict)
    forwarded: str = ""
    # The settings the forwarded switches make, by lower-case name with `-` as `_`.
    settings: dict[str, str] = field(default_factory=dict)


def split_options(options: str) -> list[str]:
    words: list[str] = []
    current: list[str] = []
    escaped = False
    for char in options:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char.isspace():
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    if current:
        words.append("".join(current))
    return words


def _escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace(" ", "\\ ")


def parse_options(options: str) -> StartupOptions:
    """Separate `bastion.*` settings from the switches forwarded to the server."""
    words = split_options(options)
    ours: dict[str, str] = {}
    settings: dict[str, str] = {}
    kept: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-c":
            if i + 1 >= len(words):
                raise ProtocolViolation("startup option -c without a setting")
            setting, i = words[i + 1], i + 2
            pair = [word, setting]
        elif (word.startswith("-c") and len(word) > 2) or word.startswith("--"):
            setting, i = word[2:], i + 1
            pair = [word]
        else:
            kept.append(word)
            i += 1
            continue
        name, sep, value = setting.partition("=")
        key = name.lower().replace("-", "_")
        if key.startswith(BASTION_PREFIX):
            if not sep:
                raise ProtocolViolation(f"startup option {name} needs a value")
            ours[key] = value
        else:
            settings[key] = value
            kept.extend(pair)
    forwarded = " ".join(_escape(w) for w in kept)
    return StartupOptions(bastion=ours, forwarded=forwarded, settings=settings)
