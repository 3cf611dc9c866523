"""How Bastion reaches a target to read its catalog: libpq connection settings from a runtime.

This module owns `CatalogSource`, the target runtime plus what libpq needs that the runtime
does not carry (the CA bundle for verify-ca / verify-full), and turns it into keyword arguments
for `psycopg.connect`. The password is resolved at each call, so a rotated secret takes effect
at the next refresh, and is never kept, logged or put in a message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import pq

from bastion.catalog.errors import CatalogUnavailable
from bastion.targets.runtime import TargetRuntime

APPLICATION_NAME = "bastion-catalog"
LIBPQ_MIN_CONNECT_TIMEOUT = 2  # libpq rounds smaller values up to 2 seconds
LIBPQ_SYSTEM_ROOTCERT = 160000  # sslrootcert=system needs libpq 16
_VERIFY_MODES = ("verify-ca", "verify-full")


@dataclass(frozen=True, slots=True)
class CatalogSource:
    """One target's catalog connection: the runtime, its CA bundle, the credential to use."""

    runtime: TargetRuntime
    tls_ca: Path | None = None
    credential: str = "default"

    @property
    def name(self) -> str:
        return self.runtime.name

    @property
    def address(self) -> str:
        return self.runtime.address

    def connection_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `psycopg.connect`, with the password resolved now."""
        target = self.runtime
        login = target.login(self.credential)
        kwargs: dict[str, Any] = {
            "dbname": target.database,
            "user": login.user,
            "port": target.port,
            "connect_timeout": max(LIBPQ_MIN_CONNECT_TIMEOUT, math.ceil(target.connect_timeout)),
            "application_name": APPLICATION_NAME,
            "gssencmode": "disable",
        }
        if target.unix_socket is not None:
            # As for client sessions, TLS is not used over a Unix socket.
            kwargs["host"] = str(target.unix_socket)
            kwargs["sslmode"] = "disable"
        else:
            kwargs["host"] = target.host
            kwargs["sslmode"] = target.tls_mode
            if target.tls_mode in _VERIFY_MODES:
                kwargs["sslrootcert"] = self._root_certificates()
        if login.password is not None:
            kwargs["password"] = login.password
        return kwargs

    def _root_certificates(self) -> str:
        if self.tls_ca is not None:
            return str(self.tls_ca)
        if pq.version() >= LIBPQ_SYSTEM_ROOTCERT:
            return "system"
        raise CatalogUnavailable(
            f'cannot read the catalog of target "{self.name}": tls {self.runtime.tls_mode} '
            "without tls_ca needs libpq 16 or newer to use the system trust store",
            hint="set the target's tls_ca",
        )
