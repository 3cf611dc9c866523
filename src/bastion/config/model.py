"""The typed shape of Bastion's configuration file: every section, key, default and rule.

This module owns the configuration model and every check that needs only the values themselves
(ranges, mutually exclusive keys, unique names, TLS files that must exist). It does not read
YAML or resolve secrets: `loader` turns a file into this model and `secrets` reads the secrets
that `SecretRef` fields point to. Field descriptions are user documentation: `docs` renders them
into docs/configuration.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    IPvAnyNetwork,
    PrivateAttr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bastion.config import secrets
from bastion.config.secrets import SecretRef
from bastion.errors import ConfigError
from bastion.identity.records import OidcIssuer, UserRecord
from bastion.masking.classes import SensitiveClass, Strategy, parse_class, parse_strategy
from bastion.masking.user_patterns import UserPattern, UserPatternSet

TARGET_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$"
TARGET_NAME_RE = re.compile(TARGET_NAME_PATTERN)
DEFAULT_CREDENTIAL = "default"
KIB = 1024
MIB = 1024 * KIB

# Shared by every model here. Hiding inputs keeps a mistyped password out of pydantic's own
# error text if a caller validates a mapping directly instead of going through the loader.
MODEL_CONFIG = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


@dataclass(frozen=True)
class SourceContext:
    """Where a configuration came from; passed to validation as the pydantic context."""

    source: str
    base_dir: Path | None


def _resolve(path: Path, info: ValidationInfo) -> Path:
    """Make a relative path relative to the configuration file's directory."""
    context = info.context
    if path.is_absolute() or not isinstance(context, SourceContext):
        return path
    if context.base_dir is None:
        return path
    return context.base_dir / path


def _existing_file(path: Path) -> Path:
    if not path.exists():
        raise ValueError(f"file not found: {path}")
    if not path.is_file():
        raise ValueError(f"not a regular file: {path}")
    return path


def _reject_duplicates(section: str, values: list[str], what: str) -> None:
    """Raise naming both indexes when two items of `section` share a name or address."""
    first_index: dict[str, int] = {}
    for index, value in enumerate(values):
        if value in first_index:
            raise ValueError(
                f"{section}[{first_index[value]}] and {section}[{index}] have the same {what} "
                f"{value!r}; each must be unique"
            )
        first_index[value] = index


def _masking_label_key(key: str) -> str:
    if key.count(".") < 2 or any(not part for part in key.split(".")):
        raise ValueError(
            f"masking label {key!r} must name a column as schema.table.column, as stored in "
            "the catalog"
        )
    return key


def _masking_label_value(value: str) -> str:
    """A label's value checked and written in lower case: class, class:strategy, scan, none."""
    text = value.strip().lower()
    if text in ("scan", "none"):
        return text
    class_name, colon, strategy_name = text.partition(":")
    parsed = parse_class(class_name).value
    if colon:
        parsed += ":" + parse_strategy(strategy_name).value
    return parsed


MaskingLabelKey = Annotated[str, AfterValidator(_masking_label_key)]
MaskingLabelValue = Annotated[str, AfterValidator(_masking_label_value)]
ClassName = Annotated[str, AfterValidator(lambda value: parse_class(value).value)]
StrategyName = Annotated[str, AfterValidator(lambda value: parse_strategy(value).value)]


class TlsFiles(BaseModel):
    """Your own certificate and private key, presented to clients by a listener."""

    model_config = MODEL_CONFIG

    cert: Path = Field(
        description="PEM file with the server certificate, followed by any intermediates. "
        "Must exist when the configuration is loaded."
    )
    key: Path = Field(
        description="PEM file with the certificate's private key. Must exist when the "
        "configuration is loaded."
    )

    @field_validator("cert", "key")
    @classmethod
    def _resolve_existing(cls, value: Path, info: ValidationInfo) -> Path:
        return _existing_file(_resolve(value, info))


TlsMode = Literal["off", "auto"]


def _tls_variant(value: Any) -> str:
    return "files" if isinstance(value, dict | TlsFiles) else "mode"


