"""UsersFile: validation with precise locations, atomic private writes, concurrent changes."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from bastion.errors import ConfigError
from bastion.identity.records import IdentityKind, UserRecord
from bastion.identity.scram import make_verifier
from bastion.identity.users_file import UsersFile

VERIFIER = make_verifier("pw")


def user(name: str, **fields: object) -> UserRecord:
    return UserRecord.model_validate({"name": name, "scram": VERIFIER, **fields})


@pytest.fixture
def users_file(tmp_path: Path) -> UsersFile:
    return UsersFile(tmp_path / "users.yaml")


def test_missing_file_has_no_users(users_file: UsersFile) -> None:
    assert users_file.load() == []


def test_add_then_load_round_trips(users_file: UsersFile) -> None:
    alice = user("alice", groups=["analysts", "oncall"])
    bot = user("etl-bot", kind="service")
    users_file.add(alice)
    users_file.add(bot)
    assert users_file.load() == [alice, bot]
    assert users_file.load()[1].kind is IdentityKind.SERVICE


def test_file_is_private_and_plain_yaml(users_file: UsersFile) -> None:
    users_file.add(user("alice", groups=["analysts"]))
    assert stat.S_IMODE(users_file.path.stat().st_mode) == 0o600
    text = users_file.path.read_text()
    assert text.startswith("users:\n")
    assert "name: alice" in text and VERIFIER in text
    # No temporary files are left behind.
    assert sorted(p.name for p in users_file.path.parent.iterdir()) == [
        "users.yaml",
        "users.yaml.lock",
    ]


def test_duplicate_add_needs_replace(users_file: UsersFile) -> None:
    users_file.add(user("alice"))
    users_file.add(user("bob"))
    with pytest.raises(ConfigError, match="already exists"):
        users_file.add(user("alice", kind="agent"))
    users_file.add(user("alice", kind="agent"), replace=True)
    loaded = users_file.load()
    assert [u.name for u in loaded] == ["alice", "bob"]  # replaced in place
    assert loaded[0].kind is IdentityKind.AGENT


def test_remove(users_file: UsersFile) -> None:
    assert users_file.remove("alice") is False
    users_file.add(user("alice"))
    users_file.add(user("bob"))
    assert users_file.remove("alice") is True
    assert users_file.remove("alice") is False
    assert [u.name for u in users_file.load()] == ["bob"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("users:\n  - name: alice\n", r"users\[0\]\.scram: Field required"),
        (
            "users:\n  - {name: alice, scram: x}\n",
            r"users\[0\]\.scram: .*not a SCRAM-SHA-256 verifier",
        ),
        (
            f"users:\n  - {{name: ok, scram: '{VERIFIER}'}}\n  - {{name: '-bad', scram: x}}\n",
            r"users\[1\]\.name: ",
        ),
        (
            f"users:\n  - {{name: alice, scram: '{VERIFIER}', kind: robot}}\n",
            r"users\[0\]\.kind: ",
        ),
        (
            f"users:\n  - {{name: alice, scram: '{VERIFIER}', password: hunter2}}\n",
            r"users\[0\]\.password: Extra inputs are not permitted",
        ),
        (
            f"users:\n  - {{name: alice, scram: '{VERIFIER}', groups: [a, [b]]}}\n",
            r"users\[0\]\.groups\[1\]: ",
        ),
        (
            f"users:\n  - {{name: a, scram: '{VERIFIER}'}}\n  - {{name: a, scram: '{VERIFIER}'}}\n",
            r"users\[1\]\.name: user 'a' appears twice",
        ),
        ("users: {alice: x}\n", r"users: expected a list"),
        ("- alice\n", r"expected a mapping"),
        ("people: []\n", r"unknown key 'people'"),
        ("users: [\n", r"invalid YAML at line 2"),
    ],
)
def test_invalid_files_name_the_file_and_the_field(
    users_file: UsersFile, content: str, expected: str
) -> None:
    users_file.path.write_text(content)
    with pytest.raises(ConfigError, match=expected) as caught:
        users_file.load()
    assert str(users_file.path) in caught.value.message
    assert "hunter2" not in caught.value.message


def test_yaml_errors_do_not_quote_the_file(users_file: UsersFile) -> None:
    users_file.path.write_text(f"users:\n  - name: alice\n    scram: '{VERIFIER}\n  - [\n")
    with pytest.raises(ConfigError) as caught:
        users_file.load()
    assert VERIFIER.split("$")[2] not in caught.value.message


def test_empty_file_has_no_users(users_file: UsersFile) -> None:
    users_file.path.write_text("")
    assert users_file.load() == []
    users_file.path.write_text("users:\n")
    assert users_file.load() == []


def test_a_failed_write_leaves_the_old_file(
    users_file: UsersFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    users_file.add(user("alice"))
    before = users_file.path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ConfigError, match="No space left"):
        users_file.add(user("bob"))
    assert users_file.path.read_bytes() == before
    assert not [p for p in users_file.path.parent.iterdir() if p.suffix == ".tmp"]


def test_concurrent_adds_are_all_kept(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    names = [f"user{i}" for i in range(24)]
    barrier = threading.Barrier(len(names))
    errors: list[BaseException] = []

    def add(name: str) -> None:
        try:
            barrier.wait()
            UsersFile(path).add(user(name))  # separate instances, separate lock descriptors
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(u.name for u in UsersFile(path).load()) == sorted(names)
