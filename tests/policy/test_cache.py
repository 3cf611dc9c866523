"""The decision cache: same answers, keyed by everything a decision depends on."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from bastion.pipeline.decision import Allow, Deny
from bastion.sql.analyze import analyze

from .conftest import MONDAY_1030, PRODUCTION, FakeClock, connection, engine, statement

POLICY = """
version: 1
rules:
  - id: analysts-read
    match: {groups: [analysts], statements: [select]}
    effect: allow
  - id: office-hours
    match: {groups: [night]}
    when: 'time.hour >= 9 && time.hour < 17'
    effect: allow
"""


def test_cached_decision_is_the_same() -> None:
    policy_engine = engine(POLICY)
    statements = analyze("SELECT 1")
    first = policy_engine.decide(connection(), statements)
    assert policy_engine.cache_size == 1
    assert policy_engine.decide(connection(), statements) is first
    assert policy_engine.cache_size == 1


def test_cache_keeps_identities_apart() -> None:
    policy_engine = engine(POLICY)
    statements = analyze("SELECT 1")
    assert isinstance(policy_engine.decide(connection(groups=("analysts",)), statements), Allow)
    assert isinstance(policy_engine.decide(connection(groups=("other",)), statements), Deny)
    assert isinstance(policy_engine.decide(connection(groups=("analysts",)), statements), Allow)


def test_cache_keeps_targets_and_labels_apart() -> None:
    policy_engine = engine("version: 1\ndefault_effect: allow\n")
    drop = [statement("drop_table", text="DROP TABLE t")]
    assert isinstance(policy_engine.decide(connection(labels={}), drop), Allow)
    assert isinstance(policy_engine.decide(connection(labels=PRODUCTION), drop), Deny)


def test_same_text_different_analysis_is_not_confused() -> None:
    policy_engine = engine("version: 1\ndefault_effect: allow\n")
    safe = statement("delete", text="DELETE FROM t WHERE x", has_where=True)
    unsafe = statement("delete", text="DELETE FROM t WHERE x", has_where=False)
    assert isinstance(policy_engine.decide(connection(labels=PRODUCTION), [safe]), Allow)
    assert isinstance(policy_engine.decide(connection(labels=PRODUCTION), [unsafe]), Deny)


def test_cache_follows_the_clock() -> None:
    clock = FakeClock(MONDAY_1030)
    policy_engine = engine(POLICY)
    policy_engine._clock = clock  # the engine reads the clock on every decide
    night = connection(groups=("night",))
    statements = [statement("select")]
    assert isinstance(policy_engine.decide(night, statements), Allow)
    clock.now += 8 * 3600  # 18:30
    assert isinstance(policy_engine.decide(night, statements), Deny)


def test_minute_conditions_key_by_minute() -> None:
    text = """
    version: 1
    rules:
      - {id: r, when: 'time.minute < 30', effect: allow}
    """
    clock = FakeClock(MONDAY_1030 - 60)  # 10:29
    policy_engine = engine(text)
    policy_engine._clock = clock
    assert isinstance(policy_engine.decide(connection(), [statement("select")]), Allow)
    clock.now += 60
    assert isinstance(policy_engine.decide(connection(), [statement("select")]), Deny)


def test_port_conditions_key_by_port() -> None:
    text = """
    version: 1
    rules:
      - {id: r, when: 'source.port == 1', effect: allow}
    """
    policy_engine = engine(text)
    stmt = [statement("select")]
    assert isinstance(policy_engine.decide(connection(port=1), stmt), Allow)
    assert isinstance(policy_engine.decide(connection(port=2), stmt), Deny)


def test_cache_is_bounded() -> None:
    policy_engine = engine(POLICY, cache_size=10)
    for number in range(50):
        policy_engine.decide(connection(), [statement("select", text=f"SELECT {number}")])
    assert policy_engine.cache_size == 10


def test_cache_key_includes_the_policy_version() -> None:
    first = engine(POLICY)
    second = engine(POLICY.replace("analysts]", "nobody]"), version=2)
    statements = analyze("SELECT 1")
    assert isinstance(first.decide(connection(), statements), Allow)
    assert isinstance(second.decide(connection(), statements), Deny)
    assert first.version == 1
    assert second.version == 2


def _cost(decide: Callable[[], object], rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        decide()
    return (time.perf_counter() - started) / rounds * 1e6


def test_cost_of_a_decision() -> None:
    """Measures and prints (never asserts) what a decision costs; run with -s to see it."""
    context, night = connection(), connection(groups=("night",))
    statements = analyze("SELECT id, email FROM customers WHERE id = $1")
    cached_engine = engine(POLICY)
    assert cached_engine.decide(context, statements) == Allow("analysts-read")
    cached = _cost(lambda: cached_engine.decide(context, statements), 20000)
    # A cache of one entry, alternating two messages: every decision is computed.
    uncached_engine = engine(POLICY, cache_size=1)
    assert isinstance(engine(POLICY).decide(night, statements), Allow)  # 10:30: office hours
    messages = itertools.cycle([statements, analyze("SELECT 2")])
    uncached = _cost(lambda: uncached_engine.decide(context, next(messages)), 4000)
    with_cel = _cost(lambda: uncached_engine.decide(night, next(messages)), 4000)
    print(
        f"\ndecide: cached {cached:.2f} us; uncached {uncached:.2f} us without a condition, "
        f"{with_cel:.2f} us evaluating one CEL condition"
    )
