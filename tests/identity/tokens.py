"""Signing keys, JWKS documents, token minting and a fake clock for the OIDC tests."""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://idp.example.com/"
AUDIENCE = "bastion"


@dataclass(frozen=True)
class SigningKeyPair:
    kid: str
    alg: str
    private: Any

    def jwk(self, *, with_alg: bool = True) -> dict[str, Any]:
        public = self.private.public_key()
        algorithm = RSAAlgorithm if self.alg.startswith(("RS", "PS")) else ECAlgorithm
        data: dict[str, Any] = json.loads(algorithm.to_jwk(public))
        data.update(kid=self.kid, use="sig")
        if with_alg:
            data["alg"] = self.alg
        return data

    def mint(self, claims: dict[str, Any], **header: Any) -> str:
        headers: dict[str, Any] = {"kid": self.kid, **header}
        if headers.get("kid") is None:
            del headers["kid"]
        return jwt.encode(claims, self.private, algorithm=self.alg, headers=headers)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64url(signature)}"


def jwks(*keys: SigningKeyPair) -> dict[str, Any]:
    return {"keys": [key.jwk() for key in keys]}


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "u-123",
        "preferred_username": "alice",
        "groups": ["analysts", "oncall"],
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def write_jwks(path: Path, document: dict[str, Any]) -> Path:
    """Replace the file the way operators should: a new file renamed into place."""
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(document))
    temp.replace(path)
    return path


@dataclass
class JwksServer:
    """A local web server for JWKS documents; `document` may be changed between requests."""

    document: Any
    status: int = 200
    redirect_to: str | None = None
    requests: int = 0
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def respond(self) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requests += 1
            if self.redirect_to is not None:
                return 302, {"Location": self.redirect_to}, b""
            return (
                self.status,
                {"Content-Type": "application/json"},
                json.dumps(self.document).encode(),
            )


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
