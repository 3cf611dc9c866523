"""Deterministic tokens for the `hash` strategy: keyed HMAC-SHA256 of a value's canonical form.

This module owns `TokenKey` and the shapes a digest is turned into: a text token
(`tok_` + 16 base32 characters), a non-negative integer of a given width, a version-8 UUID, a
day offset. The same value under the same key always gives the same token, so joins, GROUP BY
and DISTINCT keep their meaning on masked data; without the key the value cannot be recovered
or confirmed by guessing (unlike a plain hash of an e-mail address). Callers pass the canonical
form of the value (its text, or its integer in decimal) so text and binary results agree.
"""

from __future__ import annotations

import base64
import hmac

from bastion.errors import ConfigError

MIN_KEY_BYTES = 16
TEXT_TOKEN_PREFIX = "tok_"
HASH_NEEDS_KEY = "the masking strategy 'hash' needs a hash key in the configuration"


class TokenKey:
    """The secret behind `hash` tokens; at least 16 bytes, from configuration (`env:`/`file:`)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"the masking hash key must be at least {MIN_KEY_BYTES} bytes long",
                hint="generate one with: python -c 'import secrets; print(secrets.token_hex(32))'",
            )
        self._key = bytes(key)

    def __repr__(self) -> str:
        return "TokenKey(<secret>)"

    def digest(self, canonical: bytes) -> bytes:
        return hmac.digest(self._key, canonical, "sha256")

    def text(self, canonical: bytes) -> str:
        """`tok_` and 16 lower-case base32 characters (80 bits of the digest)."""
        encoded = base64.b32encode(self.digest(canonical)[:10]).decode("ascii").lower()
        return TEXT_TOKEN_PREFIX + encoded

    def integer(self, canonical: bytes, bits: int) -> int:
        """A non-negative integer that fits a signed integer of `bits` bits."""
        return int.from_bytes(self.digest(canonical)[:8], "big") % (1 << (bits - 1))

    def below(self, canonical: bytes, limit: int) -> int:
        """An integer in [0, limit)."""
        if limit <= 1:
            return 0
        return int.from_bytes(self.digest(canonical), "big") % limit

    def uuid(self, canonical: bytes) -> bytes:
        """16 bytes of a version-8 (custom) UUID with the RFC 9562 variant bits."""
        raw = bytearray(self.digest(canonical)[:16])
        raw[6] = (raw[6] & 0x0F) | 0x80
        raw[8] = (raw[8] & 0x3F) | 0x80
        return bytes(raw)

    def characters(self, canonical: bytes, alphabet: bytes, count: int) -> bytes:
        """`count` characters drawn from `alphabet`, as many as needed (for same-length tokens)."""
        out = bytearray()
        block = 0
        while len(out) < count:
            for byte in self.digest(canonical + block.to_bytes(4, "big")):
                out.append(alphabet[byte % len(alphabet)])
                if len(out) == count:
                    break
            block += 1
        return bytes(out)
