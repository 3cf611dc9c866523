"""The catalog cache against the real server: loading, TTL, invalidation, the worker thread,
failures that keep the last snapshot, and errors that never carry a password."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from bastion.catalog.cache import CatalogCache, build_catalog_cache
from bastion.catalog.connect import CatalogSource
from bastion.catalog.errors import CatalogUnavailable
from bastion.catalog.loader import read_catalog
from bastion.catalog.model import Catalog
from bastion.masking.classes import SensitiveClass, Strategy
from bastion.masking.classifier import Action
from bastion.targets.runtime import CredentialRef, TargetRuntime

from .conftest import SampleShop

SECRET = "correct-horse-battery-staple-7731"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(sample_shop: SampleShop, clock: FakeClock) -> Iterator[CatalogCache]:
    source = CatalogSource(sample_shop.runtime())
    cache = CatalogCache(
        "shop",
        lambda: read_catalog(source),
        {"public.customers.notes": "email:hash"},
        {SensitiveClass.PHONE: Strategy.REDACT},
        ttl_seconds=60,
        clock=clock,
    )
    yield cache
    cache.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def secret_runtime(host: str, port: int, database: str, user: str) -> TargetRuntime:
    return TargetRuntime(
        name="shop",
        database=database,
        host=host,
        port=port,
        unix_socket=None,
        tls_mode="disable",
        ssl_context=None,
        labels={},
        connect_timeout=2,
        credentials={"default": CredentialRef(user, "env:SHOP_PASSWORD")},
        resolve_secret=lambda _ref: SECRET,
    )


def test_nothing_is_known_before_the_first_load(cache: CatalogCache) -> None:
    assert not cache.ready
    assert cache.stale
    assert cache.snapshot is None
    assert dict(cache.classifications) == {}


def test_refresh_classifies_with_labels_and_strategies(
    cache: CatalogCache, sample_shop: SampleShop
) -> None:
    snapshot = cache.refresh()
    assert cache.ready and not cache.stale and cache.last_error is None
    customers = sample_shop.oid("public.customers")
    email = cache.classifications[(customers, 3)]
    assert (email.action, email.sensitive_class) == (Action.MASK, SensitiveClass.EMAIL)
    notes = cache.classifications[(customers, 9)]
    assert (notes.sensitive_class, notes.strategy) == (SensitiveClass.EMAIL, Strategy.HASH)
    phone = cache.classifications[(customers, 4)]
    assert phone.strategy is Strategy.REDACT
    assert snapshot.generation == 1
    assert snapshot.unmatched_labels == ()
    with pytest.raises(TypeError):
        cache.classifications[(customers, 3)] = email  # type: ignore[index]


def test_the_ttl_brings_in_new_tables(
    cache: CatalogCache, sample_shop: SampleShop, clock: FakeClock
) -> None:
    cache.refresh()
    sample_shop.execute("CREATE TABLE ttl_probe (id integer, api_key text)")
    probe = sample_shop.oid("public.ttl_probe")
    clock.now += 59
    assert not cache.stale
    assert cache.refresh_if_stale()
    assert (probe, 2) not in cache.classifications
    clock.now += 1
    assert cache.stale
    assert cache.refresh_if_stale()
    assert cache.classifications[(probe, 2)].sensitive_class is SensitiveClass.API_KEY
    assert cache.snapshot is not None and cache.snapshot.generation == 2


def test_invalidate_brings_in_new_tables_through_the_worker(
    cache: CatalogCache, sample_shop: SampleShop
) -> None:
    cache.start()
    assert cache.wait_fresh(10)
    first = cache.snapshot
    assert first is not None
    sample_shop.execute("CREATE TABLE invalidate_probe (id integer, ssn text)")
    probe = sample_shop.oid("public.invalidate_probe")
    assert (probe, 2) not in cache.classifications
    cache.invalidate()
    assert cache.wait_fresh(10)
    assert cache.classifications[(probe, 2)].sensitive_class is SensitiveClass.SSN
    second = cache.snapshot
    assert second is not None and second.generation > first.generation
    # The first snapshot is untouched: readers holding it never see a mix.
    assert (probe, 2) not in first.classifications


def test_the_worker_stops_on_close(cache: CatalogCache) -> None:
    cache.start()
    assert cache.wait_fresh(10)
    cache.close()
    assert not [t for t in threading.enumerate() if t.name == "bastion-catalog-shop"]


def test_a_failed_load_keeps_the_last_snapshot(sample_shop: SampleShop, clock: FakeClock) -> None:
    source = CatalogSource(sample_shop.runtime())
    failing = {"now": False}

    def load() -> Catalog:
        if failing["now"]:
            raise CatalogUnavailable('cannot read the catalog of target "shop": test outage')
        return read_catalog(source)

    cache = CatalogCache("shop", load, ttl_seconds=60, retry_seconds=5, clock=clock)
    cache.refresh()
    before = cache.snapshot
    failing["now"] = True
    cache.invalidate()
    assert not cache.refresh_if_stale()
    assert cache.snapshot is before and cache.ready
    assert cache.last_error == 'cannot read the catalog of target "shop": test outage'
    assert cache.stale
    failing["now"] = False
    assert cache.refresh_if_stale()
    assert cache.last_error is None


def test_an_internal_error_is_reported_without_its_details(
    sample_shop: SampleShop, clock: FakeClock
) -> None:
    def load() -> Catalog:
        raise KeyError(SECRET)

    cache = CatalogCache("shop", load, clock=clock)
    with pytest.raises(CatalogUnavailable) as raised:
        cache.refresh()
    assert raised.value.message == (
        'cannot classify the catalog of target "shop": internal error (KeyError)'
    )
    assert cache.last_error is not None and SECRET not in cache.last_error


def test_an_unreachable_target_is_a_clean_error_without_the_password(
    sample_shop: SampleShop,
) -> None:
    endpoint = sample_shop.endpoint
    port = closed_port()
    runtime = secret_runtime(endpoint.host, port, sample_shop.database, endpoint.superuser)
    cache = build_catalog_cache(runtime, {}, {})
    with pytest.raises(CatalogUnavailable) as raised:
        cache.refresh()
    error = raised.value
    assert error.message.startswith(
        f'cannot read the catalog of target "shop" at {endpoint.host}:{port}: '
    )
    assert "refused" in error.message.lower()
    assert error.sqlstate == "08006"
    assert error.__cause__ is None and error.__suppress_context__
    assert SECRET not in str(error.__context__)
    for text in (error.message, str(error), repr(error), error.hint or "", cache.last_error):
        assert SECRET not in (text or "")
        assert "password" not in (text or "")
    assert not cache.ready


def test_a_missing_database_is_reported_by_name(sample_shop: SampleShop) -> None:
    endpoint = sample_shop.endpoint
    runtime = secret_runtime(endpoint.host, endpoint.port, "no_such_db_here", endpoint.superuser)
    with pytest.raises(CatalogUnavailable) as raised:
        read_catalog(CatalogSource(runtime))
    assert 'database "no_such_db_here" does not exist' in raised.value.message
    assert SECRET not in raised.value.message


def test_connection_settings(tmp_path: Path) -> None:
    runtime = secret_runtime("db.example.com", 5433, "shop", "app")
    kwargs = CatalogSource(runtime).connection_kwargs()
    assert kwargs["host"] == "db.example.com" and kwargs["port"] == 5433
    assert kwargs["dbname"] == "shop" and kwargs["user"] == "app"
    assert kwargs["sslmode"] == "disable" and kwargs["password"] == SECRET
    assert kwargs["connect_timeout"] == 2
    assert kwargs["application_name"] == "bastion-catalog"

    verify = replace(runtime, tls_mode="verify-full")
    assert CatalogSource(verify).connection_kwargs()["sslrootcert"] == "system"
    ca = tmp_path / "ca.pem"
    kwargs = CatalogSource(verify, tls_ca=ca).connection_kwargs()
    assert (kwargs["sslmode"], kwargs["sslrootcert"]) == ("verify-full", str(ca))
    assert (
        "sslrootcert" not in CatalogSource(replace(runtime, tls_mode="require")).connection_kwargs()
    )

    local = replace(runtime, host=None, unix_socket=tmp_path, tls_mode="require")
    kwargs = CatalogSource(local).connection_kwargs()
    assert (kwargs["host"], kwargs["sslmode"]) == (str(tmp_path), "disable")

    trusted = replace(runtime, credentials={"default": CredentialRef("app", None)})
    assert "password" not in CatalogSource(trusted).connection_kwargs()
