"""Connecting and authenticating to the upstream PostgreSQL server.

Bastion speaks to the server as a client: optional TLS (SSLRequest, per the target's mode),
a StartupMessage naming the real database and upstream user, then whichever authentication the
server asks for (trust, cleartext password, MD5, SCRAM-SHA-256), until ReadyForQuery. Failures
become UpstreamUnavailable errors that name the target but never a credential.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field

from scramp import ScramClient

from bastion.errors import UpstreamUnavailable
from bastion.session.peer import PeerClosed, PeerProtocol
from bastion.targets.runtime import TargetRuntime, UpstreamLogin
from bastion.wire.postgres import backend, frontend, startup
from bastion.wire.postgres.codes import (
    AUTH_CLEARTEXT_PASSWORD,
    AUTH_MD5_PASSWORD,
    AUTH_OK,
    AUTH_SASL,
    AUTH_SASL_CONTINUE,
    AUTH_SASL_FINAL,
    B_AUTHENTICATION,
    B_BACKEND_KEY_DATA,
    B_ERROR_RESPONSE,
    B_NEGOTIATE_PROTOCOL_VERSION,
    B_NOTICE_RESPONSE,
    B_PARAMETER_STATUS,
    B_READY_FOR_QUERY,
)
from bastion.wire.postgres.errors import WireFormatError
from bastion.wire.postgres.framing import frame

log = logging.getLogger(__name__)

MAX_UPSTREAM_HANDSHAKE_MESSAGE = 1 << 20


@dataclass(slots=True)
class UpstreamSession:
    """An authenticated server connection, ready to relay."""

    protocol: PeerProtocol
    process_id: int
    secret_key: bytes = field(repr=False)
    # ParameterStatus and notice messages the server sent after authentication, raw.
    greeting: list[bytes]
    ready: bytes  # the ReadyForQuery message, raw
    tls_version: str | None
    user: str


async def connect_upstream(
    target: TargetRuntime, login: UpstreamLogin, parameters: dict[str, str]
) -> UpstreamSession:
    """Open, secure and authenticate a server connection within the target's timeout."""
    try:
        async with asyncio.timeout(target.connect_timeout):
            return await _connect(target, login, parameters)
    except TimeoutError:
        raise UpstreamUnavailable(
            f'could not connect to target "{target.name}": timed out after '
            f"{target.connect_timeout:g}s",
            hint="check that the target's server is running and reachable from Bastion",
        ) from None
    except (OSError, PeerClosed) as exc:
        reason = (exc.strerror if isinstance(exc, OSError) else None) or "connection closed"
        raise UpstreamUnavailable(
            f'could not connect to target "{target.name}" at {target.address}: {reason}',
            hint="check that the target's server is running and reachable from Bastion",
        ) from exc
    except WireFormatError as exc:
        raise UpstreamUnavailable(
            f'could not connect to target "{target.name}": the server sent a malformed message'
        ) from exc


async def _connect(
    target: TargetRuntime, login: UpstreamLogin, parameters: dict[str, str]
) -> UpstreamSession:
    loop = asyncio.get_running_loop()
    protocol: PeerProtocol
    if target.unix_socket is not None:
        path = str(target.unix_socket / f".s.PGSQL.{target.port}")
        _, protocol = await loop.create_unix_connection(PeerProtocol, path)
    else:
        assert target.host is not None
        _, protocol = await loop.create_connection(PeerProtocol, target.host, target.port)
    try:
        tls_version = await _negotiate_tls(target, protocol)
        params = {"user": login.user, "database": target.database, **parameters}
        protocol.write(startup.encode_startup_message(params))
        await _authenticate(target, login, protocol)
        return await _await_ready(target, protocol, tls_version, login.user)
    except BaseException:
        protocol.abort()
        raise


async def _negotiate_tls(target: TargetRuntime, protocol: PeerProtocol) -> str | None:
    context = target.ssl_context
    if context is None or target.unix_socket is not None:
        return None
    protocol.write(startup.encode_ssl_request())
    answer = await protocol.read_exact(1)
    if answer == b"N":
        if target.tls_mode == "prefer":
            return None
        raise UpstreamUnavailable(
            f'could not connect to target "{target.name}": the server does not support TLS '
            f"but the target requires it (tls: {target.tls_mode})"
        )
    if answer != b"S":
        raise UpstreamUnavailable(
            f'could not connect to target "{target.name}": unexpected answer to SSLRequest'
        )
    if protocol.buffered:
        # Bytes after 'S' and before the handshake would be unencrypted injection.
        raise UpstreamUnavailable(
            f'could not connect to target "{target.name}": the server sent data before TLS'
        )
    loop = asyncio.get_running_loop()
    assert protocol.transport is not None
    server_hostname = target.host if context.check_hostname else None
    try:
        transport = await loop.start_tls(
            protocol.transport, protocol, context, server_hostname=server_hostname
        )
    except (OSError, ValueError) as exc:
        raise UpstreamUnavailable(
            f'could not connect to target "{target.name}": TLS handshake failed: {_tls_reason(exc)}'
        ) from exc
    if transport is None:
        raise PeerClosed("connection closed during TLS handshake")
    protocol.transport = transport
    ssl_object = transport.get_extra_info("ssl_object")
    return ssl_object.version() if ssl_object is not None else "TLS"


def _tls_reason(exc: Exception) -> str:
    """The readable part of an ssl error, without OpenSSL's source location."""
    reason = getattr(exc, "reason", None)
    detail = getattr(exc, "verify_message", None)
    parts = [
        *([reason.replace("_", " ").lower()] if isinstance(reason, str) and reason else []),
        *([detail] if isinstance(detail, str) and detail else []),
    ]
    return ": ".join(parts) if parts else str(exc)


