"""Slack rendering: approval events as Slack incoming-webhook messages (Block Kit).

It owns the message layout and the escaping of everything a request carries (user names,
targets, statements, comments), so nothing a requester typed can become a Slack mention, link or
formatting, and texts stay under Slack's size limits. It only builds documents; sending them,
with retries, is `notify.py`'s job.
"""

from __future__ import annotations

from typing import Any

from bastion.approvals.model import ApprovalRequest

SLACK_STATEMENT_CHARS = 2500  # Slack rejects section texts over 3,000 characters
SLACK_PARAMETER_CHARS = 500


def render_slack(
    event: str, request: ApprovalRequest, links: tuple[str, str, str] | None
) -> dict[str, Any]:
    """A Slack incoming-webhook message: full details for a new request, one line after that."""
    view = links[0] if links is not None else None
    if event != "requested":
        line = _outcome(event, request)
        blocks: list[dict[str, Any]] = [_section(line)]
        if view is not None:
            blocks.append(_context(f"<{view}|View request {request.id}>"))
        return {"text": line, "blocks": blocks}

    text = (
        f"Approval requested: request {request.id} by {escape(request.requester)} "
        f"on {escape(request.target)} (rule {escape(request.rule)})"
    )
    groups = ", ".join(request.approver_groups) or "any approver"
    fields = [
        f"*Requester*\n{escape(request.requester)}",
        f"*Target*\n{escape(request.target)}",
        f"*Rule*\n{escape(request.rule)}",
        f"*From*\n{escape(request.source_address)}",
        f"*Approvers*\n{request.min_approvals} of {escape(groups)}",
        f"*Expires*\n{request.expires_at.isoformat()}",
    ]
    blocks = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"Approval request {request.id}"[:150]},
        },
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    why = request.reason or "(none given)"
    blocks.append(
        _section(
            f"*Reason*: {_truncate_escaped(why, 1000)}\n"
            f"*Policy*: {_truncate_escaped(request.policy_reason, 1000)}"
        )
    )
    blocks.append(_section(_code_block(request.statement, SLACK_STATEMENT_CHARS)))
    if request.parameters:
        rendered = "\n".join(
            f"${n} = {'NULL' if v is None else v}" for n, v in enumerate(request.parameters, 1)
        )
        blocks.append(_section("*Parameters*\n" + _code_block(rendered, SLACK_PARAMETER_CHARS)))
    if links is not None:
        view, approve, deny = links
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    _button("Approve", approve, "approve", "primary"),
                    _button("Deny", deny, "deny", "danger"),
                ],
            }
        )
        blocks.append(_context(f"<{view}|View request {request.id} in Bastion>"))
    return {"text": text, "blocks": blocks}


def escape(text: str) -> str:
    """Escape the three characters Slack treats as control characters in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _outcome(event: str, request: ApprovalRequest) -> str:
    subject = f"request {request.id}"
    if event == "approved":
        by = ", ".join(request.approvals)
        line = f"{subject} approved by {by}" if by else f"{subject} approved"
    elif event == "denied":
        denial = request.denial
        line = f"{subject} denied by {denial.approver}" if denial else f"{subject} denied"
        if denial is not None and denial.comment:
            line += f": {denial.comment}"
    elif event == "withdrawn":
        line = f"{subject} withdrawn by {request.requester}"
    elif event == "executed":
        line = f"{subject} executed on {request.target} by {request.requester}"
    else:
        line = f"{subject} {event}"
    if event in ("expired", "withdrawn") and request.state_reason:
        line += f" ({request.state_reason})"
    return _truncate_escaped(line, 2500)


def _code_block(text: str, limit: int) -> str:
    # A ``` inside the statement would end the block early; a zero-width space keeps it whole.
    body = _truncate_escaped(text.replace("```", "`\u200b``"), limit)
    return f"```{body}```"


def _truncate_escaped(text: str, limit: int) -> str:
    """Escape `text`, cut so the escaped form stays within `limit` characters."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    parts: list[str] = []
    used = 0
    for char in text:
        piece = escape(char)
        if used + len(piece) > limit:
            break
        parts.append(piece)
        used += len(piece)
    return "".join(parts) + f"\n… (truncated, {len(text)} characters in all)"


def _section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


def _context(mrkdwn: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn}]}


def _button(label: str, url: str, action_id: str, style: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "url": url,
        "action_id": action_id,
        "style": style,
    }
