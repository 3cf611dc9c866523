"""ApprovalHold: one statement of a live session waiting for a human decision.

The relay machine stops at a statement the policy holds for approval; the driver keeps the
client's further input unread and starts an ApprovalHold. It opens the request (or uses a grant
an approver already gave for exactly this statement), tells the client at once with a
NoticeResponse who can approve and for how long it will wait, then waits. Whatever happens -
approval, denial, timeout, the client's CancelRequest, an unreachable store - ends as one
decision, Allow or Deny, which the driver hands back to the machine. A client that disconnects
withdraws its request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bastion.approvals.model import ApprovalRequest, ApprovalState, RequestDraft, grant_key
from bastion.approvals.service import ApprovalService, Granted
from bastion.pipeline.context import ConnectionContext
from bastion.pipeline.decision import Allow, Deny, RequireApproval
from bastion.session.pg_relay import HeldStatement
from bastion.wire.postgres import backend

log = logging.getLogger("bastion.approvals")

QUERY_CANCELED = "57014"
_BACKGROUND: set[asyncio.Task[object]] = set()


def describe_seconds(seconds: float) -> str:
    """'5m', '90s', '2h', '1h30m': how long, for people."""
    total = round(seconds)
    if total < 120 and total % 60:
        return f"{total}s"
    hours, rest = divmod(total, 3600)
    minutes = rest // 60
    if not hours:
        return f"{minutes}m"
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


def _approvers(decision: RequireApproval) -> str:
    groups = ", ".join(decision.approver_groups) or "any approver"
    if decision.min_approvals > 1:
        return f"{decision.min_approvals} of {groups}"
    return groups


class ApprovalHold:
    def __init__(
        self,
        service: ApprovalService | None,
        context: ConnectionContext,
        held: HeldStatement,
        *,
        reason: str,
        notify_client: Callable[[bytes], None],
        on_decided: Callable[[ApprovalHold], None],
    ) -> None:
        self._service = service
        self._context = context
        self._held = held
        self._reason = reason
        self._notify = notify_client
        self._on_decided = on_decided
        self._task: asyncio.Task[None] | None = None
        self._cancelled = False
        self.request_id: int | None = None
        self.decision: Allow | Deny | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def cancel(self) -> bool:
        """The client sent a CancelRequest: withdraw the request. True: handled here."""
        if self.decision is not None:
            return False
        self._cancelled = True
        if self.request_id is not None:
            self._withdraw("cancelled by the requester")
        return True

    def abandon(self, why: str) -> None:
        """The session is closing: stop waiting and withdraw the request."""
        if self._task is not None:
            self._task.cancel()
        if self.decision is None and self.request_id is not None:
            self._withdraw(why)

    # Internals.

    async def _run(self) -> None:
        rule = self._held.decision.rule
        try:
            self.decision = await self._outcome()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "approval request failed",
                extra={"fields": {"rule": rule, "error": type(exc).__name__}},
            )
            self.decision = Deny(
                rule,
                "this statement needs approval, but the approval store cannot be reached",
                hint="retry later; an operator should check Bastion's state store",
            )
        self._on_decided(self)

    async def _outcome(self) -> Allow | Deny:
        required = self._held.decision
        service = self._service
        if service is None:
            return Deny(
                required.rule,
                f"{required.reason} (requires approval, and approvals are not set up here)",
                hint="ask an administrator to run it, or to enable approvals",
            )
        ctx = self._context
        identity = ctx.identity
        held = self._held
        draft = RequestDraft(
            requester=identity.name,
            requester_groups=identity.groups,
            source_address=ctx.source_ip,
            target=ctx.target,
            statement=held.text,
            parameters=held.params,
            fingerprint=held.statements[0].fingerprint if len(held.statements) == 1 else "",
            grant_key=grant_key(identity.name, ctx.target, held.text, held.params),
            rule=required.rule,
            policy_reason=required.reason,
            reason=self._reason,
            approver_groups=required.approver_groups,
            min_approvals=required.min_approvals,
            session_id=ctx.session_id,
            expires_at=service.expiry_for(required.expire_seconds),
        )
        opening = await service.open(draft)
        request = opening.request
        self.request_id = request.id
        if isinstance(opening, Granted):
            self._tell(
                f"bastion: approval request {request.id} was approved earlier by "
                f"{', '.join(request.approvals)}; running the statement once"
            )
            return Allow(required.rule, required.obligations)
        if self._cancelled:
            await service.withdraw(request.id, "cancelled by the requester", identity.name)
            return self._cancelled_denial(request.id)
        hold_seconds = required.hold_seconds or service.settings.hold_seconds
        self._tell(
            f"bastion: approval required, request {request.id}, approvers: "
            f"{_approvers(required)}, waiting up to {describe_seconds(hold_seconds)}",
            detail=f"{required.rule}: {required.reason}",
            hint=f"an approver runs: bastion approvals approve {request.id}",
        )
        result = await service.wait(request.id, hold_seconds)
        if result is None:
            return Deny(
                required.rule,
                f"approval request {request.id} is still pending after "
                f"{describe_seconds(hold_seconds)}",
                hint="once it is approved, run the same statement again within "
                f"{describe_seconds(service.settings.grant_seconds)} to run it once",
                sqlstate=QUERY_CANCELED,
            )
        return await self._decided(service, required, result)

    async def _decided(
        self, service: ApprovalService, required: RequireApproval, request: ApprovalRequest
    ) -> Allow | Deny:
        rule = required.rule
        if request.state is ApprovalState.APPROVED:
            used = await service.consume(request.id, self._context.identity.name)
            if used is None:
                return Deny(rule, f"approval request {request.id} was already used or lapsed")
            self._tell(
                f"bastion: approval request {request.id} approved by "
                f"{', '.join(request.approvals)}; running the statement"
            )
            return Allow(rule, required.obligations)
        if request.state is ApprovalState.DENIED:
            vote = request.denial
            who = vote.approver if vote else "an approver"
            comment = f": {vote.comment}" if vote and vote.comment else ""
            return Deny(rule, f"approval request {request.id} denied by {who}{comment}")
        if request.state is ApprovalState.WITHDRAWN and self._cancelled:
            return self._cancelled_denial(request.id)
        return Deny(rule, f"approval request {request.id} is {request.state}")

    def _cancelled_denial(self, request_id: int) -> Deny:
        return Deny(
            self._held.decision.rule,
            f"canceling statement due to user request; approval request {request_id} withdrawn",
            sqlstate=QUERY_CANCELED,
        )

    def _tell(self, message: str, *, detail: str | None = None, hint: str | None = None) -> None:
        self._notify(backend.encode_notice(message, detail=detail, hint=hint))

    def _withdraw(self, why: str) -> None:
        service, request_id = self._service, self.request_id
        if service is None or request_id is None:
            return
        task = asyncio.get_running_loop().create_task(
            service.withdraw(request_id, why, self._context.identity.name)
        )
        _BACKGROUND.add(task)
        task.add_done_callback(_withdrawn)


def _withdrawn(task: asyncio.Task[object]) -> None:
    _BACKGROUND.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning(
            "could not withdraw an approval request",
            extra={"fields": {"error": type(task.exception()).__name__}},
        )
