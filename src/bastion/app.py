"""Composition root: configuration -> data dir -> identities -> pipeline -> listeners.

Only this module (and the CLI) wires parts together; everything it builds is handed down
explicitly. `run` is the blocking entry point `bastion serve` and `bastion demo` use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bastion.admin.api import build_admin_app
from bastion.admin.approval_page import approval_links
from bastion.admin.auth import ApiAuthenticator
from bastion.admin.records import AdminRecorder
from bastion.admin.server import AdminServer
from bastion.approvals.notify import Channel, Notifier
from bastion.approvals.service import ApprovalService, ApprovalSettings
from bastion.approvals.wiring import ApprovalRecorder, open_state_store
from bastion.audit.fanout import FanoutSink
from bastion.audit.keys import data_dir_signer, file_signer
from bastion.audit.log_sink import JsonLogSink
from bastion.audit.record import AuditEntry
from bastion.audit.sink import AuditSinkAdapter
from bastion.audit.store import open_store
from bastion.audit.writer import AuditWriter
from bastion.catalog.cache import CatalogCache, build_catalog_cache
from bastion.config.model import (
    BastionConfig,
    NotificationKind,
    PostgresListener,
    Target,
    TlsFiles,
)
from bastion.datadir import DataDir
from bastion.identity.directory import IdentityDirectory
from bastion.identity.ratelimit import AuthRateLimiter
from bastion.identity.users_file import UsersFile
from bastion.logs import log_writer
from bastion.masking.bulk import ContentScanner
from bastion.masking.candidates import NATIVE_CONFIRM
from bastion.masking.plan import NATIVE_ROWS, MaskPlanBuilder
from bastion.masking.plan import mask_text as default_mask_text
from bastion.masking.result_planner import ResultMaskPlanner
from bastion.masking.spans import NATIVE_SPANS
from bastion.masking.tokens import TokenKey
from bastion.observability.metrics import BastionMetrics, MetricsSink
from bastion.pipeline.stages import PglastAnalyzer
from bastion.policy import PolicyEngine, PolicyHolder, policy_from_mapping, watch_policy
from bastion.session.audit_room import AuditRoom
from bastion.session.client import ClientProtocol
from bastion.session.gateway import Gateway, ListenerSettings, SessionLimits
from bastion.session.pg_relay import Recording
from bastion.session.tls import (
    CertificateFiles,
    ensure_auto_certificate,
    server_context,
    upstream_context,
)
from bastion.targets.runtime import CredentialRef, TargetRuntime
from bastion.wire.postgres.framing import skip_messages, skip_messages_in_python

log = logging.getLogger("bastion")

FAKE_SCRAM_KEY = "fake-scram"


def build_targets(config: BastionConfig) -> dict[str, TargetRuntime]:
    return {target.name: _target_runtime(config, target) for target in config.targets}


def _target_runtime(config: BastionConfig, target: Target) -> TargetRuntime:
    mode = target.tls.value
    return TargetRuntime(
        name=target.name,
        database=target.database,
        host=target.host,
        port=target.port,
        unix_socket=target.unix_socket,
        tls_mode=mode,
        ssl_context=upstream_context(mode, target.tls_ca),
        labels=dict(target.labels),
        connect_timeout=target.connect_timeout_seconds,
        credentials={
            name: CredentialRef(user=cred.user, password_ref=cred.password)
            for name, cred in target.credentials.items()
        },
        resolve_secret=config.resolve_secret,
    )


DEFAULT_POLICY = {"version": 1, "default_effect": "allow"}


def build_decider(config: BastionConfig) -> PolicyHolder | PolicyEngine:
    """The policy file's holder, or without one the built-in policy: allow, guardrails on."""
    if config.policy is not None:
        return PolicyHolder(config.policy)
    return PolicyEngine(policy_from_mapping(DEFAULT_POLICY, source="<built-in policy>"))


def build_audit_writer(config: BastionConfig, data_dir: DataDir) -> AuditWriter | None:
    """The audit record's writer thread, started; None when the record is switched off."""
    settings = config.audit
    if not settings.enabled:
        return None
    location: str | Path = settings.store
    if not settings.store.startswith(("postgresql://", "postgres://")):
        location = _under(data_dir.path, Path(settings.store))
    store = open_store(location, schema=settings.schema_name)
    signer = (
        file_signer(settings.signing_key)
        if settings.signing_key is not None
        else data_dir_signer(data_dir)
    )
    writer = AuditWriter(
        store,
        signer,
        mode=settings.mode,
        queue_size=settings.queue_size,
        batch_size=settings.batch_size,
        checkpoint_every=settings.checkpoint_every,
        checkpoint_seconds=settings.checkpoint_seconds,
    )
    return writer.start()


MASKING_KEY = "masking-hash-key"
CATALOG_FIRST_LOAD_SECONDS = 10.0


