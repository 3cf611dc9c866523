"""Loading YAML files: the accepted dialect, path resolution and the wording of errors."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest

from bastion.config import BastionConfig, config_from_mapping, load_config
from bastion.config.model import Limits, Listeners, Logging, TlsFiles
from bastion.errors import ConfigError

from .conftest import WriteConfig
from .samples import SECRET

TARGET = """\
targets:
  - name: shop
    host: 127.0.0.1
    database: shop
    credentials:
      default:
        user: app
        password: env:SHOP_PASSWORD
"""


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.message


def test_empty_file_gives_every_default(write_config: WriteConfig) -> None:
    config = load_config(write_config(""))
    assert config.listeners == Listeners()
    assert config.listeners.postgres[0].host == "127.0.0.1"
    assert config.listeners.postgres[0].port == 6432
    assert config.listeners.postgres[0].tls == "auto"
    assert config.targets == []
    assert config.limits == Limits()
    assert config.limits.max_message_bytes == 64 * 1024 * 1024
    assert config.limits.write_buffer_high_water_bytes == 256 * 1024
    assert config.logging == Logging(level="info", format="json")
    assert config.data_dir is None


def test_comment_only_file_is_empty(write_config: WriteConfig) -> None:
    assert load_config(write_config("# nothing yet\n")).targets == []


def test_source_is_remembered(write_config: WriteConfig) -> None:
    path = write_config(TARGET)
    config = load_config(path)
    assert config.source == str(path)
    assert config.source_dir == path.absolute().parent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lsteners: {}\n", "lsteners: unknown key; did you mean 'listeners'? (line 1)"),
        (
            "listeners:\n  postgres:\n    - prot: 5432\n",
            "listeners.postgres[0].prot: unknown key; did you mean 'port'? (line 3)",
        ),
        (
            TARGET.replace("password:", "pasword:"),
            "targets[0].credentials.default.pasword: unknown key; did you mean 'password'? "
            "(line 8)",
        ),
        (
            "listeners:\n  postgres:\n    - tls: {cert: a.pem, key: b.pem, chain: c.pem}\n",
            "listeners.postgres[0].tls.chain: unknown key (line 3)",
        ),
        (
            "identities:\n  oidc:\n    - name: corp\n      issuer: https://i\n      audience: b\n"
            "      jwks_url: https://i/jwks\n      audiences: [x]\n",
            "identities.oidc[0].audiences: unknown key; did you mean 'audience'? (line 7)",
        ),
        ("limits:\n  max_conns: 5\n", "limits.max_conns: unknown key (line 2)"),
    ],
)
def test_unknown_keys_are_reported_with_their_path(
    tmp_path: Path, write_config: WriteConfig, text: str, expected: str
) -> None:
    for name in ("a.pem", "b.pem"):
        (tmp_path / name).write_text("x", encoding="utf-8")
    path = write_config(text)
    assert load_error(path) == f"{path}: {expected}"


def test_unknown_key_matches_the_documented_form(write_config: WriteConfig) -> None:
    path = write_config("listeners:\n  postgres:\n    - prot: 5432\n")
    assert load_error(path).startswith(f"{path}: listeners.postgres[0].prot: unknown key")


def test_every_problem_is_reported_one_per_line(write_config: WriteConfig) -> None:
    path = write_config("limits:\n  max_conns: 5\nlogging:\n  level: loud\n")
    lines = load_error(path).splitlines()
    assert lines == [
        f"{path}: limits.max_conns: unknown key (line 2)",
        f"{path}: logging.level: must be 'debug', 'info', 'warning' or 'error' (line 4)",
    ]


def test_missing_required_key(write_config: WriteConfig) -> None:
    path = write_config(TARGET.replace("    database: shop\n", ""))
    assert load_error(path) == f"{path}: targets[0].database: required key is missing (line 2)"


def test_duplicate_keys_are_rejected(write_config: WriteConfig) -> None:
    path = write_config("limits:\n  max_client_connections: 5\n  max_client_connections: 6\n")
    message = load_error(path)
    assert message.startswith(f"{path}: line 3, column 3: ")
    assert "duplicate key 'max_client_connections' (first defined at line 2)" in message


def test_duplicate_top_level_sections_are_rejected(write_config: WriteConfig) -> None:
    path = write_config("logging: {level: info}\nlogging: {level: debug}\n")
    assert "duplicate key 'logging'" in load_error(path)


def test_merge_keys_are_not_duplicates(write_config: WriteConfig) -> None:
    path = write_config(
        """\
        targets:
          - name: shop
            host: db1
            database: shop
            credentials:
              default: &app {user: app, password: env:SHOP_PASSWORD}
          - name: shop2
            host: db2
            database: shop
            credentials:
              default: {<<: *app, user: other}
        """
    )
    config = load_config(path)
    assert config.targets[1].credentials["default"].user == "other"
    assert config.targets[1].credentials["default"].password == "env:SHOP_PASSWORD"


def test_yaml_syntax_errors_give_line_and_column(write_config: WriteConfig) -> None:
    path = write_config("limits:\n  max_client_connections: [1\nlogging: {}\n")
    message = load_error(path)
    assert message.startswith(f"{path}: line 3, column ")
    assert "expected ',' or ']'" in message


def test_bad_indentation_gives_line_and_column(write_config: WriteConfig) -> None:
    path = write_config("limits:\n  startup_timeout_seconds: 5\n max_client_connections: 5\n")
    assert load_error(path).startswith(f"{path}: line 3, column 2: ")


def test_unsafe_tags_are_refused(write_config: WriteConfig) -> None:
    path = write_config("data_dir: !!python/object/apply:os.getcwd []\n")
    assert "could not determine a constructor" in load_error(path)


def test_top_level_must_be_a_mapping(write_config: WriteConfig) -> None:
    path = write_config("- listeners\n")
    assert load_error(path) == f"{path}: the top level must be a mapping of keys to values"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert load_error(path) == f"{path}: cannot read: No such file or directory"


def test_yaml_1_1_booleans_are_words(write_config: WriteConfig) -> None:
    config = load_config(write_config("listeners:\n  postgres:\n    - tls: off\n"))
    assert config.listeners.postgres[0].tls == "off"


def test_inline_password_is_rejected_without_echo(write_config: WriteConfig) -> None:
    path = write_config(TARGET.replace("env:SHOP_PASSWORD", SECRET))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.message == (
        f"{path}: targets[0].credentials.default.password: inline secrets are not allowed; "
        "use env:NAME or file:PATH (line 8)"
    )
    assert SECRET not in "".join(traceback.format_exception(caught.value))


def test_numeric_inline_password_is_rejected_without_echo(write_config: WriteConfig) -> None:
    path = write_config(TARGET.replace("env:SHOP_PASSWORD", "918273645"))
    message = load_error(path)
    assert "inline secrets are not allowed" in message
    assert "918273645" not in message


def test_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    conf_dir = tmp_path / "etc"
    (conf_dir / "certs").mkdir(parents=True)
    for name in ("server.crt", "server.key", "ca.pem"):
        (conf_dir / "certs" / name).write_text("x", encoding="utf-8")
    path = conf_dir / "bastion.yaml"
    path.write_text(
        "data_dir: state\n"
        "listeners:\n  postgres:\n    - tls: {cert: certs/server.crt, key: certs/server.key}\n"
        "targets:\n"
        "  - {name: a, unix_socket: run, database: d, credentials: {default: {user: u}}}\n"
        "  - name: b\n    host: h\n    database: d\n    tls: verify-full\n"
        "    tls_ca: certs/ca.pem\n    credentials: {default: {user: u}}\n"
        "identities:\n  users_file: people.yaml\n  oidc:\n"
        "    - {name: corp, issuer: i, audience: a, jwks_file: jwks.json}\n",
        encoding="utf-8",
    )
    config = load_config(path)
    base = conf_dir.absolute()
    assert config.data_dir == base / "state"
    tls = config.listeners.postgres[0].tls
    assert isinstance(tls, TlsFiles)
    assert (tls.cert, tls.key) == (base / "certs/server.crt", base / "certs/server.key")
    assert config.targets[0].unix_socket == base / "run"
    assert config.targets[1].tls_ca == base / "certs/ca.pem"
    assert config.identities.oidc[0].jwks_file == base / "jwks.json"
    # users_file belongs to the data dir, not to the configuration's directory.
    assert config.identities.users_file == Path("people.yaml")
    assert config.identities.users_file_path(Path("/var/lib/bastion")) == Path(
        "/var/lib/bastion/people.yaml"
    )


def test_absolute_paths_are_kept(tmp_path: Path, write_config: WriteConfig) -> None:
    config = load_config(write_config(f"data_dir: {tmp_path / 'abs'}\n"))
    assert config.data_dir == tmp_path / "abs"


def test_file_secrets_resolve_against_the_file(tmp_path: Path, write_config: WriteConfig) -> None:
    (tmp_path / "shop.password").write_text(SECRET + "\n", encoding="utf-8")
    path = write_config(TARGET.replace("env:SHOP_PASSWORD", "file:shop.password"))
    config = load_config(path)
    [location] = config.secret_references()
    assert location.path == "targets[0].credentials.default.password"
    assert location.ref == "file:shop.password"
    assert config.resolve_secret(location.ref) == SECRET


def test_config_from_mapping_validates_and_names_its_source(tmp_path: Path) -> None:
    config = config_from_mapping(
        {"data_dir": "state", "logging": {"format": "text"}}, source="demo", base_dir=tmp_path
    )
    assert isinstance(config, BastionConfig)
    assert config.data_dir == tmp_path / "state"
    assert config.source == "demo"
    assert config.source_dir == tmp_path
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"logging": {"colour": "red"}}, source="demo")
    assert caught.value.message == "demo: logging.colour: unknown key"


def test_config_from_mapping_without_base_dir_keeps_relative_paths() -> None:
    config = config_from_mapping({"data_dir": "state"})
    assert config.data_dir == Path("state")
    assert config.source == "<memory>"
    assert config.source_dir is None


def test_masking_patterns_load_and_bad_ones_are_named(write_config: WriteConfig) -> None:
    good = "masking:\n  patterns:\n    - {name: staff, regex: 'EMP-[0-9]{6}', class: national_id}\n"
    (pattern,) = load_config(write_config(good)).masking.user_patterns()
    assert (pattern.name, pattern.regex, str(pattern.sensitive_class)) == (
        "staff",
        "EMP-[0-9]{6}",
        "national_id",
    )
    message = load_error(write_config("masking:\n  patterns:\n    - {name: x, regex: '(EMP'}\n"))
    assert "masking.patterns" in message and "'x' is not a valid RE2 expression" in message
    message = load_error(write_config("masking:\n  patterns:\n    - {name: y, regex: 'a|'}\n"))
    assert "matches the empty string" in message
    message = load_error(
        write_config("masking:\n  patterns:\n    - {name: z, regex: 'a', clas: x}\n")
    )
    assert "did you mean 'class'" in message
