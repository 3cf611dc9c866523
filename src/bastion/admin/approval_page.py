"""The approval page: the small HTML page at GET /approvals/{id} that notification links open.

It owns the page's template, its per-response nonce and security headers, and the URLs
notifications link to (`approval_links`). The page is a shell: it holds no request data, and its
script fetches the request through the JSON API (`approvals_api.py`) with a token kept in the
browser's sessionStorage, writing it with `textContent` only, so nothing about a request is shown
to anyone without a token and no part of a statement can become markup. Following a link must
never vote, so this module has no access to the approval service at all.
"""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from bastion.approvals.notify import Links


def approval_links(public_url: str) -> Links:
    """Links for notifications (`notify.Links`): request id -> (view, approve, deny) URLs.

    All three open the HTML page; approve and deny only preselect the button there, since a
    link followed by a chat client's preview must never vote.
    """
    base = public_url.rstrip("/")

    def links(request_id: int) -> tuple[str, str, str]:
        page = f"{base}/approvals/{request_id}"
        return page, f"{page}?action=approve", f"{page}?action=deny"

    return links


async def serve_page(request: Request) -> Response:
    """The page for one request; `?action=approve|deny` only preselects that button."""
    request_id = request.path_params["id"]
    action = request.query_params.get("action", "")
    nonce = secrets.token_urlsafe(16)
    body = (
        _PAGE.replace("__NONCE__", nonce)
        .replace("__ID__", str(int(request_id)))
        # Only the two known values reach the page, so nothing else needs escaping there.
        .replace("__ACTION__", action if action in ("approve", "deny") else "")
    )
    return HTMLResponse(body, headers=_page_headers(nonce))


def _page_headers(nonce: str) -> dict[str, str]:
    policy = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


# The page. It holds no request data: the script fetches it with the visitor's token and writes
# it with textContent only (never innerHTML), so a statement containing markup stays text.
# Paths are relative ("../v1/"), so the page also works behind a reverse proxy's path prefix.
_PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Bastion approval request __ID__</title>
<style nonce="__NONCE__">
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:56rem;padding:1rem 1.5rem;
  color:#1d2330}
