"""`bastion users` through a parser built from the command's own `register`."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from bastion.cli import users as users_cli
from bastion.identity.records import IdentityKind
from bastion.identity.scram import verify_password
from bastion.identity.users_file import UsersFile


class TtyInput(io.StringIO):
    def isatty(self) -> bool:
        return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bastion")
    users_cli.register(parser.add_subparsers(dest="command"))
    return parser


def run(argv: list[str], stdin: str = "", *, tty: bool = False) -> int:
    args = build_parser().parse_args(argv)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdin", TtyInput(stdin) if tty else io.StringIO(stdin))
        result: int = args.func(args)
    return result


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("BASTION_DATA_DIR", raising=False)
    return tmp_path / "data"


def stored(data_dir: Path) -> UsersFile:
    return UsersFile(data_dir / "users.yaml")


def test_add_from_stdin(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["users", "add", "alice", "--group", "analysts", "--group", "oncall"]
    assert run([*argv, "--data-dir", str(data_dir)], "s3cret pass\n") == 0
    assert capsys.readouterr().out == "added user alice (human, groups: analysts, oncall)\n"
    [alice] = stored(data_dir).load()
    assert (alice.name, alice.groups, alice.kind) == (
        "alice",
        ("analysts", "oncall"),
        IdentityKind.HUMAN,
    )
    assert verify_password(alice.scram, "s3cret pass")  # the newline is not part of it
    assert "s3cret" not in (data_dir / "users.yaml").read_text()


def test_add_uses_bastion_data_dir(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BASTION_DATA_DIR", str(data_dir))
    assert run(["users", "add", "etl", "--kind", "service"], "pw\r\n") == 0
    assert capsys.readouterr().out == "added user etl (service, groups: none)\n"
    [etl] = stored(data_dir).load()
    assert etl.kind is IdentityKind.SERVICE
    assert verify_password(etl.scram, "pw")


def test_add_on_a_terminal_asks_twice(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter(["tty-pass", "tty-pass"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert run(["users", "add", "alice", "--data-dir", str(data_dir)], tty=True) == 0
    assert verify_password(stored(data_dir).load()[0].scram, "tty-pass")


def test_add_on_a_terminal_refuses_different_entries(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter(["one", "two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert run(["users", "add", "alice", "--data-dir", str(data_dir)], tty=True) == 1
    assert "do not match" in capsys.readouterr().err
    assert stored(data_dir).load() == []


@pytest.mark.parametrize("stdin", ["", "\n"])
def test_add_refuses_an_empty_password(
    data_dir: Path, capsys: pytest.CaptureFixture[str], stdin: str
) -> None:
    assert run(["users", "add", "alice", "--data-dir", str(data_dir)], stdin) == 1
    assert "empty password" in capsys.readouterr().err
    assert stored(data_dir).load() == []


@pytest.mark.parametrize("option", ["--password", "--pass", "--passwd", "-p"])
def test_there_is_no_password_option(option: str) -> None:
    # Passwords on the command line end up in shell history and process listings.
    for argv in (["users", "add", "alice", option, "x"], ["users", "verifier", option, "x"]):
        with pytest.raises(SystemExit) as caught:
            build_parser().parse_args(argv)
        assert caught.value.code == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["users", "add"],
        ["users", "add", "alice", "--kind", "robot"],
        ["users", "remove"],
        ["users", "frobnicate"],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(argv)
    assert caught.value.code == 2


def test_users_without_a_subcommand_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["users"]) == 2
    assert "SUBCOMMAND" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["-x", "has space", "a" * 64, "semi;colon", ""])
def test_invalid_names_exit_2_before_asking_for_a_password(
    data_dir: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    assert run(["users", "add", "--data-dir", str(data_dir), "--", name], "pw\n") == 2
    assert "invalid user name" in capsys.readouterr().err
    assert not data_dir.exists()


def test_empty_group_exits_2(data_dir: Path) -> None:
    assert run(["users", "add", "alice", "--group", " ", "--data-dir", str(data_dir)], "pw\n") == 2


def test_existing_user_needs_replace(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["users", "add", "alice", "--data-dir", str(data_dir)]
    assert run(base, "first\n") == 0
    assert run(base, "second\n") == 1
    assert "already exists" in capsys.readouterr().err
    assert verify_password(stored(data_dir).load()[0].scram, "first")
    assert run([*base, "--replace", "--kind", "agent"], "second\n") == 0
    [alice] = stored(data_dir).load()
    assert verify_password(alice.scram, "second")
    assert alice.kind is IdentityKind.AGENT


def test_list_never_shows_verifiers(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["users", "list", "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out.startswith("no users in ")
    run(["users", "add", "alice", "--group", "analysts", "--data-dir", str(data_dir)], "pw\n")
    run(["users", "add", "deploy-bot", "--kind", "agent", "--data-dir", str(data_dir)], "pw\n")
    capsys.readouterr()
    assert run(["users", "list", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "NAME        KIND   GROUPS",
        "alice       human  analysts",
        "deploy-bot  agent  -",
    ]
    assert "SCRAM" not in out


def test_list_reports_a_broken_file(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir.mkdir()
    (data_dir / "users.yaml").write_text("users: 3\n")
    assert run(["users", "list", "--data-dir", str(data_dir)]) == 1
    assert "expected a list" in capsys.readouterr().err


def test_remove(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["users", "remove", "alice", "--data-dir", str(data_dir)]) == 1
    assert "no user 'alice'" in capsys.readouterr().err
    run(["users", "add", "alice", "--data-dir", str(data_dir)], "pw\n")
    capsys.readouterr()
    assert run(["users", "remove", "alice", "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out == "removed user alice\n"
    assert stored(data_dir).load() == []


def test_verifier(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["users", "verifier"], "inline-pass\n") == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("SCRAM-SHA-256$4096:")
    assert verify_password(line, "inline-pass")
    assert run(["users", "verifier"], "\n") == 1
