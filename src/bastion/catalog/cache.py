"""The catalog cache of one target: the current classifications, kept fresh off the event loop.

This module owns `CatalogCache`: an immutable snapshot (catalog, (OID, attnum) ->
Classification, labels that matched nothing) swapped in whole when a load succeeds, so readers
on any thread see either the old or the new snapshot, never a mix. Loading blocks (a database
connection, then pure classification), so it runs on a worker thread: `start()` runs one that
reloads when the TTL expires or `invalidate()` asks for it; `refresh()` is the same load for
callers that schedule it themselves (`loop.run_in_executor`). A failed load keeps the previous
snapshot and records `last_error`; it is retried after `retry_seconds`. Nothing here logs or
stores a password: the source resolves it per connection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from bastion.catalog.classify import classify_catalog
from bastion.catalog.connect import CatalogSource
from bastion.catalog.errors import CatalogUnavailable
from bastion.catalog.loader import read_catalog
from bastion.catalog.model import Catalog, ColumnKey
from bastion.errors import BastionError
from bastion.masking.classes import SensitiveClass, Strategy
from bastion.masking.classifier import Action, Classification
from bastion.targets.runtime import TargetRuntime

log = logging.getLogger("bastion.catalog")

DEFAULT_TTL_SECONDS = 300.0
DEFAULT_RETRY_SECONDS = 10.0
_NO_CLASSIFICATIONS: Mapping[ColumnKey, Classification] = MappingProxyType({})


@dataclass(frozen=True)
class CatalogSnapshot:
    """One successful load: what the catalog held and how each column is classified."""

    catalog: Catalog
    classifications: Mapping[ColumnKey, Classification]
    unmatched_labels: tuple[str, ...]
    loaded_at: float  # time.monotonic() when the load finished
    generation: int  # 1 for the first load, then one more per load

    def count(self, action: Action) -> int:
        return sum(1 for decided in self.classifications.values() if decided.action is action)


class CatalogCache:
    """The classifications of one target's columns, reloaded on TTL expiry and on request."""

    def __init__(
        self,
        name: str,
        load: Callable[[], Catalog],
        labels: Mapping[str, str] | None = None,
        strategies: Mapping[SensitiveClass, Strategy] | None = None,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_seconds <= 0 or retry_seconds <= 0:
            raise ValueError("ttl_seconds and retry_seconds must be positive")
        self.name = name
        self.ttl_seconds = ttl_seconds
        self.retry_seconds = min(retry_seconds, ttl_seconds)
        self._load = load
        self._labels = dict(labels or {})
        self._strategies = dict(strategies or {})
        self._clock = clock
        self._snapshot: CatalogSnapshot | None = None
        self._last_error: str | None = None
        # Loads are numbered by request: invalidate() asks for a newer one. `_covered` is the
        # request the current snapshot answers, `_attempted` the one the last load tried.
        self._requested = 1
        self._covered = 0
        self._attempted = 0
        self._failed_at: float | None = None
        self._state = threading.Condition()
        self._loading = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"CatalogCache({self.name!r}, ready={self.ready})"

    # -- what readers use (any thread, never blocks) -----------------------------------------

    @property
    def snapshot(self) -> CatalogSnapshot | None:
        """The current snapshot; None until the first load succeeds."""
        return self._snapshot

    @property
    def classifications(self) -> Mapping[ColumnKey, Classification]:
        """(table OID, attnum) -> Classification, read-only; empty until the first load."""
        snapshot = self._snapshot
        return snapshot.classifications if snapshot is not None else _NO_CLASSIFICATIONS

    @property
    def ready(self) -> bool:
        """Whether a load has succeeded (the classifications may since have gone stale)."""
        return self._snapshot is not None

    @property
    def last_error(self) -> str | None:
        """Why the last load failed; None once a load succeeds again."""
        return self._last_error

    @property
    def stale(self) -> bool:
        """Whether the snapshot is missing, invalidated since it was read, or past its TTL."""
        with self._state:
            snapshot = self._snapshot
            return (
                snapshot is None
                or self._covered < self._requested
                or self._clock() >= snapshot.loaded_at + self.ttl_seconds
            )

    # -- loading -----------------------------------------------------------------------------

    def invalidate(self) -> None:
        """Ask for a new load (after DDL on this target). Returns at once; the worker started
        by `start()` loads, or the next `refresh()` / `refresh_if_stale()` does."""
        with self._state:
            self._requested += 1
            self._state.notify_all()

    def refresh(self) -> CatalogSnapshot:
        """Load the catalog now and swap the snapshot in. Blocks: call from a worker thread.

        Raises CatalogUnavailable (the previous snapshot stays in use) when it fails.
        """
        with self._loading:
            with self._state:
                request = self._requested
            try:
                catalog = self._load()
                classified = classify_catalog(catalog, self._labels, self._strategies)
            except Exception as exc:
                error = _as_catalog_error(self.name, exc)
                with self._state:
                    self._attempted = max(self._attempted, request)
                    self._failed_at = self._clock()
                    self._last_error = error.message
                    self._state.notify_all()
                if error is exc:
                    raise
                raise error from exc
            with self._state:
                previous = self._snapshot
                snapshot = CatalogSnapshot(
                    catalog=catalog,
                    classifications=MappingProxyType(dict(classified.classifications)),
                    unmatched_labels=classified.unmatched_labels,
                    loaded_at=self._clock(),
                    generation=1 if previous is None else previous.generation + 1,
                )
                self._snapshot = snapshot
                self._covered = max(self._covered, request)
                self._attempted = max(self._attempted, request)
                self._failed_at = None
                self._last_error = None
                self._state.notify_all()
            return snapshot

    def refresh_if_stale(self) -> bool:
        """`refresh()` when `stale`; False when a needed load failed. Blocks like refresh()."""
        if not self.stale:
            return True
        try:
            self.refresh()
        except CatalogUnavailable:
            return False
        return True

    def wait_fresh(self, timeout: float | None = None) -> bool:
        """Wait until a load asked for before this call has finished; True if it succeeded.

        Someone must be loading: the worker (`start()`), or a thread calling `refresh()`.
        """
        with self._state:
            request = self._requested
            self._state.wait_for(lambda: self._attempted >= request or self._closed, timeout)
            return self._covered >= request

    # -- the worker thread -------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread that keeps the snapshot fresh (first load at once)."""
        with self._state:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"bastion-catalog-{self.name}", daemon=True
            )
        self._thread.start()

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the worker; a load in progress finishes in the background (daemon thread)."""
        with self._state:
            self._closed = True
            self._state.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._state:
                while not self._closed and (delay := self._due() - self._clock()) > 0:
                    self._state.wait(delay)
                if self._closed:
                    return
                first = self._snapshot is None
            try:
                snapshot = self.refresh()
            except CatalogUnavailable as exc:
                log.warning(
                    "catalog load failed",
                    extra={"fields": {"target": self.name, "error": exc.message}},
                )
                continue
            fields = {
                "target": self.name,
                "columns": len(snapshot.classifications),
                "masked": snapshot.count(Action.MASK),
                "scanned": snapshot.count(Action.SCAN),
                "unmatched_labels": list(snapshot.unmatched_labels),
            }
            # The first load is worth a line; TTL reloads are routine.
            log.log(
                logging.INFO if first else logging.DEBUG, "catalog loaded", extra={"fields": fields}
            )

    def _due(self) -> float:
        """When the next load should start (clock time); call with `_state` held."""
        if self._failed_at is not None and self._attempted >= self._requested:
            return self._failed_at + self.retry_seconds
        if self._covered < self._requested or self._snapshot is None:
            return float("-inf")
        return self._snapshot.loaded_at + self.ttl_seconds


def _as_catalog_error(name: str, exc: Exception) -> CatalogUnavailable:
    if isinstance(exc, CatalogUnavailable):
        return exc
    if isinstance(exc, BastionError):
        return CatalogUnavailable(exc.message, hint=exc.hint)
    # A bug in classification must not pass for an outage, nor leak details: name its type.
    return CatalogUnavailable(
        f'cannot classify the catalog of target "{name}": internal error ({type(exc).__name__})'
    )


def build_catalog_cache(
    target: TargetRuntime,
    labels: Mapping[str, str],
    strategies: Mapping[SensitiveClass, Strategy],
    *,
    tls_ca: Path | None = None,
    ttl_seconds: float = DEFAULT_TTL_SECONDS,
    retry_seconds: float = DEFAULT_RETRY_SECONDS,
) -> CatalogCache:
    """The catalog cache of `target`, logging in with its default credential.

    `tls_ca` is the target's configured CA bundle (the runtime only holds an SSLContext, which
    libpq cannot use); `labels` are the target's masking_labels, `strategies` the configured
    per-class overrides. Nothing is loaded until `start()` or `refresh()`.
    """
    source = CatalogSource(target, tls_ca)
    return CatalogCache(
        target.name,
        lambda: read_catalog(source),
        labels,
        strategies,
        ttl_seconds=ttl_seconds,
        retry_seconds=retry_seconds,
    )