# A tagged union, so an error in a cert/key mapping is reported against that mapping instead of
# also complaining that it is not the string "off" or "auto".
TlsSetting = Annotated[
    Annotated[TlsMode, Tag("mode")] | Annotated[TlsFiles, Tag("files")],
    Discriminator(_tls_variant),
]


class ProxyProtocol(BaseModel):
    """PROXY protocol (v1 or v2) headers from load balancers, and whom to believe."""

    model_config = MODEL_CONFIG

    trusted_networks: list[IPvAnyNetwork] = Field(
        min_length=1,
        description="Networks of the load balancers. A connection from one of them must start "
        "with a PROXY header, and the client address it names is used for policy and audit. "
        "Connections from anywhere else are taken as they are; a header from them is refused.",
    )


class PostgresListener(BaseModel):
    """A TCP address where Bastion accepts PostgreSQL clients."""

    model_config = MODEL_CONFIG

    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address to listen on. Use 0.0.0.0 (or ::) to accept clients from other "
        "machines.",
    )
    port: int = Field(default=6432, ge=1, le=65535, description="TCP port to listen on.")
    tls: TlsSetting = Field(
        default="auto",
        description="TLS towards clients. `off`: none. `auto`: a local CA and a certificate for "
        "localhost generated in the data dir (tls/ca.crt, tls/server.crt) on first start; "
        "clients that trust tls/ca.crt can verify Bastion. Or a mapping with `cert` and `key` "
        "to present your own certificate.",
    )
    require_tls: bool = Field(
        default=False,
        description="Refuse clients that do not use TLS, except over loopback (127.0.0.1, ::1) "
        "while trust_loopback is true.",
    )
    proxy_protocol: ProxyProtocol | None = Field(
        default=None,
        description="Accept PROXY protocol headers from trusted load balancers. Off unless set.",
    )
    trust_loopback: bool = Field(
        default=True,
        description="Treat clients on loopback as local: they may connect without TLS when "
        "require_tls is set, and present tokens without TLS. Set false to demand TLS from "
        "every client, local ones included.",
    )

    @model_validator(mode="after")
    def _tls_to_require(self) -> PostgresListener:
        if self.require_tls and self.tls == "off":
            raise ValueError("require_tls: true needs tls set to auto or to cert and key files")
        return self


class AdminListener(BaseModel):
    """The admin HTTP API: health checks, metrics, approvals and sessions (docs/operations.md)."""

    model_config = MODEL_CONFIG

    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address the admin API listens on. Keep it on a private interface.",
    )
    port: int = Field(default=8642, ge=0, le=65535, description="TCP port of the admin API.")
    operator_groups: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["admin"],
        description="Groups whose members may list and end client sessions through the API "
        "(bastion sessions). Approvers are chosen by the policy, not here.",
    )


class Listeners(BaseModel):
    """Where Bastion accepts client connections, by wire protocol."""

    model_config = MODEL_CONFIG

    postgres: list[PostgresListener] = Field(
        default_factory=lambda: [PostgresListener()],
        description="PostgreSQL listeners. The default is one listener on 127.0.0.1:6432 with "
        "tls: auto.",
    )
    admin: AdminListener | None = Field(
        default=None,
        description="The admin HTTP API (health checks, metrics, approvals, sessions). Off "
        "unless set.",
    )

    @field_validator("postgres")
    @classmethod
    def _distinct_addresses(cls, value: list[PostgresListener]) -> list[PostgresListener]:
        _reject_duplicates("postgres", [f"{x.host}:{x.port}" for x in value], "address")
        return value


class UpstreamTlsMode(StrEnum):
    """How Bastion uses TLS towards an upstream database; the same values as libpq's sslmode."""

    DISABLE = "disable"
    PREFER = "prefer"
    REQUIRE = "require"
    VERIFY_CA = "verify-ca"
    VERIFY_FULL = "verify-full"


