"""Secret references: the only way a password reaches Bastion's configuration.

The configuration never holds a secret, only a reference to one: `env:NAME` (an environment
variable) or `file:PATH` (a file holding the secret). This module owns the `SecretRef` type
that enforces this, and `resolve_secret`, which reads the secret when it is needed. Neither
may ever put a secret value, or a rejected value that could be one, into an error message.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

from bastion.errors import ConfigError

ENV_PREFIX = "env:"
FILE_PREFIX = "file:"
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_REF_PATTERN = r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$"

INLINE_SECRET_MESSAGE = "inline secrets are not allowed; use env:NAME or file:PATH"


def check_secret_ref(value: Any) -> str:
    """Accept `env:NAME` or `file:PATH`; reject anything else without repeating it."""
    if not isinstance(value, str):
        raise ValueError(INLINE_SECRET_MESSAGE)
    if value.startswith(ENV_PREFIX):
        if not ENV_NAME_RE.match(value[len(ENV_PREFIX) :]):
            # The text after `env:` is a variable name, not a secret, but a pasted password
            # can land here too, so it is not repeated either.
            raise ValueError(
                "env: must be followed by an environment variable name "
                "(letters, digits and _, not starting with a digit)"
            )
        return value
    if value.startswith(FILE_PREFIX):
        if not value[len(FILE_PREFIX) :]:
            raise ValueError("file: must be followed by the path of the file holding the secret")
        return value
    raise ValueError(INLINE_SECRET_MESSAGE)


SecretRef = Annotated[
    str,
    BeforeValidator(check_secret_ref),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": SECRET_REF_PATTERN,
            "description": "A secret reference: env:NAME or file:PATH. Inline secrets are "
            "rejected.",
        }
    ),
]
"""A string holding `env:NAME` or `file:PATH`, never the secret itself."""


def resolve_secret(ref: str, base_dir: Path | None = None) -> str:
    """Return the secret `ref` points to.

    `env:NAME` reads a non-empty environment variable. `file:PATH` reads a UTF-8 file and drops
    one trailing newline (editors and `echo` add one); a relative PATH is taken from `base_dir`,
    normally the configuration file's directory. Raises ConfigError naming the reference, never
    the value.
    """
    ref = _checked(ref)
    if ref.startswith(ENV_PREFIX):
        return _resolve_env(ref)
    return _resolve_file(ref, base_dir)


def _checked(ref: str) -> str:
    try:
        return check_secret_ref(ref)
    except ValueError as exc:
        raise ConfigError(f"invalid secret reference: {exc}") from None


def _resolve_env(ref: str) -> str:
    name = ref[len(ENV_PREFIX) :]
    value = os.environ.get(name)
    if value is None:
        raise ConfigError(
            f"secret {ref}: environment variable {name} is not set",
            hint=f"set {name} in Bastion's environment",
        )
    if not value:
        raise ConfigError(
            f"secret {ref}: environment variable {name} is empty",
            hint=f"set {name} to the secret in Bastion's environment",
        )
    return value


def _resolve_file(ref: str, base_dir: Path | None) -> str:
    path = Path(ref[len(FILE_PREFIX) :])
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        raw = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"secret {ref}: cannot read {path}: {reason}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # The decode error quotes the offending bytes, which are part of the secret.
        raise ConfigError(f"secret {ref}: {path} is not valid UTF-8") from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise ConfigError(f"secret {ref}: {path} is empty")
    return text
