"""ClientSession: one client connection from its first byte to its last.

Startup (TLS negotiation, the startup packet, authentication of the client as itself, choice
of target, connection to the upstream server with Bastion's credentials) runs as a coroutine
under one deadline, so a slow or silent client cannot hold a slot. Then the session switches
both sockets to relay mode, where bytes flow through FramedRelay and the RelayMachine with no
per-message await.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import ssl
import time
from dataclasses import replace

from bastion.errors import (
    AuthenticationFailed,
    AuthorizationRejected,
    BastionError,
    FeatureNotSupported,
    PolicyRefusal,
    ProtocolViolation,
    UnknownTarget,
)
from bastion.identity.directory import Identity
from bastion.pipeline.context import ConnectionContext
from bastion.pipeline.decision import RefuseSession
from bastion.pipeline.events import ConnectionEvent, SessionSummary
from bastion.session.cancel import CancelEntry
from bastion.session.gateway import Gateway, ListenerSettings
from bastion.session.peer import PeerClosed, PeerProtocol
from bastion.session.relay_link import RelayLink
from bastion.session.startup_options import StartupOptions, parse_options
from bastion.session.upstream import UpstreamSession, connect_upstream, send_cancel
from bastion.targets.runtime import TargetRuntime
from bastion.wire import proxy_protocol
from bastion.wire.postgres import backend, frontend, startup
from bastion.wire.postgres.codes import (
    F_PASSWORD,
)
from bastion.wire.postgres.errors import WireFormatError

log = logging.getLogger("bastion.session")

TOO_MANY_CONNECTIONS = "53300"
ADMIN_SHUTDOWN = "57P01"
# Startup parameters that describe the connection itself and are never forwarded as-is.
_NOT_FORWARDED = frozenset({"user", "database", "options", "replication"})
_MAX_AUTH_MESSAGE = 16 << 10
_FALSE_WORDS = frozenset({"", "0", "false", "off", "no"})
# Settings that would change who the upstream session acts as, what it may load or whether it
# may write, if a client could pick them at startup, out of sight of statement analysis.
FORBIDDEN_STARTUP_SETTINGS = frozenset(
    {
        "role",
        "session_authorization",
        "session_preload_libraries",
        "local_preload_libraries",
        "default_transaction_read_only",
        "transaction_read_only",
        "session_replication_role",
    }
)


class ClientProtocol(PeerProtocol):
    """The listener's protocol: starts a ClientSession for each accepted connection."""

    def __init__(self, gateway: Gateway, listener: ListenerSettings) -> None:
        super().__init__()
        self._gateway = gateway
        self._listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        session = ClientSession(self._gateway, self._listener, self)
        task = asyncio.get_running_loop().create_task(session.run())
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)


_RUNNING: set[asyncio.Task[None]] = set()