async def _read(protocol: PeerProtocol) -> tuple[int, bytes]:
    return await protocol.read_message(MAX_UPSTREAM_HANDSHAKE_MESSAGE)


def _refused(target: TargetRuntime, body: bytes) -> UpstreamUnavailable:
    fields = backend.decode_fields(body)
    sqlstate = fields.get("C", "")
    # The server's own message stays in Bastion's log; it may name the upstream role.
    log.warning(
        "upstream refused the connection",
        extra={
            "fields": {
                "target": target.name,
                "sqlstate": sqlstate,
                "upstream_message": fields.get("M", ""),
            }
        },
    )
    reason = "authentication failed" if sqlstate.startswith("28") else f"SQLSTATE {sqlstate}"
    return UpstreamUnavailable(
        f'could not connect to target "{target.name}": the server refused Bastion ({reason})',
        hint="an operator should check the target's upstream credentials and the server log",
    )


async def _authenticate(
    target: TargetRuntime, login: UpstreamLogin, protocol: PeerProtocol
) -> None:
    scram: ScramClient | None = None
    while True:
        type_byte, body = await _read(protocol)
        if type_byte == B_ERROR_RESPONSE:
            raise _refused(target, body)
        if type_byte == B_NEGOTIATE_PROTOCOL_VERSION:
            continue
        if type_byte != B_AUTHENTICATION:
            raise UpstreamUnavailable(
                f'could not connect to target "{target.name}": unexpected message during '
                "authentication"
            )
        auth = backend.decode_authentication(body)
        if auth.code == AUTH_OK:
            return
        if auth.code in (AUTH_CLEARTEXT_PASSWORD, AUTH_MD5_PASSWORD, AUTH_SASL):
            password = _need_password(target, login)
        if auth.code == AUTH_CLEARTEXT_PASSWORD:
            protocol.write(frontend.encode_password(password))
        elif auth.code == AUTH_MD5_PASSWORD:
            protocol.write(
                frontend.encode_password(_md5_response(login.user, password, auth.payload))
            )
        elif auth.code == AUTH_SASL:
            mechanisms = backend.decode_sasl_mechanisms(auth.payload)
            if "SCRAM-SHA-256" not in mechanisms:
                raise UpstreamUnavailable(
                    f'could not connect to target "{target.name}": the server offers no '
                    "supported SASL mechanism"
                )
            scram = ScramClient(["SCRAM-SHA-256"], login.user, password)
            first = scram.get_client_first().encode()
            protocol.write(frontend.encode_sasl_initial("SCRAM-SHA-256", first))
        elif auth.code == AUTH_SASL_CONTINUE and scram is not None:
            scram.set_server_first(auth.payload.decode())
            protocol.write(frontend.encode_sasl_response(scram.get_client_final().encode()))
        elif auth.code == AUTH_SASL_FINAL and scram is not None:
            try:
                scram.set_server_final(auth.payload.decode())
            except Exception as exc:  # scramp raises its own error type on a bad signature
                raise UpstreamUnavailable(
                    f'could not connect to target "{target.name}": the server failed to prove '
                    "it knows the SCRAM verifier"
                ) from exc
        else:
            raise UpstreamUnavailable(
                f'could not connect to target "{target.name}": the server asked for an '
                f"unsupported authentication method (code {auth.code})"
            )


def _need_password(target: TargetRuntime, login: UpstreamLogin) -> str:
    if login.password is None:
        raise UpstreamUnavailable(
            f'could not connect to target "{target.name}": the server asks for a password '
            "but the target's credential has none",
            hint="set `password: env:NAME` or `file:PATH` on the target's credential",
        )
    return login.password


def _md5_response(user: str, password: str, salt: bytes) -> str:
    if len(salt) != 4:
        raise WireFormatError("MD5 salt must be 4 bytes")
    inner = hashlib.md5((password + user).encode()).hexdigest()
    return "md5" + hashlib.md5(inner.encode() + salt).hexdigest()


async def _await_ready(
    target: TargetRuntime, protocol: PeerProtocol, tls_version: str | None, user: str
) -> UpstreamSession:
    greeting: list[bytes] = []
    process_id, secret_key = 0, b""
    while True:
        type_byte, body = await _read(protocol)
        if type_byte == B_READY_FOR_QUERY:
            return UpstreamSession(
                protocol=protocol,
                process_id=process_id,
                secret_key=secret_key,
                greeting=greeting,
                ready=frame(type_byte, body),
                tls_version=tls_version,
                user=user,
            )
        if type_byte == B_BACKEND_KEY_DATA:
            key = backend.decode_backend_key_data(body)
            process_id, secret_key = key.process_id, key.secret_key
        elif type_byte in (B_PARAMETER_STATUS, B_NOTICE_RESPONSE):
            greeting.append(frame(type_byte, body))
        elif type_byte == B_ERROR_RESPONSE:
            raise _refused(target, body)
        else:
            raise UpstreamUnavailable(
                f'could not connect to target "{target.name}": unexpected message '
                f"{chr(type_byte)!r} after authentication"
            )


async def send_cancel(target: TargetRuntime, process_id: int, secret_key: bytes) -> None:
    """Deliver a CancelRequest to the server on a fresh plaintext connection, as libpq does."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(target.connect_timeout):
        if target.unix_socket is not None:
            path = str(target.unix_socket / f".s.PGSQL.{target.port}")
            transport, protocol = await loop.create_unix_connection(PeerProtocol, path)
        else:
            assert target.host is not None
            transport, protocol = await loop.create_connection(
                PeerProtocol, target.host, target.port
            )
        transport.write(startup.encode_cancel_request(process_id, secret_key))
        # The server closes the connection once it has read the request.
        while not protocol.closed:
            try:
                await protocol.read_exact(1)
            except PeerClosed:
                break
        transport.close()