def build_masking(
    config: BastionConfig, data_dir: DataDir, targets: Mapping[str, TargetRuntime]
) -> tuple[ResultMaskPlanner, list[CatalogCache]] | None:
    """The mask planner over one catalog cache per target (not loaded yet); None when masking
    is switched off."""
    settings = config.masking
    if not settings.enabled:
        return None
    strategies = settings.strategy_overrides()
    key_bytes = (
        settings.hash_key.read_bytes().strip()
        if settings.hash_key is not None
        else data_dir.secret(MASKING_KEY)
    )
    caches: dict[str, CatalogCache] = {}
    for target in config.targets:
        caches[target.name] = build_catalog_cache(
            targets[target.name],
            target.masking_labels,
            strategies,
            tls_ca=target.tls_ca,
            ttl_seconds=settings.catalog_ttl_seconds,
        )
    scanner = ContentScanner(user_patterns=settings.user_patterns())
    builder = MaskPlanBuilder(scanner=scanner, key=TokenKey(key_bytes), strategies=strategies)
    planner = ResultMaskPlanner(builder, caches)
    planner.inference_effect = settings.inference_guard
    planner.moving_effect = settings.moving_masked_data
    return planner, list(caches.values())


async def load_catalogs(caches: list[CatalogCache]) -> None:
    """Load every target's catalog before clients arrive (bounded), then keep them fresh."""
    loop = asyncio.get_running_loop()

    def first_load(cache: CatalogCache) -> None:
        try:
            cache.refresh()
        except Exception as exc:  # the cache retries by itself; masking fails closed meanwhile
            log.warning(
                "target catalog not loaded",
                extra={"fields": {"target": cache.name, "error": str(exc)}},
            )

    loads = [loop.run_in_executor(None, first_load, cache) for cache in caches]
    if loads:
        await asyncio.wait(loads, timeout=CATALOG_FIRST_LOAD_SECONDS)
    for cache in caches:
        cache.start()


def admin_base_url(config: BastionConfig) -> str | None:
    """Where approvers reach the admin API, for links in notifications."""
    if config.approvals.public_url:
        return config.approvals.public_url.rstrip("/")
    admin = config.listeners.admin
    if admin is None:
        return None
    host = admin.host if admin.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{admin.port}"


def build_approvals(
    config: BastionConfig,
    data_dir: DataDir,
    writer: AuditWriter | None = None,
    metrics: BastionMetrics | None = None,
) -> tuple[ApprovalService, Notifier | None]:
    """The approval service over the configured state store (not started), and the notifier
    its recorder uses, if any notifications are configured."""
    settings = config.approvals
    store = open_state_store(config.state.store, data_dir.path, config.state.schema_name)
    service = ApprovalService(
        store,
        ApprovalSettings(
            hold_seconds=settings.hold_seconds,
            expire_seconds=settings.expire_seconds,
            grant_seconds=settings.grant_seconds,
            poll_seconds=settings.poll_seconds,
        ),
    )

    recorder = ApprovalRecorder(
        submit=_audit_submit(writer) if writer is not None else None,
        count_event=(lambda event: metrics.approval_events.labels(event).inc())
        if metrics
        else None,
        count_delivery=(
            lambda channel, ok: metrics.approval_notifications.labels(
                channel, "delivered" if ok else "failed"
            ).inc()
        )
        if metrics
        else None,
    )
    channels = [
        Channel(
            name=f"{spec.kind}-{index}",
            kind="slack" if spec.kind is NotificationKind.SLACK else "webhook",
            url=config.resolve_secret(spec.url)
            if spec.url.startswith(("env:", "file:"))
            else spec.url,
            secret=config.resolve_secret(spec.secret).encode() if spec.secret else None,
            retries=spec.retries,
            timeout=spec.timeout_seconds,
        )
        for index, spec in enumerate(settings.notifications, start=1)
    ]
    if channels:
        base = admin_base_url(config)
        links = approval_links(base) if base is not None else None
        recorder.notifier = Notifier(channels, links=links, on_delivery=recorder.delivered)
    service.add_listener(recorder)
    return service, recorder.notifier


def _audit_submit(writer: AuditWriter) -> Callable[[str, dict[str, object]], None]:
    """Records that are not session events (approvals, admin actions) into the audit record."""

    def submit(kind: str, payload: dict[str, object]) -> None:
        entry = AuditEntry(kind, payload)
        if not writer.submit(entry, _ignore_durable if writer.mode == "sync" else None):
            raise RuntimeError("the audit record refused the event")

    return submit


def _ignore_durable(durable: bool) -> None:
    """Approval events in sync mode: their durability does not gate any client reply."""