class ClientSession:
    def __init__(self, gateway: Gateway, listener: ListenerSettings, client: PeerProtocol):
        self._gw = gateway
        self._listener = listener
        self._client = client
        self._upstream: UpstreamSession | None = None
        self._link: RelayLink | None = None
        self._relay_started = False
        self._cancel_entry: CancelEntry | None = None
        self._context: ConnectionContext | None = None
        self._closing = False
        self._read_only = False
        self._started = time.monotonic()
        self._started_at = time.time()
        self.session_id = secrets.token_hex(6)
        transport = client.transport
        peer = transport.get_extra_info("peername") if transport else None
        self.source_ip, self.source_port = _peer_address(peer)
        self.tls_version: str | None = None
        self.proxy_peer: str | None = (
            None  # the load balancer, when a PROXY header named the client
        )
        self._user = ""
        self._target_name = ""
        self._application_name = ""

    @property
    def _local(self) -> bool:
        """A loopback client on a listener that trusts loopback: it may skip TLS."""
        if not self._listener.trust_loopback:
            return False
        try:
            return ipaddress.ip_address(self.source_ip).is_loopback
        except ValueError:
            return False

    async def run(self) -> None:
        gw = self._gw
        gw.active_sessions += 1
        gw.total_sessions += 1
        try:
            if gw.active_sessions > gw.limits.max_client_connections:
                self._refuse_startup(TOO_MANY_CONNECTIONS, "too many connections to Bastion")
                return
            try:
                async with asyncio.timeout(gw.limits.startup_timeout):
                    established = await self._startup()
            except TimeoutError:
                self._reject("08006", "startup timed out", send=True)
                return
            except (PeerClosed, ConnectionError):
                self._client.close()
                return
            except BastionError as exc:
                self._reject(
                    exc.sqlstate,
                    exc.message,
                    hint=exc.hint,
                    send=True,
                    reason=getattr(exc, "reason", None),
                )
                return
            except WireFormatError as exc:
                self._reject(
                    ProtocolViolation.sqlstate, f"invalid startup packet: {exc}", send=True
                )
                return
            except Exception:
                log.exception(
                    "internal error during startup",
                    extra={"fields": {"session_id": self.session_id}},
                )
                self._reject("XX000", "internal error in Bastion", send=True)
                return
            if established:
                self._start_relay()
                return
        finally:
            if not self._relay_started:
                gw.active_sessions -= 1

    # Startup and authentication.

    async def _startup(self) -> bool:
        """Run the startup phase; True when the session is ready to relay."""
        client = self._client
        limits = self._gw.limits
        if self._from_trusted_proxy():
            await self._read_proxy_header()
        tls_offered = False
        while True:
            header = await client.read_exact(4)
            body = await client.read_exact(
                startup.startup_length(header, limits.max_startup_packet)
            )
            packet = startup.parse_startup_packet(body)
            if isinstance(packet, startup.SSLRequest):
                if tls_offered or self.tls_version is not None:
                    raise ProtocolViolation("SSLRequest received twice")
                tls_offered = True
                await self._negotiate_tls()
            elif isinstance(packet, startup.GSSENCRequest):
                if self.tls_version is not None:
                    raise ProtocolViolation("GSSENCRequest after TLS was established")
                client.write(b"N")
            elif isinstance(packet, startup.CancelRequest):
                self._handle_cancel(packet)
                return False
            else:
                await self._establish(packet)
                return True

    def _from_trusted_proxy(self) -> bool:
        networks = self._listener.proxy_networks
        if not networks:
            return False
        try:
            peer = ipaddress.ip_address(self.source_ip)
        except ValueError:
            return False
        return any(peer in network for network in networks)

    async def _read_proxy_header(self) -> None:
        """Take the client's address from the load balancer's PROXY header (v1 or v2)."""
        client = self._client
        start = await client.read_exact(len(proxy_protocol.V1_PREFIX))
        if start == proxy_protocol.V1_PREFIX:
            line = bytearray(start)
            while not line.endswith(b"\r\n"):
                if len(line) >= proxy_protocol.V1_MAX_LENGTH:
                    raise ProtocolViolation("PROXY protocol v1 header too long")
                line += await client.read_exact(1)
            header = proxy_protocol.parse_v1(bytes(line))
        else:
            fixed = start + await client.read_exact(proxy_protocol.V2_FIXED_LENGTH - len(start))
            payload = await client.read_exact(proxy_protocol.v2_payload_length(fixed))
            header = proxy_protocol.parse_v2(fixed, payload)
        if header.source_ip is not None and header.source_port is not None:
            self.proxy_peer = self.source_ip
            self.source_ip, self.source_port = header.source_ip, header.source_port

    async def _negotiate_tls(self) -> None:
        client = self._client
        context = self._listener.tls_context
        if context is None:
            client.write(b"N")
            return
        if client.buffered:
            # Plaintext sent before the handshake could be injected by a man in the middle.
            raise ProtocolViolation("received unencrypted data after SSLRequest")
        client.write(b"S")
        assert client.transport is not None
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(client.transport, client, context, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            # A client that rejects the certificate or speaks garbage after 'S' is not an
            # internal failure; there is no channel left to answer it on.
            log.info(
                "client TLS handshake failed",
                extra={
                    "fields": {
                        "session_id": self.session_id,
                        "source_ip": self.source_ip,
                        "error": type(exc).__name__,
                    }
                },
            )
            raise PeerClosed("TLS handshake failed") from exc
        if transport is None:
            raise PeerClosed("connection closed during TLS handshake")
        client.transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        self.tls_version = ssl_object.version() if ssl_object is not None else "TLS"

    def _handle_cancel(self, packet: startup.CancelRequest) -> None:
        entry = self._gw.cancel.lookup(packet.process_id, packet.secret_key)
        self._client.close()  # the protocol sends no reply to a cancel request
        if entry is None:
            log.info(
                "cancel request with an unknown key ignored",
                extra={"fields": {"source_ip": self.source_ip}},
            )
            return
        if entry.intercept is not None and entry.intercept():
            return
        task = asyncio.get_running_loop().create_task(self._forward_cancel(entry))
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)

    async def _forward_cancel(self, entry: CancelEntry) -> None:
        try:
            await send_cancel(entry.target, entry.process_id, entry.upstream_key)
        except (OSError, TimeoutError) as exc:
            log.warning(
                "could not deliver a cancel request upstream",
                extra={"fields": {"target": entry.target.name, "error": str(exc)}},
            )

    async def _establish(self, message: startup.StartupMessage) -> None:
        params = message.parameters
        self._user = params.get("user", "")
        if not self._user:
            raise AuthorizationRejected("no user name specified in the startup packet")
        if params.get("replication", "false").lower() not in _FALSE_WORDS:
            raise FeatureNotSupported(
                "replication connections are not supported through Bastion",
                hint="connect replication clients directly to the server",
            )
        if self._listener.require_tls and self.tls_version is None and not self._local:
            raise AuthorizationRejected(
                "this Bastion listener requires TLS", hint="connect with sslmode=require"
            )
        protocol_extensions = [name for name in params if name.startswith("_pq_.")]
        if message.minor > 0 or protocol_extensions:
            self._client.write(backend.encode_negotiate_protocol_version(0, protocol_extensions))
        options = parse_options(params.get("options", ""))
        self._target_name = params.get("database") or self._user
        self._application_name = params.get("application_name", "")
        identity = await self._authenticate(options)
        target = self._gw.targets.get(self._target_name)
        if target is None:
            raise UnknownTarget(
                f'target "{self._target_name}" does not exist',
                hint="set dbname to the name of a target configured in Bastion",
            )
        forwarded = {
            k: v for k, v in params.items() if k not in _NOT_FORWARDED and not k.startswith("_pq_.")
        }
        _refuse_forbidden_settings([*forwarded, *options.settings])
        if options.forwarded:
            forwarded["options"] = options.forwarded
        context = ConnectionContext(
            session_id=self.session_id,
            identity=identity,
            source_ip=self.source_ip,
            source_port=self.source_port,
            tls_version=self.tls_version,
            target=target.name,
            target_labels=target.labels,
            application_name=params.get("application_name", ""),
        )
        plan = self._gw.decider.connect(context)
        if isinstance(plan, RefuseSession):
            raise PolicyRefusal(f"bastion: {plan.rule}: {plan.reason}", hint=plan.hint)
        self._read_only = plan.read_only
        if plan.read_only:
            # Set by Bastion after the client's settings were screened, so it cannot be undone
            # at startup; statements that could undo it are the policy's business.
            forwarded["default_transaction_read_only"] = "on"
        login = target.login(plan.credential)
        upstream = await connect_upstream(target, login, forwarded)
        self._upstream = upstream
        self._context = replace(context, upstream_role=login.user)
        self._greet(target, upstream)

    async def _authenticate(self, options: StartupOptions) -> Identity:
        gw = self._gw
        user = self._user
        gw.rate_limiter.check(self.source_ip, user)
        method = options.bastion.get("bastion.auth", "password")
        try:
            if method == "token":
                identity = await self._token_auth(user)
            elif method in ("password", "scram"):
                identity = await self._scram_auth(user)
            else:
                raise AuthorizationRejected(
                    f"unknown authentication method bastion.auth={method}",
                    hint="use bastion.auth=token to present a token, or omit it for passwords",
                )
        except AuthenticationFailed:
            gw.rate_limiter.failure(self.source_ip, user)
            raise
        gw.rate_limiter.success(self.source_ip, user)
        return identity

    async def _read_auth_message(self) -> bytes:
        type_byte, body = await self._client.read_message(_MAX_AUTH_MESSAGE)
        if type_byte != F_PASSWORD:
            raise ProtocolViolation(
                f"expected an authentication response, got message type {chr(type_byte)!r}"
            )
        return body

    async def _scram_auth(self, user: str) -> Identity:
        directory = self._gw.directory
        server = directory.scram_server(user)
        self._client.write(backend.encode_authentication_sasl(server.mechanisms))
        initial = frontend.decode_sasl_initial(await self._read_auth_message())
        server_first = server.handle_client_first(initial.mechanism, initial.data or b"")
        self._client.write(backend.encode_authentication_sasl_continue(server_first))
        server_final = server.handle_client_final(await self._read_auth_message())
        self._client.write(backend.encode_authentication_sasl_final(server_final))
        return directory.password_identity(user)

    async def _token_auth(self, user: str) -> Identity:
        if self.tls_version is None and not self._local:
            raise AuthorizationRejected(
                "token authentication requires TLS",
                hint="connect with sslmode=require (or verify-full)",
            )
        if not self._gw.directory.has_token_issuers:
            raise AuthorizationRejected("token authentication is not configured on this Bastion")
        self._client.write(backend.encode_authentication_cleartext())
        token = frontend.decode_password(await self._read_auth_message())
        return await self._gw.directory.verify_token(user, token)

    def _greet(self, target: TargetRuntime, upstream: UpstreamSession) -> None:
        entry = self._gw.cancel.register(
            upstream.process_id, upstream.secret_key, target, intercept=self._intercept_cancel
        )
        self._cancel_entry = entry
        self._client.write(
            b"".join(
                (
                    backend.encode_authentication_ok(),
                    *upstream.greeting,
                    backend.encode_backend_key_data(entry.process_id, entry.client_key),
                    upstream.ready,
                )
            )
        )

    # Relay.

    def _start_relay(self) -> None:
        assert self._upstream is not None and self._context is not None
        client, server = self._client, self._upstream.protocol
        assert client.transport is not None and server.transport is not None
        self._relay_started = True
        if client.transport.is_closing() or server.transport.is_closing():
            # A side hung up while the upstream was being connected: _close releases the
            # upstream connection, the cancel key and the connection slot.
            self._close("peer disconnected before the relay started")
            return
        self._link = RelayLink(
            self._gw,
            self._context,
            client,
            server,
            read_only=self._read_only,
            fail=self._fail,
            close=self._close,
        )
        client.on_lost = self._client_lost
        server.on_lost = self._server_lost
        self._gw.sessions.add(self)
        self._audit_connection("connect", "ok")
        if client.closed:
            self._client_lost(None)
            return
        self._link.start()

    def summary(self) -> SessionSummary:
        ctx, link, upstream = self._context, self._link, self._upstream
        assert ctx is not None
        return SessionSummary(
            session_id=self.session_id,
            user=ctx.identity.name,
            groups=ctx.identity.groups,
            identity_kind=str(ctx.identity.kind),
            source_ip=self.source_ip,
            source_port=self.source_port,
            target=ctx.target,
            upstream_role=upstream.user if upstream else "",
            application_name=ctx.application_name,
            tls_version=self.tls_version,
            started_at=self._started_at,
            statements=link.statement_count if link else 0,
            transaction=link.transaction_state if link else "idle",
            waiting=link.waiting if link else "",
        )

    def terminate(self, reason: str) -> None:
        """An operator ends this session (bastion sessions kill)."""
        self._fail(ADMIN_SHUTDOWN, f"terminating connection due to administrator command: {reason}")

    def _intercept_cancel(self) -> bool:
        return self._link is not None and self._link.intercept_cancel()

    def _client_lost(self, exc: Exception | None) -> None:
        self._close("client disconnected")

    def _server_lost(self, exc: Exception | None) -> None:
        self._close("server disconnected")

    def _fail(self, sqlstate: str, message: str) -> None:
        self._client.write(backend.encode_error(sqlstate, f"bastion: {message}", severity="FATAL"))
        self._close(message)

    def _close(self, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        self._gw.sessions.remove(self)
        if self._link is not None:
            self._link.stop(reason)
        self._client.close()
        if self._upstream is not None:
            self._upstream.protocol.close()
        if self._cancel_entry is not None:
            self._gw.cancel.unregister(self._cancel_entry)
        if self._relay_started:
            self._gw.active_sessions -= 1
        self._audit_connection("disconnect", "ok", reason=reason, ended=True)

    # Refusals and audit.

    def _refuse_startup(self, sqlstate: str, message: str) -> None:
        self._reject(sqlstate, message, send=True)

    def _reject(
        self,
        sqlstate: str,
        message: str,
        *,
        hint: str | None = None,
        send: bool,
        reason: str | None = None,
    ) -> None:
        if send and not self._client.closed:
            self._client.write(backend.encode_error(sqlstate, message, severity="FATAL", hint=hint))
        self._client.close()
        if self._upstream is not None:
            self._upstream.protocol.abort()
        self._audit_connection("reject", sqlstate, reason=reason or message)

    def _audit_connection(
        self, event: str, outcome: str, *, reason: str = "", ended: bool = False
    ) -> None:
        ctx = self._context
        identity = ctx.identity if ctx else None
        upstream = self._upstream
        self._gw.audit.connection(
            ConnectionEvent(
                event=event,
                session_id=self.session_id,
                source_ip=self.source_ip,
                source_port=self.source_port,
                user=identity.name if identity else self._user,
                target=self._target_name,
                outcome=outcome,
                reason=reason,
                auth_method=identity.auth_method if identity else "",
                identity_kind=str(identity.kind) if identity else "",
                groups=identity.groups if identity else (),
                tls_version=self.tls_version,
                proxy_peer=self.proxy_peer,
                application_name=ctx.application_name if ctx else self._application_name,
                upstream_role=upstream.user if upstream else "",
                duration_ms=round((time.monotonic() - self._started) * 1000, 1) if ended else None,
                statements=self._link.statement_count if ended and self._link else None,
                bytes_from_client=self._client.bytes_in if ended else None,
                bytes_to_client=upstream.protocol.bytes_in if ended and upstream else None,
            )
        )


def _refuse_forbidden_settings(names: list[str]) -> None:
    for name in names:
        key = name.lower().replace("-", "_")
        if key in FORBIDDEN_STARTUP_SETTINGS or key.startswith("bastion."):
            raise AuthorizationRejected(
                f"the startup setting {key} is not allowed through Bastion",
                hint="remove it from the connection options; Bastion chooses the upstream role",
            )


def _peer_address(peer: object) -> tuple[str, int]:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(peer[0]), int(peer[1])
    return "local", 0
