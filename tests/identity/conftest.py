"""Fixtures for the identity tests: signing keys and a local JWKS web server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .tokens import JwksServer, SigningKeyPair


@pytest.fixture(scope="session")
def rsa_key() -> SigningKeyPair:
    return SigningKeyPair("rsa-1", "RS256", rsa.generate_private_key(65537, 2048))


@pytest.fixture(scope="session")
def other_rsa_key() -> SigningKeyPair:
    return SigningKeyPair("rsa-1", "RS256", rsa.generate_private_key(65537, 2048))


@pytest.fixture(scope="session")
def rotated_rsa_key() -> SigningKeyPair:
    return SigningKeyPair("rsa-2", "RS256", rsa.generate_private_key(65537, 2048))


@pytest.fixture(scope="session")
def ec_key() -> SigningKeyPair:
    return SigningKeyPair("ec-1", "ES256", ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    state = JwksServer(document={"keys": []})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, headers, body = state.respond()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/jwks.json"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
