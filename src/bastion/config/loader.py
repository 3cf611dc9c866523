"""Turns a YAML file (or a mapping built in code) into a validated `BastionConfig`.

This module owns reading the file, the YAML dialect Bastion accepts and the wording of every
configuration error: one line per problem, starting with the file name, then the dotted path
of the bad key and what is wrong. It never resolves secrets and never puts a value from the
file into a message, since a misplaced password could be that value.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Generator, Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from bastion.config.model import BastionConfig, SourceContext
from bastion.errors import ConfigError

MAX_REPORTED_ERRORS = 20
_BOOL_TAG = "tag:yaml.org,2002:bool"
_PLAIN_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that rejects duplicate keys and remembers the line of every key and item."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        # id() of each constructed dict or list -> its keys or indexes -> 1-based line.
        self.lines: dict[int, dict[Hashable, int]] = {}

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[Hashable, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # the base class reports unhashable keys itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first defined at line {seen[key]})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        # Merge keys (`<<: *anchor`) were skipped above: a key set next to a merge overrides
        # the merged one, as YAML intends, and is not a duplicate.
        return super().construct_mapping(node, deep=deep)

    def construct_positioned_map(
        self, node: yaml.MappingNode
    ) -> Generator[dict[Hashable, Any], None, None]:
        data: dict[Hashable, Any] = {}
        yield data
        data.update(self.construct_mapping(node))
        lines: dict[Hashable, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node)
            if isinstance(key, Hashable):
                lines[key] = key_node.start_mark.line + 1
        self.lines[id(data)] = lines

    def construct_positioned_seq(self, node: yaml.SequenceNode) -> Generator[list[Any], None, None]:
        data: list[Any] = []
        yield data
        data.extend(self.construct_sequence(node))
        self.lines[id(data)] = {i: item.start_mark.line + 1 for i, item in enumerate(node.value)}


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _StrictLoader.construct_positioned_map)
_StrictLoader.add_constructor("tag:yaml.org,2002:seq", _StrictLoader.construct_positioned_seq)

# YAML 1.1 reads on/off/yes/no as booleans, which turns `tls: off` into false. Only the YAML 1.2
# spellings stay booleans; boolean keys still accept the other words, as strings.
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


SourceLines = dict[int, dict[Hashable, int]]


def read_yaml(path: Path) -> tuple[Any, SourceLines]:
    """Read one YAML document the way every Bastion file is read: UTF-8, YAML 1.2 booleans,
    duplicate keys refused, line numbers kept for error messages. Errors are ConfigErrors
    that start with the file name."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not a UTF-8 text file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    loader = _StrictLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(f"{source}: {_describe_yaml_error(exc)}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from exc
    finally:
        loader.dispose()
    return data, loader.lines


def load_config(path: Path) -> BastionConfig:
    """Read and validate the configuration file at `path`; raise ConfigError if it is invalid.

    An empty file is a valid configuration with every default. Relative paths in the file are
    taken from its directory, which the result keeps as `source_dir` for `file:` secrets.
    """
    data, lines = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return _validate(data, str(path), path.absolute().parent, lines)


def config_from_mapping(
    data: Mapping[str, Any], source: str = "<memory>", base_dir: Path | None = None
) -> BastionConfig:
    """Validate a configuration built in code, as if it had been read from a file.

    `source` names it in error messages; relative paths and `file:` secrets are taken from
    `base_dir`, or left relative to the working directory when it is None.
    """
    return _validate(data, source, base_dir, {})


def _validate(
    data: Mapping[str, Any],
    source: str,
    base_dir: Path | None,
    lines: dict[int, dict[Hashable, int]],
) -> BastionConfig:
    try:
        return BastionConfig.model_validate(data, context=SourceContext(source, base_dir))
    except ValidationError as exc:
        problems = [_describe(error, data, lines) for error in exc.errors()]
        if len(problems) > MAX_REPORTED_ERRORS:
            hidden = len(problems) - MAX_REPORTED_ERRORS
            problems = [*problems[:MAX_REPORTED_ERRORS], f"... and {hidden} more problems"]
        # Not chained: pydantic's own text of the error includes the rejected input, which may
        # be a password typed where a secret reference belongs.
        raise ConfigError("\n".join(f"{source}: {problem}" for problem in problems)) from None


def _describe_yaml_error(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem and exc.context_mark is not None:
        problem += f" ({exc.context} at line {exc.context_mark.line + 1})"
    return f"{where}{problem}"


def _describe(
    error: ErrorDetails, data: Mapping[str, Any], lines: dict[int, dict[Hashable, int]]
) -> str:
    loc, _ = _follow(error["loc"])
    message = _message(error)
    line = _line_of(loc, data, lines)
    path = _format_loc(loc)
    text = f"{path}: {message}" if path else message
    return f"{text} (line {line})" if line is not None else text


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        loc = error["loc"]
        _, parent = _follow(loc[:-1])
        model = _model_in(parent)
        known = (
            [field.alias or name for name, field in model.model_fields.items()]
            if model is not None
            else []
        )
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        return f"unknown key; did you mean {close[0]!r}?" if close else "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message.replace("Input should be", "must be", 1)


def _format_loc(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY_RE.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


def _line_of(
    loc: tuple[str | int, ...], data: Any, lines: dict[int, dict[Hashable, int]]
) -> int | None:
    """The line of the deepest part of `loc` present in the file: the bad key or its parent."""
    line = None
    node = data
    for part in loc:
        in_mapping = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_mapping or in_list):
            break
        line = lines.get(id(node), {}).get(part, line)
        node = node[part]
    return line


def _follow(loc: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], Any]:
    """Follow a pydantic error location through the model's types.

    Returns the parts a user wrote in the file and the type found at the end (None once the
    location leaves the model). Tagged unions, such as a listener's tls, add their tag to the
    location, and dict key errors add a `[key]` marker; neither is in the file, so both are
    dropped.
    """
    kept: list[str | int] = []
    annotation: Any = BastionConfig
    for part in loc:
        annotation = _strip_optional(annotation)
        member = _union_tag(annotation, part)
        if member is not None:
            annotation = member
            continue
        if part == "[key]":
            continue
        kept.append(part)
        model = _model_in(annotation)
        origin = typing.get_origin(annotation)
        fields = {f.alias or n: f for n, f in model.model_fields.items()} if model else {}
        if isinstance(part, str) and part in fields:
            annotation = fields[part].annotation
        elif origin in (list, tuple) and isinstance(part, int):
            annotation = typing.get_args(annotation)[0]
        elif origin is dict:
            annotation = typing.get_args(annotation)[1]
        else:
            annotation = None
    return tuple(kept), annotation


def _strip_optional(annotation: Any) -> Any:
    if _is_union(annotation):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _union_tag(annotation: Any, part: str | int) -> Any:
    """The member of a tagged union whose tag is `part`, or None."""
    if not _is_union(annotation):
        return None
    for member in typing.get_args(annotation):
        if typing.get_origin(member) is typing.Annotated:
            inner, *metadata = typing.get_args(member)
            if any(getattr(item, "tag", None) == part for item in metadata):
                return inner
    return None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None
