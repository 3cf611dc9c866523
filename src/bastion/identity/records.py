"""The stored shape of identities: user records and OIDC issuer settings.

These models are shared by the main configuration (inline users, issuers) and by the users file
that `bastion users add` maintains in the data dir. They hold SCRAM verifiers, never passwords.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCRAM_VERIFIER_RE = re.compile(
    r"^SCRAM-SHA-256\$(?P<iterations>[0-9]+):(?P<salt>[A-Za-z0-9+/=]+)"
    r"\$(?P<stored_key>[A-Za-z0-9+/=]+):(?P<server_key>[A-Za-z0-9+/=]+)$"
)
USER_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,62}$")


class IdentityKind(StrEnum):
    """What sort of principal an identity is; policies can treat each differently."""

    HUMAN = "human"
    SERVICE = "service"
    AGENT = "agent"


class UserRecord(BaseModel):
    """One password user. `scram` is a PostgreSQL-format SCRAM-SHA-256 verifier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Login name the client sends as its startup `user`.")
    groups: tuple[str, ...] = Field(default=(), description="Groups the user belongs to.")
    kind: IdentityKind = Field(default=IdentityKind.HUMAN, description="human, service or agent.")
    scram: str = Field(
        repr=False,
        description="SCRAM-SHA-256 verifier (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:"
        "<ServerKey>), as written by `bastion users add`. Never a plaintext password.",
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not USER_NAME_RE.match(value):
            raise ValueError(
                "user names are 1-63 characters of letters, digits and _ . @ + -, "
                "not starting with punctuation other than _"
            )
        return value

    @field_validator("scram")
    @classmethod
    def _valid_verifier(cls, value: str) -> str:
        match = SCRAM_VERIFIER_RE.match(value)
        if match is None:
            raise ValueError(
                "not a SCRAM-SHA-256 verifier; create one with `bastion users add NAME`"
            )
        if int(match["iterations"]) < 4096:
            raise ValueError("SCRAM iteration count must be at least 4096")
        return value


class OidcIssuer(BaseModel):
    """An OpenID Connect issuer whose signed JWTs clients may present as their password."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Short name used in logs and audit records.")
    issuer: str = Field(description="Expected `iss` claim, exactly.")
    audience: str = Field(description="Expected `aud` claim (one of them, when a list).")
    jwks_url: str | None = Field(default=None, description="HTTPS URL of the issuer's JWKS.")
    jwks_file: Path | None = Field(default=None, description="Local JWKS file instead of a URL.")
    username_claim: str = Field(
        default="preferred_username",
        description="Claim holding the user name; it must equal the startup `user`.",
    )
    groups_claim: str = Field(default="groups", description="Claim holding a list of groups.")
    kind: IdentityKind = Field(
        default=IdentityKind.HUMAN, description="Kind given to identities from this issuer."
    )
    kind_claim: str | None = Field(
        default=None,
        description="Optional claim whose value (human, service, agent) overrides `kind`.",
    )
    algorithms: tuple[str, ...] = Field(
        default=("RS256", "ES256", "EdDSA", "PS256"),
        description="Accepted signature algorithms; `none` and HMAC algorithms are refused.",
    )
    leeway_seconds: int = Field(default=30, ge=0, le=300, description="Clock skew allowed.")

    @model_validator(mode="after")
    def _one_key_source(self) -> OidcIssuer:
        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError("set exactly one of jwks_url or jwks_file")
        for alg in self.algorithms:
            if alg.lower() == "none" or alg.upper().startswith("HS"):
                raise ValueError(f"algorithm {alg!r} is not accepted for OIDC tokens")
        return self
