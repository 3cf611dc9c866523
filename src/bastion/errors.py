"""The error hierarchy shared by every part of Bastion.

Each error carries the SQLSTATE a PostgreSQL client should see, a message written for the
person at the client, and an optional hint saying what to do next. Errors never carry secrets:
whoever raises one must keep credentials, tokens and passwords out of the message.
"""

from __future__ import annotations


class BastionError(Exception):
    """Base class: a failure with a client-facing SQLSTATE, message and hint."""

    sqlstate = "XX000"

    def __init__(self, message: str, *, hint: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = detail


class ConfigError(BastionError):
    """The configuration (or a file it references) is invalid."""

    sqlstate = "F0000"


class ProtocolViolation(BastionError):
    """The peer broke the wire protocol: malformed, oversized or out-of-order messages."""

    sqlstate = "08P01"


class AuthenticationFailed(BastionError):
    """Wrong credentials or unknown user; deliberately the same error for both."""

    sqlstate = "28P01"


class AuthorizationRejected(BastionError):
    """The client is known but may not connect this way (for example cleartext without TLS)."""

    sqlstate = "28000"


class TooManyAttempts(BastionError):
    """Authentication attempts from this source or for this user are being rate-limited."""

    sqlstate = "28P01"


class UnknownTarget(BastionError):
    """The startup `database` parameter names no configured target."""

    sqlstate = "3D000"


class UpstreamUnavailable(BastionError):
    """Bastion could not connect or authenticate to the upstream database."""

    sqlstate = "08006"


class FeatureNotSupported(BastionError):
    """The client asked for something Bastion refuses to proxy (replication, GSS encryption)."""

    sqlstate = "0A000"


class PolicyRefusal(BastionError):
    """The policy refuses this connection or statement; the message names the rule."""

    sqlstate = "42501"
