"""The approval state store interface; SQLite and PostgreSQL implement it.

Methods are synchronous and thread-safe: the event loop calls them through a worker thread.
Every method that changes a request does so in one transaction, applying the rules in
`rules.py`, so two instances (or two approvers) racing on the same request cannot both win.
Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from bastion.approvals.model import (
    ApprovalRequest,
    ApprovalState,
    Approver,
    RequestDraft,
    TokenRecord,
    Verdict,
)


class ApprovalStore(Protocol):
    def create(self, draft: RequestDraft, now: datetime) -> ApprovalRequest:
        """Insert a pending request; the store assigns increasing integer ids."""
        ...

    def get(self, request_id: int) -> ApprovalRequest | None: ...

    def list(
        self, *, states: Sequence[ApprovalState] = (), limit: int = 100
    ) -> list[ApprovalRequest]:
        """Newest first; all states when `states` is empty."""
        ...

    def get_many(self, request_ids: Sequence[int]) -> dict[int, ApprovalRequest]: ...

    def vote(
        self,
        request_id: int,
        approver: Approver,
        verdict: Verdict,
        comment: str,
        now: datetime,
        grant_ttl: timedelta,
    ) -> ApprovalRequest:
        """Record a vote and apply it (rules.apply_vote); raise an ApprovalError when refused."""
        ...

    def withdraw(self, request_id: int, reason: str, now: datetime) -> ApprovalRequest | None:
        """pending -> withdrawn; None when the request was not pending."""
        ...

    def find_pending(self, grant_key: str, now: datetime) -> ApprovalRequest | None:
        """The newest unexpired pending request with this grant key."""
        ...

    def consume(self, request_id: int, now: datetime) -> ApprovalRequest | None:
        """approved (grant not expired) -> executed, atomically; None if it was not usable."""
        ...

    def consume_grant(self, grant_key: str, now: datetime) -> ApprovalRequest | None:
        """Like consume, for the oldest usable approved request with this grant key."""
        ...

    def expire(self, now: datetime) -> builtins.list[ApprovalRequest]:
        """Move pending requests past expires_at, and approved ones whose grant lapsed, to
        expired; return them."""
        ...

    def add_token(self, record: TokenRecord) -> None: ...

    def find_token(self, digest: str, now: datetime) -> TokenRecord | None:
        """The unrevoked, unexpired token with this digest."""
        ...

    def list_tokens(self) -> builtins.list[TokenRecord]: ...

    def revoke_token(self, token_id: str) -> bool: ...

    def close(self) -> None: ...