def build_gateway(
    config: BastionConfig,
    data_dir: DataDir,
    writer: AuditWriter | None = None,
    metrics: BastionMetrics | None = None,
    approvals: ApprovalService | None = None,
    masking: ResultMaskPlanner | None = None,
    targets: dict[str, TargetRuntime] | None = None,
) -> Gateway:
    identities = config.identities
    users_file = UsersFile(_under(data_dir.path, identities.users_file))
    directory = IdentityDirectory.from_sources(
        identities.users, users_file, identities.oidc, data_dir.secret(FAKE_SCRAM_KEY)
    )
    limits = config.limits
    return Gateway(
        targets=targets if targets is not None else build_targets(config),
        directory=directory,
        rate_limiter=AuthRateLimiter(max_failures=limits.auth_failures_per_minute),
        analyzer=PglastAnalyzer(),
        decider=build_decider(config),
        audit=FanoutSink(
            [
                JsonLogSink(writer=log_writer()),
                *([AuditSinkAdapter(writer)] if writer else []),
                *([MetricsSink(metrics)] if metrics else []),
            ],
            writer,
        ),
        limits=SessionLimits(
            startup_timeout=limits.startup_timeout_seconds,
            max_startup_packet=limits.max_startup_packet_bytes,
            max_message=limits.max_message_bytes,
            max_client_connections=limits.max_client_connections,
            write_buffer_high_water=limits.write_buffer_high_water_bytes,
        ),
        approvals=approvals,
        masking=masking,
        recording=_recording(config, masking),
        audit_room=_audit_room(config, writer),
    )


def _recording(config: BastionConfig, masking: ResultMaskPlanner | None) -> Recording | None:
    """What statement records keep besides the normalized text, scrubbed by the detectors."""
    settings = config.audit
    full_text = settings.statement_text == "scrubbed"
    if not full_text and not settings.parameters:
        return None
    detect = masking.mask_text if masking is not None else default_mask_text

    def scrub(text: str) -> str:
        return detect(text)[0]

    return Recording(full_text=full_text, parameters=settings.parameters, scrub=scrub)


def _audit_room(config: BastionConfig, writer: AuditWriter | None) -> AuditRoom | None:
    """Where statements wait while the audit record's queue is full."""
    if writer is None:
        return None
    room = AuditRoom(lambda: writer.accepting, config.audit.wait_seconds)
    writer.on_space = room.space_freed
    return room


def _under(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else base / path


def listener_settings(config: BastionConfig, data_dir: DataDir) -> list[ListenerSettings]:
    return [_listener(spec, data_dir) for spec in config.listeners.postgres]


def _listener(spec: PostgresListener, data_dir: DataDir) -> ListenerSettings:
    context = None
    if isinstance(spec.tls, TlsFiles):
        context = server_context(CertificateFiles(cert=spec.tls.cert, key=spec.tls.key))
    elif spec.tls == "auto":
        context = server_context(ensure_auto_certificate(data_dir.tls_dir))
    return ListenerSettings(
        host=spec.host,
        port=spec.port,
        tls_context=context,
        require_tls=spec.require_tls,
        trust_loopback=spec.trust_loopback,
        proxy_networks=tuple(spec.proxy_protocol.trusted_networks)
        if spec.proxy_protocol is not None
        else (),
    )


@dataclass
class RunningBastion:
    """Listeners that are accepting connections."""

    gateway: Gateway
    servers: list[asyncio.Server] = field(default_factory=list)
    admin: AdminServer | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    audit_writer: AuditWriter | None = None
    metrics: BastionMetrics = field(default_factory=BastionMetrics)
    approvals: ApprovalService | None = None
    notifier: Notifier | None = None
    catalogs: list[CatalogCache] = field(default_factory=list)

    @property
    def accepting(self) -> bool:
        return bool(self.servers) and all(server.is_serving() for server in self.servers)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                found.append((str(host), int(port)))
        return found

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.admin is not None:
            await self.admin.stop()
        for server in self.servers:
            server.close()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=5)
        for cache in self.catalogs:
            cache.close(timeout=1)
        self.catalogs = []
        if self.approvals is not None:
            approvals, self.approvals = self.approvals, None
            await approvals.aclose()
            if self.notifier is not None:
                await self.notifier.aclose()
            await asyncio.get_running_loop().run_in_executor(None, approvals.store.close)
        if self.audit_writer is not None:
            writer, self.audit_writer = self.audit_writer, None
            unwritten = await asyncio.get_running_loop().run_in_executor(None, writer.close)
            if unwritten:
                log.error(
                    "audit records left unwritten at shutdown",
                    extra={"fields": {"records": unwritten, "error": writer.last_error or ""}},
                )
            writer.store.close()


