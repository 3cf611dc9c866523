"""A listener behind a load balancer takes the client address from PROXY protocol headers,
and only from the networks it trusts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.demo.sample import SampleSummary
from bastion.wire import proxy_protocol
from support.bastion import BastionProcess, free_port, running_bastion
from support.rawpg import RawConnection
from support.servers import PostgresEndpoint

from .conftest import shop_target, upstream_env


@pytest.fixture(scope="module")
def proxied(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_endpoint: PostgresEndpoint,
    shop_db: tuple[str, SampleSummary],
) -> Iterator[tuple[BastionProcess, int]]:
    trusted, untrusted = free_port(), free_port()
    listeners = [
        {
            "host": "127.0.0.1",
            "port": trusted,
            "tls": "off",
            "proxy_protocol": {"trusted_networks": ["127.0.0.0/8"]},
        },
        {
            "host": "127.0.0.1",
            "port": untrusted,
            "tls": "off",
            "proxy_protocol": {"trusted_networks": ["192.0.2.0/24"]},
        },
    ]
    workdir: Path = tmp_path_factory.mktemp("proxied")
    with running_bastion(
        workdir,
        [shop_target(postgres_endpoint, shop_db[0])],
        port=trusted,
        extra={"listeners": {"postgres": listeners}},
        env=upstream_env(postgres_endpoint),
    ) as proc:
        yield proc, untrusted


def _connect_event(proc: BastionProcess, source_ip: str) -> dict[str, object]:
    """The connect record for `source_ip`; Bastion may write it just after the login."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for event in proc.log_events():
            if event.get("event") == "connect" and event.get("source_ip") == source_ip:
                return event
        time.sleep(0.05)
    raise AssertionError(f"no connect record for {source_ip}")


@pytest.mark.parametrize("encode", [proxy_protocol.encode_v1, proxy_protocol.encode_v2])
def test_client_address_comes_from_the_header(
    proxied: tuple[BastionProcess, int], encode: object
) -> None:
    proc, _ = proxied
    source = "203.0.113.77" if encode is proxy_protocol.encode_v1 else "203.0.113.78"
    header = encode(source, 41000, "127.0.0.1", proc.port)  # type: ignore[operator]
    with RawConnection.open("127.0.0.1", proc.port) as conn:
        conn.send(header)
        session = conn.login("alice", "alice-secret-1", database="shop")
        assert session is not None
    event = _connect_event(proc, source)
    assert event["source_port"] == 41000
    assert event["proxy_peer"] == "127.0.0.1"


def test_trusted_peer_without_a_header_is_refused(proxied: tuple[BastionProcess, int]) -> None:
    proc, _ = proxied
    with RawConnection.open("127.0.0.1", proc.port) as conn:
        conn.startup(user="alice", database="shop")
        assert conn.wait_closed(5)


def test_header_from_an_untrusted_peer_is_not_believed(proxied: tuple[BastionProcess, int]) -> None:
    proc, untrusted = proxied
    with RawConnection.open("127.0.0.1", untrusted) as conn:
        conn.send(proxy_protocol.encode_v1("203.0.113.99", 1, "127.0.0.1", untrusted))
        error = conn.read_error()
    assert error.sqlstate == "08P01"
    assert all(e.get("source_ip") != "203.0.113.99" for e in proc.log_events())
