"""The users file: password users kept in the data dir by `bastion users add`.

It owns one YAML file of the form `users: [{name, kind, groups, scram}, ...]`: reading and
validating it, and changing it safely. Every change is made under an exclusive lock, written to
a temporary file, synced and renamed over the old one with owner-only permissions, so readers
never see half a file and concurrent changes are never lost. Loading the file into a running
directory of identities is the caller's business.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bastion.errors import ConfigError
from bastion.identity.records import UserRecord

MAX_FILE_SIZE = 16 * 1024 * 1024


class UsersFile:
    """The YAML users file at `path` (which need not exist yet)."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)

    def __repr__(self) -> str:
        return f"UsersFile({str(self._path)!r})"

    @property
    def path(self) -> Path:
        return self._path

    @property
    def lock_path(self) -> Path:
        return self._path.with_name(self._path.name + ".lock")

    def load(self) -> list[UserRecord]:
        """The users in the file, in file order; a missing file holds no users."""
        try:
            with self._path.open("rb") as handle:
                raw = handle.read(MAX_FILE_SIZE + 1)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ConfigError(f"cannot read users file {self._path}: {exc.strerror}") from exc
        if len(raw) > MAX_FILE_SIZE:
            raise ConfigError(f"users file {self._path} is larger than {MAX_FILE_SIZE} bytes")
        return self._parse(raw)

    def add(self, record: UserRecord, *, replace: bool = False) -> None:
        """Add `record`; with `replace`, a user of the same name is overwritten in place."""
        with self._locked():
            users = self.load()
            for index, existing in enumerate(users):
                if existing.name == record.name:
                    if not replace:
                        raise ConfigError(
                            f"user {record.name!r} already exists in {self._path}",
                            hint="pass --replace to change its password, groups or kind",
                        )
                    users[index] = record
                    break
            else:
                users.append(record)
            self._write(users)

    def remove(self, name: str) -> bool:
        """Remove the user called `name`; False when there was none."""
        if not self._path.exists():
            return False  # nothing to remove, and no reason to create a lock file
        with self._locked():
            users = self.load()
            kept = [user for user in users if user.name != name]
            if len(kept) == len(users):
                return False
            self._write(kept)
            return True

    def _parse(self, raw: bytes) -> list[UserRecord]:
        try:
            document = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            # The problem's position only: YAML's own message quotes the file, verifiers too.
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{self._path}: invalid YAML{where}") from None
        if document is None:
            return []
        if not isinstance(document, dict):
            raise ConfigError(f"{self._path}: expected a mapping with a `users` list")
        unknown = sorted(str(key) for key in document if key != "users")
        if unknown:
            raise ConfigError(f"{self._path}: unknown key {unknown[0]!r} (only `users` allowed)")
        entries = document.get("users")
        if entries is None:
            return []
        if not isinstance(entries, list):
            raise ConfigError(f"{self._path}: users: expected a list")
        users: list[UserRecord] = []
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            record = self._validate(index, entry)
            if record.name in seen:
                raise ConfigError(
                    f"{self._path}: users[{index}].name: user {record.name!r} appears twice"
                )
            seen.add(record.name)
            users.append(record)
        return users

    def _validate(self, index: int, entry: Any) -> UserRecord:
        try:
            return UserRecord.model_validate(entry)
        except ValidationError as exc:
            error = exc.errors(include_url=False, include_input=False)[0]
            location = "".join(
                f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
            )
            raise ConfigError(f"{self._path}: users[{index}]{location}: {error['msg']}") from None

    def _write(self, users: list[UserRecord]) -> None:
        document = {"users": [_to_plain(user) for user in users]}
        text = yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
        directory = self._path.parent
        try:
            fd, temp_name = tempfile.mkstemp(
                dir=directory, prefix=f".{self._path.name}.", suffix=".tmp"
            )
        except OSError as exc:
            raise ConfigError(f"cannot write users file {self._path}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, self._path)
            _fsync_dir(directory)
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise ConfigError(f"cannot write users file {self._path}: {exc.strerror}") from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot lock users file {self._path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def _to_plain(user: UserRecord) -> dict[str, Any]:
    return {
        "name": user.name,
        "kind": user.kind.value,
        "groups": list(user.groups),
        "scram": user.scram,
    }


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
