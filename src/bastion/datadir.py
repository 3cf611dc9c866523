"""The data dir: where Bastion keeps its local state, and the random keys it generates itself.

`DataDir` knows the layout (users file, keys, TLS material, logs) and creates the directory and
its key files with owner-only permissions. It owns the key files' life cycle: a key is created
once, atomically, and then only read, so every process sharing the data dir uses the same key.
It does not interpret what the other files contain.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from pathlib import Path

from bastion.errors import ConfigError

_KEY_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
MIN_SECRET_SIZE = 16
MAX_SECRET_SIZE = 1024


class DataDir:
    """A data dir at `path`; nothing is created until `ensure()` or `secret()`."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)

    def __repr__(self) -> str:
        return f"DataDir({str(self._path)!r})"

    @property
    def path(self) -> Path:
        return self._path

    @property
    def users_file(self) -> Path:
        """Password users added with `bastion users add`."""
        return self._path / "users.yaml"

    @property
    def keys_dir(self) -> Path:
        """Random keys Bastion generates for itself (see `secret`)."""
        return self._path / "keys"

    @property
    def tls_dir(self) -> Path:
        return self._path / "tls"

    @property
    def logs_dir(self) -> Path:
        return self._path / "logs"

    def ensure(self) -> DataDir:
        """Create the directory (and parents) if needed, readable by its owner only."""
        _make_private_dir(self._path)
        return self

    def secret(self, name: str, size: int = 32) -> bytes:
        """The key called `name`: read from keys_dir, or created there with `size` random bytes.

        Two processes racing to create the same key end up with the same one: the file appears
        under its final name only once complete, and never replaces an existing key.
        """
        if not _KEY_NAME_RE.match(name):
            raise ValueError("key names are letters, digits, '_', '.' and '-'")
        if not MIN_SECRET_SIZE <= size <= MAX_SECRET_SIZE:
            raise ValueError(f"key size must be {MIN_SECRET_SIZE} to {MAX_SECRET_SIZE} bytes")
        self.ensure()
        _make_private_dir(self.keys_dir)
        path = self.keys_dir / name
        key = _read_key(path, size)
        if key is not None:
            return key
        _create_key(path, secrets.token_bytes(size))
        key = _read_key(path, size)
        if key is None:  # pragma: no cover - the file was just linked into place
            raise ConfigError(f"key file {path} vanished while being created")
        return key


def _make_private_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = stat.S_IMODE(path.stat().st_mode)
        # mkdir's mode is filtered by the umask and ignored for an existing directory.
        if mode & 0o077:
            path.chmod(0o700)
    except OSError as exc:
        raise ConfigError(f"cannot create data directory {path}: {exc.strerror}") from exc


def _read_key(path: Path, size: int) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise ConfigError(
                f"key file {path} is readable by other users",
                hint=f"replace the key (delete it) or run: chmod 600 {path}",
            )
        key = handle.read(MAX_SECRET_SIZE + 1)
    if len(key) != size:
        raise ConfigError(f"key file {path} holds {len(key)} bytes, expected {size}")
    return key


def _create_key(path: Path, key: bytes) -> None:
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            # link(), unlike rename(), fails when the name exists: a key is never replaced.
            os.link(temp, path)
        except FileExistsError:
            return
        _fsync_dir(path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot create key file {path}: {exc.strerror}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