pre{background:#f3f4f7;padding:.75rem;white-space:pre-wrap;word-break:break-word}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}
dt{font-weight:600}
dd{margin:0}
fieldset{border:1px solid #ccd;margin:1rem 0;padding:.75rem}
label{display:block}
textarea,input{display:block;width:100%;box-sizing:border-box;font:inherit;margin:.25rem 0 .5rem}
button{font:inherit;padding:.4rem 1rem;margin-right:.5rem}
#approve{background:#1f7a3a;color:#fff;border:0}
#deny{background:#b3261e;color:#fff;border:0}
.suggested{outline:3px solid #f0b400}
#state{font-weight:700;text-transform:uppercase}
#message{font-weight:600}
[hidden]{display:none}
</style>
</head>
<body>
<main id="app" data-request-id="__ID__" data-action="__ACTION__">
<h1>Approval request #__ID__</h1>
<p id="message" role="status"></p>
<section id="signin" hidden>
<fieldset><legend>Sign in</legend>
<label>Admin API token <input id="token" type="password" autocomplete="off"></label>
<button id="use-token" type="button">Use token</button>
<p>or with your Bastion password:</p>
<label>User <input id="user" autocomplete="username"></label>
<label>Password <input id="password" type="password" autocomplete="current-password"></label>
<button id="login" type="button">Sign in</button>
</fieldset>
</section>
<section id="request" hidden>
<p>State: <span id="state"></span></p>
<h2>Statement</h2>
<pre id="statement"></pre>
<h2>Parameters</h2>
<ol id="parameters"></ol>
<dl id="details"></dl>
<h2>Votes</h2>
<ul id="votes"></ul>
<fieldset id="decide"><legend>Your decision</legend>
<label>Comment <textarea id="comment" rows="3" maxlength="2000"></textarea></label>
<button id="approve" type="button">Approve</button>
<button id="deny" type="button">Deny</button>
</fieldset>
<button id="signout" type="button">Sign out</button>
</section>
</main>
<script nonce="__NONCE__">
"use strict";
(() => {
  const app = document.getElementById("app");
  const id = app.dataset.requestId;
  const storageKey = "bastion-token";
  const el = (name) => document.getElementById(name);
  const say = (message) => { el("message").textContent = message; };
  const token = () => sessionStorage.getItem(storageKey);
  const done = {approve: "approval", deny: "denial"};

  function show(signedIn) {
    el("signin").hidden = signedIn;
    el("request").hidden = !signedIn;
  }

  async function call(method, path, body) {
    const headers = {"Accept": "application/json"};
    if (token()) headers["Authorization"] = "Bearer " + token();
    const init = {method, headers, credentials: "omit", cache: "no-store"};
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch("../v1/" + path, init);
    let data = null;
    try { data = await response.json(); } catch (ignored) { data = null; }
    if (!response.ok) {
      if (response.status === 401 && path !== "login") {
        sessionStorage.removeItem(storageKey);
        show(false);
      }
      throw new Error((data && data.message) || "HTTP " + response.status);
    }
    return data;
  }

  // Control and direction-changing characters are shown as escapes: a statement must not be
  // able to reorder or hide part of itself on screen.
  const visible = (text) => String(text).replace(
    /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g,
    (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));

  function add(parent, tag, value) {
    const node = document.createElement(tag);
    node.textContent = visible(value);
    parent.appendChild(node);
  }

  function render(r) {
    el("state").textContent = r.state;
    el("statement").textContent = visible(r.statement);
    const parameters = el("parameters");
    parameters.replaceChildren();
    r.parameters.forEach((p) => add(parameters, "li", p === null ? "NULL" : p));
    if (!r.parameters.length) add(parameters, "li", "(none)");
    const groups = r.requester_groups.length ? " (" + r.requester_groups.join(", ") + ")" : "";
    const rows = [
      ["Requested by", r.requester + groups],
      ["From", r.source_address],
      ["Target", r.target],
      ["Rule", r.rule],
      ["Policy says", r.policy_reason],
      ["Requester's reason", r.reason || "(none given)"],
      ["Approvers", r.approver_groups.join(", ") || "anyone but the requester"],
      ["Approvals", r.approvals.length + " of " + r.min_approvals + " needed"],
      ["Created", r.created_at],
      ["Expires", r.expires_at],
      ["Decided", r.decided_at],
      ["Grant usable until", r.grant_expires_at],
      ["Executed", r.executed_at],
      ["Note", r.state_reason],
    ];
    const details = el("details");
    details.replaceChildren();
    rows.filter((row) => row[1]).forEach(([name, value]) => {
      add(details, "dt", name);
      add(details, "dd", value);
    });
    const votes = el("votes");
    votes.replaceChildren();
    if (!r.votes.length) add(votes, "li", "none yet");
    r.votes.forEach((v) => add(votes, "li",
      v.at + "  " + v.approver + ": " + v.verdict + (v.comment ? " \u2014 " + v.comment : "")));
    el("decide").hidden = r.state !== "pending";
  }

  async function load() {
    if (!token()) { show(false); return; }
    try {
      render(await call("GET", "approvals/" + id));
      show(true);
    } catch (error) { say(error.message); }
  }

  async function vote(verdict) {
    try {
      const r = await call("POST", "approvals/" + id + "/" + verdict,
        {comment: el("comment").value});
      el("comment").value = "";
      render(r);
      say("Your " + done[verdict] + " was recorded; the request is now " + r.state + ".");
    } catch (error) { say(error.message); }
  }

  el("use-token").addEventListener("click", () => {
    const value = el("token").value.trim();
    el("token").value = "";
    if (value) { sessionStorage.setItem(storageKey, value); say(""); load(); }
  });
  el("login").addEventListener("click", async () => {
    try {
      const r = await call("POST", "login",
        {user: el("user").value, password: el("password").value});
      el("password").value = "";
      sessionStorage.setItem(storageKey, r.token);
      say("Signed in as " + r.user + ".");
      load();
    } catch (error) { say(error.message); }
  });
  el("approve").addEventListener("click", () => vote("approve"));
  el("deny").addEventListener("click", () => vote("deny"));
  el("signout").addEventListener("click", async () => {
    try { await call("POST", "logout"); } catch (ignored) { /* signed out locally anyway */ }
    sessionStorage.removeItem(storageKey);
    show(false);
    say("Signed out.");
  });
  const suggested = app.dataset.action;
  if (suggested) el(suggested).classList.add("suggested");
  load();
})();
</script>
</body>
</html>
"""