class UpstreamCredential(BaseModel):
    """A role Bastion logs in as on an upstream database."""

    model_config = MODEL_CONFIG

    user: str = Field(min_length=1, description="Role name on the upstream database.")
    password: SecretRef | None = Field(
        default=None,
        description="Reference to the role's password: env:NAME or file:PATH, never the "
        "password itself. Leave unset when the upstream lets Bastion in without one (trust or "
        "peer authentication).",
    )


class Target(BaseModel):
    """An upstream database that clients reach by putting its name in `dbname`."""

    model_config = MODEL_CONFIG

    name: str = Field(
        description="Name clients put in `dbname` to reach this target: 1 to 63 letters, "
        "digits, `_`, `.` and `-`, starting with a letter, digit or `_`.",
        json_schema_extra={"pattern": TARGET_NAME_PATTERN},
    )
    host: str | None = Field(
        default=None,
        min_length=1,
        description="Host name or IP address of the upstream server. Set exactly one of host "
        "and unix_socket.",
    )
    port: int = Field(
        default=5432,
        ge=1,
        le=65535,
        description="Upstream port. With unix_socket it selects the socket file "
        "(.s.PGSQL.<port>), as in PostgreSQL.",
    )
    unix_socket: Path | None = Field(
        default=None,
        description="Directory holding the upstream's Unix socket, such as /var/run/postgresql. "
        "Set exactly one of host and unix_socket.",
    )
    database: str = Field(min_length=1, description="Name of the database on the upstream.")
    credentials: dict[str, UpstreamCredential] = Field(
        description="Upstream roles Bastion may log in as, by name. A `default` entry is "
        "required; policies can choose other entries, such as readonly, readwrite or admin."
    )
    tls: UpstreamTlsMode = Field(
        default=UpstreamTlsMode.PREFER,
        description="TLS towards the upstream, as libpq's sslmode: disable, prefer, require, "
        "verify-ca (check the certificate against tls_ca) or verify-full (also check that it "
        "names host).",
    )
    tls_ca: Path | None = Field(
        default=None,
        description="PEM bundle of the CA certificates trusted for verify-ca and verify-full. "
        "When unset, the system trust store is used. Must exist when the configuration is "
        "loaded.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Free-form labels that policies can match, such as environment: production.",
    )
    connect_timeout_seconds: float = Field(
        default=10,
        gt=0,
        description="Seconds to wait for a connection to the upstream before giving up.",
    )
    masking_labels: dict[MaskingLabelKey, MaskingLabelValue] = Field(
        default_factory=dict,
        description="What columns of this target hold, when their names do not say it (see "
        "docs/masking.md). Keys name a column as `schema.table.column` (as stored in the "
        "catalog, so usually lower case); a view's columns can be labelled too. Values: a "
        "sensitive class (`email`), a class and a strategy (`email:hash`), `scan` (look for "
        "secrets inside the value) or `none` (not sensitive). A label wins over the name "
        "rules; a label on a partitioned table applies to its partitions. Labels that match "
        "no column are reported by `bastion classify`.",
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not TARGET_NAME_RE.match(value):
            raise ValueError(
                "target names are 1 to 63 letters, digits, _ . and -, starting with a letter, "
                "digit or _"
            )
        return value

    @field_validator("unix_socket")
    @classmethod
    def _resolve_socket_dir(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # The socket may not exist yet when Bastion starts before the database, so it is only
        # resolved here, not checked.
        return None if value is None else _resolve(value, info)

    @field_validator("tls_ca")
    @classmethod
    def _resolve_ca(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _existing_file(_resolve(value, info))

    @field_validator("credentials")
    @classmethod
    def _has_default(cls, value: dict[str, UpstreamCredential]) -> dict[str, UpstreamCredential]:
        if DEFAULT_CREDENTIAL not in value:
            raise ValueError(
                f"a {DEFAULT_CREDENTIAL!r} credential is required; it is used whenever a "
                "policy does not choose another one"
            )
        return value

    @model_validator(mode="after")
    def _one_address(self) -> Target:
        if (self.host is None) == (self.unix_socket is None):
            raise ValueError("set exactly one of host and unix_socket")
        return self


class Identities(BaseModel):
    """Who may connect: password users and OpenID Connect issuers."""

    model_config = MODEL_CONFIG

    users_file: Path = Field(
        default=Path("users.yaml"),
        description="File of password users maintained by `bastion users add`. A relative path "
        "is taken from the data dir, not from the configuration file's directory.",
    )
    users: list[UserRecord] = Field(
        default_factory=list,
        description="Password users defined in the configuration itself, in addition to those "
        "in users_file.",
    )
    oidc: list[OidcIssuer] = Field(
        default_factory=list,
        description="OpenID Connect issuers whose signed tokens clients may send as their "
        "password.",
    )

    @field_validator("users")
    @classmethod
    def _distinct_users(cls, value: list[UserRecord]) -> list[UserRecord]:
        _reject_duplicates("users", [user.name for user in value], "name")
        return value

    @field_validator("oidc")
    @classmethod
    def _distinct_issuers(cls, value: list[OidcIssuer], info: ValidationInfo) -> list[OidcIssuer]:
        _reject_duplicates("oidc", [issuer.name for issuer in value], "name")
        # OidcIssuer is shared with the identity code, so its jwks_file is resolved here.
        return [
            issuer
            if issuer.jwks_file is None
            else issuer.model_copy(update={"jwks_file": _resolve(issuer.jwks_file, info)})
            for issuer in value
        ]

    def users_file_path(self, data_dir: Path) -> Path:
        """The users file's location, given the data dir in use."""
        return data_dir / self.users_file


class Audit(BaseModel):
    """The tamper-evident audit record (docs/audit.md)."""

    model_config = MODEL_CONFIG

    enabled: bool = Field(
        default=True,
        description="Keep the hash-chained audit record (docs/audit.md) in addition to the JSON "
        "log lines.",
    )
    store: str = Field(
        default="audit.db",
        min_length=1,
        description="Where records go: a SQLite file (relative paths are taken from the data "
        "dir) or a postgresql:// URL for several Bastion instances sharing one record (put "
        "the password in ~/.pgpass or PGPASSWORD, not in the URL).",
    )
    schema_name: str = Field(
        default="bastion_audit", description="PostgreSQL store only: the schema of its tables."
    )
    mode: Literal["buffered", "sync"] = Field(
        default="buffered",
        description="buffered: a background writer stores records in batches; a statement runs "
        "once its record has a place in the queue. sync: a statement's result (its completion "
        "or error) reaches the client only after its record is stored; records of all "
        "sessions share commits.",
    )
    statement_text: Literal["normalized", "scrubbed"] = Field(
        default="normalized",
        description="normalized: statement text with every literal replaced by a placeholder "
        "($1, $2...). scrubbed: the text as the client sent it, with what the masking "
        "detectors find in it (emails, card numbers, keys...) masked.",
    )
    parameters: bool = Field(
        default=False,
        description="Also keep bind parameters (extended protocol), each passed through the "
        "masking detectors first.",
    )
    queue_size: int = Field(
        default=10000,
        ge=1,
        description="Records waiting for the writer at most. While it is full, new statements "
        "wait for room (up to wait_seconds), then fail with a clear error: nothing is dropped.",
    )
    wait_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long a statement waits for room in a full queue before it fails.",
    )
    batch_size: int = Field(default=500, ge=1, description="Records written per transaction.")
    checkpoint_every: int = Field(
        default=1000, ge=1, description="A signed checkpoint after this many records."
    )
    checkpoint_seconds: float = Field(
        default=60.0, gt=0, description="...or after this many seconds, whichever comes first."
    )
    signing_key: Path | None = Field(
        default=None,
        description="Ed25519 private key (PEM) that signs checkpoints; default: generated in "
        "the data dir (keys/audit-signing-key).",
    )

    @field_validator("signing_key")
    @classmethod
    def _resolve_signing_key(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, info)


class StateStore(BaseModel):
    """Shared state: approval requests and admin API tokens (docs/approvals.md)."""

    model_config = MODEL_CONFIG

    store: str = Field(
        default="state.db",
        min_length=1,
        description="A SQLite file (relative paths are taken from the data dir) or a "
        "postgresql:// URL shared by several Bastion instances (put the password in ~/.pgpass "
        "or PGPASSWORD, not in the URL).",
    )
    schema_name: str = Field(
        default="bastion_state", description="PostgreSQL store only: the schema of its tables."
    )


class NotificationKind(StrEnum):
    WEBHOOK = "webhook"
    SLACK = "slack"


class Notification(BaseModel):
    """Where Bastion announces new approval requests and their outcome."""

    model_config = MODEL_CONFIG

    kind: NotificationKind = Field(
        default=NotificationKind.WEBHOOK,
        description="webhook: a JSON document signed with HMAC-SHA256 (header "
        "X-Bastion-Signature). slack: a Slack-compatible incoming-webhook message.",
    )
    url: str = Field(
        description="Where to POST. URLs often embed a credential (Slack's do): write env:NAME "
        "or file:PATH to keep it out of the file; it is never logged."
    )
    secret: SecretRef | None = Field(
        default=None,
        description="webhook only: the HMAC key, as env:NAME or file:PATH. Required for "
        "webhooks, so receivers can check that the message came from Bastion.",
    )
    retries: int = Field(
        default=5, ge=0, le=20, description="Further attempts after a failed delivery."
    )
    timeout_seconds: float = Field(default=5.0, gt=0, description="Per attempt.")

    @model_validator(mode="after")
    def _webhooks_are_signed(self) -> Notification:
        if self.kind is NotificationKind.WEBHOOK and self.secret is None:
            raise ValueError("a webhook notification needs a secret to sign its messages")
        return self


class Approvals(BaseModel):
    """Statements held for a human decision (docs/approvals.md)."""

    model_config = MODEL_CONFIG

    hold_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long a session waits for a decision before its statement fails with "
        "the still-pending request's id. A policy rule's approvers may set their own.",
    )
    expire_seconds: float = Field(
        default=86400.0,
        gt=0,
        description="How long a request can be approved at all; then it expires.",
    )
    grant_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="After approval, how long the requester may run the same statement again "
        "(once) when the session stopped waiting before the approval came.",
    )
    poll_seconds: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="How often a held session checks the shared store for a decision made "
        "through another Bastion instance.",
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL of the admin API as approvers reach it, for the approve / deny "
        "links in notifications (default: the admin listener's own address).",
    )
    notifications: list[Notification] = Field(
        default_factory=list, description="Webhooks told about requests and decisions."
    )