async def start(config: BastionConfig, data_dir: DataDir) -> RunningBastion:
    writer = build_audit_writer(config, data_dir)
    metrics = BastionMetrics()
    try:
        approvals, notifier = build_approvals(config, data_dir, writer, metrics)
    except BaseException:
        if writer is not None:
            writer.close()
            writer.store.close()
        raise
    targets = build_targets(config)
    masking = build_masking(config, data_dir, targets)
    planner, caches = masking if masking is not None else (None, [])
    gateway = build_gateway(config, data_dir, writer, metrics, approvals, planner, targets)
    running = RunningBastion(
        gateway=gateway,
        audit_writer=writer,
        metrics=metrics,
        approvals=approvals,
        notifier=notifier,
        catalogs=caches,
    )
    approvals.start()
    if gateway.audit_room is not None:
        gateway.audit_room.attach(asyncio.get_running_loop())
    metrics.bind_gauges(
        active_sessions=lambda: gateway.active_sessions,
        approvals_waiting=lambda: approvals.waiting,
        approvals_pending=lambda: approvals.pending,
        sessions_by_target=gateway.sessions.count_by_target,
        audit_queue_depth=(lambda: writer.queue_depth) if writer else None,
        audit_lag_seconds=(lambda: writer.lag_seconds) if writer else None,
        audit_healthy=(lambda: float(writer.healthy)) if writer else None,
    )
    loop = asyncio.get_running_loop()
    try:
        await load_catalogs(caches)
        for settings in listener_settings(config, data_dir):
            server = await loop.create_server(
                lambda s=settings: ClientProtocol(gateway, s),  # type: ignore[misc]
                settings.host,
                settings.port,
                reuse_address=True,
                backlog=1024,
            )
            running.servers.append(server)
        record_admin = AdminRecorder(
            _audit_submit(writer) if writer is not None else None,
            count=metrics.count_admin_action,
        )
        decider = gateway.decider
        if isinstance(decider, PolicyHolder):
            decider.on_reload = record_admin
            running.tasks.append(loop.create_task(watch_policy(decider, asyncio.sleep)))
            if hasattr(signal, "SIGHUP"):
                loop.add_signal_handler(signal.SIGHUP, decider.reload)
            log.info(
                "policy loaded",
                extra={"fields": {"policy": str(decider.path), "version": decider.version}},
            )
        admin = config.listeners.admin
        if admin is not None:
            app = build_admin_app(
                running,
                metrics,
                approvals=approvals,
                auth=ApiAuthenticator(approvals, lambda: gateway.directory),
                public_url=admin_base_url(config),
                sessions=gateway.sessions,
                operator_groups=admin.operator_groups,
                record_admin=record_admin,
            )
            running.admin = AdminServer(app, admin.host, admin.port)
            await running.admin.start()
    except BaseException:
        await running.close()
        raise
    for host, port in running.addresses:
        log.info(
            "listening",
            extra={"fields": {"protocol": "postgres", "host": host, "port": port}},
        )
    missing = missing_native_parts()
    if missing:
        log.warning(
            "running without C extensions: their Python twins are correct but several times"
            " slower; reinstall Bastion with a C compiler and Python's headers",
            extra={"fields": {"missing": missing}},
        )
    return running


def missing_native_parts() -> list[str]:
    """The C extensions this installation lacks (built by `pip install`; see setup.py)."""
    missing = []
    if not NATIVE_ROWS:
        missing.append("bastion.masking._rowmask")
    if not NATIVE_CONFIRM:
        missing.append("bastion.masking._confirm")
    if not NATIVE_SPANS:
        missing.append("bastion.masking._spans")
    if skip_messages is skip_messages_in_python:
        missing.append("bastion.wire.postgres._walk")
    return missing


async def serve_until_stopped(
    config: BastionConfig,
    data_dir: DataDir,
    on_started: Callable[[RunningBastion], Awaitable[None]] | None = None,
) -> None:
    """Run Bastion until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    running = await start(config, data_dir)
    try:
        if on_started is not None:
            await on_started(running)
        await stop.wait()
        log.info("stopping")
    finally:
        await running.close()
        writer = log_writer()
        if writer is not None:
            writer.flush()


# How long another thread (the audit writer) may keep the interpreter once the event loop
# asks for it. Python's 5 ms let one audit batch hold a waiting client's reply for as long as
# the batch took: 1-client p99 2 ms; at 0.1 ms it was 0.8-0.9 ms, at no cost in throughput.
THREAD_SWITCH_SECONDS = 0.0001


def run_event_loop(main: Awaitable[None]) -> None:
    """Run a coroutine on uvloop when it is available, else on the default loop."""
    sys.setswitchinterval(THREAD_SWITCH_SECONDS)
    try:
        import uvloop
    except ImportError:  # uvloop does not exist on every platform
        asyncio.run(main)  # type: ignore[arg-type]
        return
    if sys.version_info >= (3, 12):
        uvloop.run(main)
    else:
        uvloop.install()
        asyncio.run(main)  # type: ignore[arg-type]
