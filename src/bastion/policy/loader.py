"""Turns a policy file (or a mapping built in code) into a validated `Policy`.

Reads YAML the way the configuration loader does (YAML 1.2 booleans, duplicate keys
rejected, line numbers kept) and words errors the same way: one line per problem, starting
with the file name, then the path of the bad key, what is wrong, and its line.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from bastion.config.loader import (
    MAX_REPORTED_ERRORS,
    _format_loc,
    _line_of,
    read_yaml,
)
from bastion.errors import ConfigError
from bastion.policy.model import Policy


def load_policy(path: Path) -> Policy:
    """Read and validate the policy file at `path`; raise ConfigError if it is invalid."""
    data, lines = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with at least `version: 1`")
    return _validate(data, str(path), lines)


def policy_from_mapping(data: Mapping[str, Any], source: str = "<memory>") -> Policy:
    """Validate a policy built in code, as if it had been read from a file named `source`."""
    return _validate(data, source, {})


def _validate(
    data: Mapping[str, Any], source: str, lines: dict[int, dict[Hashable, int]]
) -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(error, data, lines) for error in exc.errors()]
        if len(problems) > MAX_REPORTED_ERRORS:
            hidden = len(problems) - MAX_REPORTED_ERRORS
            problems = [*problems[:MAX_REPORTED_ERRORS], f"... and {hidden} more problems"]
        raise ConfigError("\n".join(f"{source}: {problem}" for problem in problems)) from None


def _describe(
    error: ErrorDetails, data: Mapping[str, Any], lines: dict[int, dict[Hashable, int]]
) -> str:
    loc = tuple(part for part in error["loc"] if part != "[key]")
    line = _line_of(loc, data, lines)
    path = _format_loc(loc)
    message = _message(error, loc)
    text = f"{path}: {message}" if path else message
    return f"{text} (line {line})" if line is not None else text


def _message(error: ErrorDetails, loc: tuple[str | int, ...]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        known = list(model.model_fields) if model is not None else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        return f"unknown key; did you mean {close[0]!r}?" if close else "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message.replace("Input should be", "must be", 1)


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model whose keys live at `loc`, following fields, list items and dict values."""
    annotation: Any = Policy
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return None
            annotation = field.annotation
        elif typing.get_origin(annotation) is list:
            annotation = typing.get_args(annotation)[0]
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        else:
            return None
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _unwrap(annotation: Any) -> Any:
    """Strip Optional and Annotated wrappers."""
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        is_union = typing.get_origin(annotation) in (typing.Union, type(int | None))
        if is_union and len(members) == 1:
            annotation = members[0]
            continue
        return annotation