class Limits(BaseModel):
    """Resource limits that protect Bastion from misbehaving or hostile clients."""

    model_config = MODEL_CONFIG

    startup_timeout_seconds: float = Field(
        default=10,
        gt=0,
        description="Seconds a client has to finish TLS negotiation and authentication.",
    )
    max_startup_packet_bytes: int = Field(
        default=10000,
        gt=0,
        description="Largest startup packet accepted, in bytes (PostgreSQL's own limit is 10000).",
    )
    max_message_bytes: int = Field(
        default=64 * MIB,
        gt=0,
        description="Largest message a client may send, in bytes (default 64 MiB). A bigger "
        "message is a protocol violation and closes the connection.",
    )
    auth_failures_per_minute: int = Field(
        default=10,
        gt=0,
        description="Failed authentications allowed per minute, for one client address and "
        "for one user name, before further attempts are refused.",
    )
    max_client_connections: int = Field(
        default=10000,
        gt=0,
        description="Client connections open at once, across all listeners; more are refused.",
    )
    write_buffer_high_water_bytes: int = Field(
        default=256 * KIB,
        gt=0,
        description="Bytes queued for a slow peer before Bastion stops reading from the other "
        "side until it catches up (default 256 KiB).",
    )


class Logging(BaseModel):
    """What Bastion writes to its log, and how."""

    model_config = MODEL_CONFIG

    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Least severe level written: debug, info, warning or error."
    )
    format: Literal["json", "text"] = Field(
        default="json",
        description="json: one JSON object per line, for log collectors. text: for people "
        "reading a terminal.",
    )


