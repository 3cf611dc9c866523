"""AuthRateLimiter: per-source and per-user sliding windows, bounded memory."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.errors import TooManyAttempts
from bastion.identity.ratelimit import AuthRateLimiter

from .tokens import FakeClock


def blocked(limiter: AuthRateLimiter, source: str, user: str) -> bool:
    try:
        limiter.check(source, user)
    except TooManyAttempts as exc:
        assert exc.message == "too many failed authentication attempts; try again later"
        assert exc.sqlstate == "28P01"
        return True
    return False


def test_brute_force_on_one_user_from_one_source() -> None:
    limiter = AuthRateLimiter(3, clock=FakeClock())
    for _ in range(2):
        limiter.failure("10.0.0.1", "alice")
    assert not blocked(limiter, "10.0.0.1", "alice")
    limiter.failure("10.0.0.1", "alice")
    assert blocked(limiter, "10.0.0.1", "alice")


def test_one_source_spraying_many_users_is_blocked() -> None:
    limiter = AuthRateLimiter(3, clock=FakeClock())
    for user in ("alice", "bob", "carol"):
        limiter.failure("10.0.0.1", user)
    assert blocked(limiter, "10.0.0.1", "dave")
    assert not blocked(limiter, "10.0.0.2", "dave")


def test_many_sources_against_one_user_are_blocked() -> None:
    limiter = AuthRateLimiter(3, clock=FakeClock())
    for source in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        limiter.failure(source, "alice")
    assert blocked(limiter, "10.0.0.4", "alice")
    assert not blocked(limiter, "10.0.0.4", "bob")


def test_window_slides() -> None:
    clock = FakeClock()
    limiter = AuthRateLimiter(3, window_seconds=60, clock=clock)
    limiter.failure("s", "u")
    clock.advance(30)
    limiter.failure("s", "u")
    limiter.failure("s", "u")
    assert blocked(limiter, "s", "u")
    clock.advance(29.9)
    assert blocked(limiter, "s", "u")
    clock.advance(0.2)  # the first failure is now older than the window
    assert not blocked(limiter, "s", "u")
    limiter.failure("s", "u")
    assert blocked(limiter, "s", "u")
    clock.advance(60)
    assert not blocked(limiter, "s", "u")
    assert len(limiter) == 0  # expired entries are dropped when seen


def test_success_clears_the_user_counter_only() -> None:
    limiter = AuthRateLimiter(2, clock=FakeClock())
    limiter.failure("s1", "u")
    limiter.failure("s2", "u")
    assert blocked(limiter, "s3", "u")
    limiter.success("s3", "u")
    assert not blocked(limiter, "s3", "u")


def test_success_does_not_reset_a_spraying_source() -> None:
    limiter = AuthRateLimiter(2, clock=FakeClock())
    limiter.failure("s", "victim1")
    limiter.failure("s", "victim2")
    limiter.success("s", "own-account")
    assert blocked(limiter, "s", "victim3")


def test_memory_is_bounded_and_oldest_entries_go_first() -> None:
    limiter = AuthRateLimiter(1, clock=FakeClock(), max_entries=100)
    limiter.failure("first-source", "first-user")
    for i in range(1000):
        limiter.failure(f"10.0.{i // 256}.{i % 256}", f"user{i}")
    assert len(limiter) <= 100
    assert not blocked(limiter, "first-source", "first-user")
    assert blocked(limiter, "10.0.3.231", "nobody")  # the latest are still remembered


def test_per_key_history_is_bounded() -> None:
    limiter = AuthRateLimiter(3, clock=FakeClock())
    for _ in range(10_000):
        limiter.failure("s", "u")
    assert blocked(limiter, "s", "u")
    assert all(len(stamps) <= 3 for stamps in limiter._failures.values())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_failures": 0},
        {"max_failures": 3, "window_seconds": 0},
        {"max_failures": 3, "max_entries": 1},
    ],
)
def test_invalid_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AuthRateLimiter(**kwargs)
