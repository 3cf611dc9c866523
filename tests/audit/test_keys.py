"""The checkpoint signing key: created once, private, reused; its public half exported."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.audit.keys import (
    data_dir_key_path,
    data_dir_signer,
    file_signer,
    key_id,
    load_public_key,
    public_key_pem,
    verify_signature,
)
from bastion.datadir import DataDir
from bastion.errors import ConfigError


def test_the_data_dir_key_is_created_private_and_then_reused(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "data")
    first = data_dir_signer(data_dir)
    path = data_dir_key_path(data_dir)
    assert path == tmp_path / "data" / "keys" / "audit-signing-key"
    assert path.stat().st_mode & 0o777 == 0o600
    again = data_dir_signer(data_dir)
    assert again.key_id == first.key_id
    message = b"checkpoint"
    assert verify_signature(again.public_key, first.sign(message), message)
    assert not verify_signature(again.public_key, first.sign(message), b"other")


def test_a_configured_key_file_is_pem_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit.pem"
    signer = file_signer(path)
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert path.stat().st_mode & 0o777 == 0o600
    assert file_signer(path).key_id == signer.key_id
    assert not list(path.parent.glob(".*.tmp"))


def test_an_openssl_made_key_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "openssl.pem"
    key = Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    assert file_signer(path, create=False).key_id == key_id(key.public_key())


def test_key_files_that_others_can_read_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.pem"
    file_signer(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by other users"):
        file_signer(path)


def test_wrong_key_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        file_signer(tmp_path / "missing.pem", create=False)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    garbage.chmod(0o600)
    with pytest.raises(ConfigError, match="not an unencrypted PEM"):
        file_signer(garbage)
    ec = tmp_path / "ec.pem"
    ec.write_bytes(
        generate_private_key(SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ec.chmod(0o600)
    with pytest.raises(ConfigError, match="not an Ed25519 key"):
        file_signer(ec)


def test_the_public_key_round_trips_through_pem(tmp_path: Path) -> None:
    signer = file_signer(tmp_path / "audit.pem")
    pem = public_key_pem(signer.public_key)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    exported = tmp_path / "audit.pub"
    exported.write_text(pem)
    assert key_id(load_public_key(exported)) == signer.key_id
    assert len(signer.key_id) == 16
    with pytest.raises(ConfigError, match="not a PEM public key"):
        load_public_key(tmp_path / "audit.pem")


def test_openssl_can_read_the_exported_public_key(tmp_path: Path) -> None:
    exported = tmp_path / "audit.pub"
    exported.write_text(public_key_pem(file_signer(tmp_path / "audit.pem").public_key))
    try:
        result = subprocess.run(
            ["openssl", "pkey", "-pubin", "-in", str(exported), "-noout", "-text"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except FileNotFoundError:
        pytest.skip("openssl is not installed")
    assert result.returncode == 0, result.stderr
    assert "ED25519" in result.stdout