class MaskingPattern(BaseModel):
    """A value pattern of your own, found in free text like the built-in detectors' finds."""

    model_config = MODEL_CONFIG

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="What the pattern finds, as audit records and `bastion classify` name it.",
    )
    regex: str = Field(
        min_length=1,
        description="The pattern, in RE2 syntax (linear-time matching; no backreferences or "
        "lookarounds), such as `EMP-[0-9]{6}`. `^` and `$` anchor at a value's start and end.",
    )
    sensitive_class: ClassName = Field(
        default="secret",
        alias="class",
        description="The sensitive class of what it finds, which picks the masking strategy "
        "(default secret).",
    )

    def user_pattern(self) -> UserPattern:
        return UserPattern(self.name, self.regex, parse_class(self.sensitive_class))


class Masking(BaseModel):
    """Masking sensitive values in results before they reach clients (docs/masking.md)."""

    model_config = MODEL_CONFIG

    enabled: bool = Field(
        default=True,
        description="Mask sensitive values in results: columns classified from each target's "
        "catalog, and secrets found inside free text.",
    )
    strategies: dict[ClassName, StrategyName] = Field(
        default_factory=dict,
        description="Strategy per sensitive class, replacing that class's default, such as "
        "`email: hash` or `phone: redact`. Strategies: redact, partial, hash (a deterministic "
        "token, so joins still work) and null. A label's own strategy (`email:hash`) wins.",
    )
    patterns: list[MaskingPattern] = Field(
        default_factory=list,
        description="Value patterns of your own, scanned for in every text value next to the "
        "built-in detectors (emails, cards, keys...): internal ids, customer numbers. Each "
        "has a name, an RE2 `regex` and a `class`.",
    )
    catalog_ttl_seconds: float = Field(
        default=300,
        gt=0,
        description="How long a target's catalog (its tables, views and columns) is trusted "
        "before it is read again. Bastion also reads it again after DDL through Bastion; DDL "
        "run elsewhere is seen after at most this long.",
    )
    hash_key: Path | None = Field(
        default=None,
        description="File holding the secret key of the hash strategy (at least 16 bytes, for "
        "example written by `openssl rand -hex 32`; keep it readable by Bastion only). Every "
        "Bastion instance that must produce the same tokens needs the same key. Must exist "
        "when the configuration is loaded. Default: generated in the data dir "
        "(keys/masking-hash-key).",
    )
    inference_guard: Literal["deny", "require_approval", "allow"] = Field(
        default="deny",
        description="Statements that filter, order or group by a masked column (other than "
        "equality with a value), which would let a client learn masked values bit by bit: "
        "deny, hold for approval, or allow.",
    )
    moving_masked_data: Literal["deny", "require_approval", "allow"] = Field(
        default="deny",
        description="Statements that copy masked columns somewhere other than the client "
        "(CREATE TABLE AS, SELECT INTO, INSERT ... SELECT, materialized views, COPY to a "
        "file): deny, hold for approval, or allow.",
    )

    @field_validator("hash_key")
    @classmethod
    def _resolve_hash_key(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _existing_file(_resolve(value, info))

    @field_validator("patterns")
    @classmethod
    def _compile_patterns(cls, value: list[MaskingPattern]) -> list[MaskingPattern]:
        names = [pattern.name for pattern in value]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"pattern names must be unique: {', '.join(repeated)}")
        try:
            UserPatternSet([pattern.user_pattern() for pattern in value])
        except ConfigError as error:  # the messages name the pattern and what is wrong
            raise ValueError(str(error)) from error
        return value

    def user_patterns(self) -> list[UserPattern]:
        """`patterns` as the content scanner takes them."""
        return [pattern.user_pattern() for pattern in self.patterns]

    def strategy_overrides(self) -> dict[SensitiveClass, Strategy]:
        """`strategies` as the masking engine takes them."""
        return {
            parse_class(name): parse_strategy(strategy)
            for name, strategy in self.strategies.items()
        }


