"""DataDir: layout, owner-only permissions, and keys created once and shared."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from bastion.datadir import DataDir
from bastion.errors import ConfigError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_layout(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "d")
    assert data.users_file == tmp_path / "d" / "users.yaml"
    assert data.keys_dir == tmp_path / "d" / "keys"
    assert data.tls_dir == tmp_path / "d" / "tls"
    assert data.logs_dir == tmp_path / "d" / "logs"
    assert not data.path.exists()  # nothing happens until asked


def test_ensure_creates_a_private_directory(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "a" / "b").ensure()
    assert data.path.is_dir()
    assert mode(data.path) == 0o700
    assert data.ensure() is data


def test_ensure_tightens_an_existing_directory(tmp_path: Path) -> None:
    path = tmp_path / "d"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    DataDir(path).ensure()
    assert mode(path) == 0o700


def test_ensure_reports_failures_as_config_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot create data directory"):
        DataDir(blocker / "d").ensure()


def test_secret_is_created_once_then_reused(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "d")
    first = data.secret("scram-fake")
    assert len(first) == 32
    assert data.secret("scram-fake") == first
    assert DataDir(tmp_path / "d").secret("scram-fake") == first
    assert data.secret("cancel", size=64) != first
    assert len(data.secret("cancel", size=64)) == 64
    key_file = data.keys_dir / "scram-fake"
    assert key_file.read_bytes() == first
    assert mode(key_file) == 0o600
    assert mode(data.keys_dir) == 0o700
    assert sorted(p.name for p in data.keys_dir.iterdir()) == ["cancel", "scram-fake"]


def test_secret_repr_and_errors_never_show_the_key(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "d")
    key = data.secret("k")
    assert key.hex() not in repr(data)
    (data.keys_dir / "k").chmod(0o644)
    with pytest.raises(ConfigError, match="readable by other users") as caught:
        data.secret("k")
    assert key.hex() not in str(caught.value)


def test_secret_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "d")
    data.secret("k", size=32)
    with pytest.raises(ConfigError, match="holds 32 bytes, expected 16"):
        data.secret("k", size=16)


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "x" * 80])
def test_secret_names_cannot_escape_the_keys_dir(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        DataDir(tmp_path / "d").secret(name)


@pytest.mark.parametrize("size", [0, 8, 15, 1025])
def test_secret_sizes(tmp_path: Path, size: int) -> None:
    with pytest.raises(ValueError):
        DataDir(tmp_path / "d").secret("k", size=size)


def test_secret_does_not_follow_symlinks(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "d")
    data.secret("real")
    target = tmp_path / "elsewhere"
    target.write_bytes(b"x" * 32)
    target.chmod(0o600)
    (data.keys_dir / "link").symlink_to(target)
    with pytest.raises(ConfigError):
        data.secret("link")


def test_racing_processes_get_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "d"
    barrier = threading.Barrier(16)
    results: list[bytes] = []
    lock = threading.Lock()

    def grab() -> None:
        barrier.wait()
        key = DataDir(path).secret("shared")
        with lock:
            results.append(key)

    threads = [threading.Thread(target=grab) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 16
    assert len(set(results)) == 1
    assert [p.name for p in (path / "keys").iterdir()] == ["shared"]
