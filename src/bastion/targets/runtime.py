"""TargetRuntime: a configured target made ready for connecting.

Credentials stay references until the moment of connecting: each connection resolves them
afresh, so a rotated password file or environment takes effect without a restart, and no
plaintext secret is kept on long-lived objects.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bastion.errors import UpstreamUnavailable


@dataclass(frozen=True, slots=True)
class UpstreamLogin:
    """A resolved upstream credential; `password` is None when the upstream trusts Bastion."""

    user: str
    password: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class CredentialRef:
    user: str
    password_ref: str | None


@dataclass(frozen=True, slots=True)
class TargetRuntime:
    name: str
    database: str
    host: str | None
    port: int
    unix_socket: Path | None
    tls_mode: str
    ssl_context: ssl.SSLContext | None
    labels: Mapping[str, str]
    connect_timeout: float
    credentials: Mapping[str, CredentialRef]
    resolve_secret: Callable[[str], str] = field(repr=False)

    @property
    def address(self) -> str:
        """Where the target lives, for messages and logs (never includes credentials)."""
        if self.unix_socket is not None:
            return f"{self.unix_socket}/.s.PGSQL.{self.port}"
        return f"{self.host}:{self.port}"

    def login(self, credential: str = "default") -> UpstreamLogin:
        ref = self.credentials.get(credential)
        if ref is None:
            raise UpstreamUnavailable(
                f'target "{self.name}" has no upstream credential named "{credential}"'
            )
        password = None
        if ref.password_ref is not None:
            try:
                password = self.resolve_secret(ref.password_ref)
            except Exception as exc:  # the secret store failed; say which reference
                raise UpstreamUnavailable(
                    f'could not connect to target "{self.name}": its upstream credential '
                    f"could not be resolved",
                    hint="check the target's password reference with `bastion config check`",
                ) from exc
        return UpstreamLogin(user=ref.user, password=password)