class SecretLocation(NamedTuple):
    """A secret reference and where it appears in the configuration."""

    path: str
    ref: str


class BastionConfig(BaseModel):
    """Bastion's whole configuration, as read from one YAML file."""

    model_config = MODEL_CONFIG

    data_dir: Path | None = Field(
        default=None,
        description="Directory for Bastion's state, such as the users file and the certificate "
        "generated for tls: auto. A relative path is taken from the configuration file's "
        "directory. The --data-dir option and $BASTION_DATA_DIR override it; when all are unset, "
        "./bastion-data in the working directory is used.",
    )
    listeners: Listeners = Field(
        default_factory=Listeners, description="Where Bastion accepts client connections."
    )
    targets: list[Target] = Field(
        default_factory=list, description="Upstream databases clients can reach, by name."
    )
    identities: Identities = Field(
        default_factory=Identities, description="Who may connect, and how they prove it."
    )
    policy: Path | None = Field(
        default=None,
        description="The policy file (see docs/policy.md), reloaded on SIGHUP and when it "
        "changes. Without one, statements are allowed except where the built-in guardrails "
        "apply (targets labelled environment: production).",
    )
    audit: Audit = Field(default_factory=Audit, description="The tamper-evident audit record.")
    state: StateStore = Field(
        default_factory=StateStore, description="Where approvals and admin tokens are kept."
    )
    approvals: Approvals = Field(
        default_factory=Approvals, description="Holding statements for human approval."
    )
    masking: Masking = Field(
        default_factory=Masking, description="Masking sensitive values in results."
    )
    limits: Limits = Field(default_factory=Limits, description="Resource limits.")
    logging: Logging = Field(default_factory=Logging, description="Log level and format.")

    _source: str = PrivateAttr(default="<memory>")
    _source_dir: Path | None = PrivateAttr(default=None)

    @field_validator("data_dir")
    @classmethod
    def _resolve_data_dir(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, info)

    @field_validator("policy")
    @classmethod
    def _resolve_policy(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _existing_file(_resolve(value, info))

    @field_validator("targets")
    @classmethod
    def _distinct_targets(cls, value: list[Target]) -> list[Target]:
        _reject_duplicates("targets", [target.name for target in value], "name")
        return value

    @model_validator(mode="after")
    def _remember_source(self, info: ValidationInfo) -> BastionConfig:
        if isinstance(info.context, SourceContext):
            self._source = info.context.source
            self._source_dir = info.context.base_dir
        return self

    @property
    def source(self) -> str:
        """The file (or other origin) this configuration was read from, for messages."""
        return self._source

    @property
    def source_dir(self) -> Path | None:
        """The directory relative paths and `file:` secrets are taken from."""
        return self._source_dir

    def target_named(self, name: str) -> Target | None:
        """The target clients reach with `dbname` = name, if any."""
        for target in self.targets:
            if target.name == name:
                return target
        return None

    def secret_references(self) -> list[SecretLocation]:
        """Every secret reference in the configuration, with its dotted path."""
        found: list[SecretLocation] = []
        for index, target in enumerate(self.targets):
            for cred_name, credential in target.credentials.items():
                if credential.password is not None:
                    path = f"targets[{index}].credentials.{cred_name}.password"
                    found.append(SecretLocation(path, credential.password))
        for index, notification in enumerate(self.approvals.notifications):
            if notification.url.startswith(("env:", "file:")):
                path = f"approvals.notifications[{index}].url"
                found.append(SecretLocation(path, notification.url))
            if notification.secret is not None:
                path = f"approvals.notifications[{index}].secret"
                found.append(SecretLocation(path, notification.secret))
        return found

    def resolve_secret(self, ref: str) -> str:
        """Read the secret `ref` points to, taking `file:` paths from the source directory."""
        return secrets.resolve_secret(ref, self._source_dir)


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of the configuration file, for editors and validators."""
    schema = BastionConfig.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
