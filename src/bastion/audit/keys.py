"""The Ed25519 key that signs audit checkpoints, and its public half for verifiers.

By default the key is 32 random bytes (an Ed25519 seed) kept in the data dir as
`keys/audit-signing-key`, created once, atomically, readable by its owner only (`DataDir`
owns that life cycle). A configured path instead holds a PKCS#8 PEM private key, such as one made
by `openssl genpkey -algorithm ed25519`; it is created the same way when missing. Bastion
instances that share one PostgreSQL store should share one key, or the verifier must be given
each instance's public key.

The public key is exported as PEM (SubjectPublicKeyInfo) so records can be verified on another
machine without the private key. A key is named by its `key_id`: the first 16 hex digits of the
SHA-256 of its raw 32-byte public key; checkpoints carry it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bastion.datadir import DataDir
from bastion.errors import ConfigError

SIGNING_KEY_NAME = "audit-signing-key"
_MAX_PEM_SIZE = 16 * 1024


class AuditSigner:
    """Signs checkpoint messages with one Ed25519 private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    def __repr__(self) -> str:
        return f"AuditSigner(key_id={self.key_id!r})"

    def sign(self, message: bytes) -> bytes:
        return self._private_key.sign(message)


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def verify_signature(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def data_dir_key_path(data_dir: DataDir) -> Path:
    return data_dir.keys_dir / SIGNING_KEY_NAME


def data_dir_signer(data_dir: DataDir) -> AuditSigner:
    """The data dir's signing key, created on first use."""
    seed = data_dir.secret(SIGNING_KEY_NAME, size=32)
    return AuditSigner(Ed25519PrivateKey.from_private_bytes(seed))


def file_signer(path: Path, *, create: bool = True) -> AuditSigner:
    """The PEM signing key at `path`, created (mode 0600, atomically) when missing and allowed."""
    data = _read_private_file(path)
    if data is None:
        if not create:
            raise ConfigError(f"audit signing key {path} does not exist")
        _create_pem_key(path)
        data = _read_private_file(path)
        if data is None:  # pragma: no cover - the file was just linked into place
            raise ConfigError(f"audit signing key {path} vanished while being created")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"audit signing key {path} is not an unencrypted PEM private key"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"audit signing key {path} is not an Ed25519 key")
    return AuditSigner(key)


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (as printed by `bastion audit public-key`)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read public key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path} is not an Ed25519 public key")
    return key


def _read_private_file(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read audit signing key {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        if stat.S_IMODE(os.fstat(handle.fileno()).st_mode) & 0o077:
            raise ConfigError(
                f"audit signing key {path} is readable by other users",
                hint=f"run: chmod 600 {path}",
            )
        return handle.read(_MAX_PEM_SIZE)


def _create_pem_key(path: Path) -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        # link(), unlike rename(), fails when the name exists: a racing process's key wins and
        # both processes then read the same one.
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
    except OSError as exc:
        raise ConfigError(f"cannot create audit signing key {path}: {exc.strerror}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
