//! `/admin/action-center`: the operator's single screen. One server-rendered document with
//! inline CSS and a small inline script (no framework, no build step, no external assets):
//! the list of open tasks and exceptions from `GET /api/v1/action-center`, live SLA
//! countdowns, the quick actions, and live updates from the WebSocket `/api/v1/ws`.
//!
//! The script calls the API with the HttpOnly session cookie (same origin); it never sees a
//! token. When the access cookie has expired it loads this page once in the background, which
//! lets the page guard rotate the refresh cookie, and tries again. Everything it renders from
//! data goes through `textContent` or `setAttribute`, never `innerHTML`. The page's policy
//! allows exactly this script (by its SHA-256) and connections to this origin.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use chrono::{SecondsFormat, Utc};
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Response, handler};
use sha2::{Digest, Sha256};
use virel_domain::policy::Permission;

use super::html::{self, Nav, escape};
use super::session::PageSession;
use crate::AppState;

/// `GET /admin/action-center` (`action_center:read`).
#[handler]
pub async fn page(state: Data<&Arc<AppState>>, session: Data<&PageSession>) -> Response {
    if let Err(refused) = session.require(&state, Permission::ActionCenterRead, "action_center").await {
        return refused;
    }
    let user = &session.user;
    let main = render(
        &user.id.to_string(),
        session.ctx.sees_all_items(),
        &Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    );
    respond(html::layout(user, Nav::ActionCenter, "Action Center", STYLE, &main))
}

/// The page's body: `user_id` and `sees_all` tell the script which live items belong in
/// this user's view; `now` (the server's clock) corrects the countdowns for a skewed client.
fn render(user_id: &str, sees_all: bool, now: &str) -> String {
    let scope = if sees_all { "All open tasks and exceptions." } else { "Your items and unassigned ones." };
    let priorities: String =
        ["critical", "high", "normal", "low"].iter().map(|p| format!("<option value=\"{p}\">{p}</option>")).collect();
    format!(
        "<div id=\"ac\" data-user-id=\"{user_id}\" data-sees-all=\"{sees_all}\" data-now=\"{now}\">\
         <div class=\"ac-head\"><h1>Action Center</h1>\
         <span id=\"ac-live\" class=\"live\" data-state=\"connecting\" role=\"status\">connecting…</span></div>\
         <p class=\"muted ac-scope\">{scope} Breached first, then the soonest deadline.</p>\
         <div class=\"ac-bar\">\
         <div class=\"counts\" id=\"ac-counts\">\
         <div class=\"count breached\"><span>Breached</span><b id=\"count-breached\">–</b></div>\
         <div class=\"count at_risk\"><span>At risk</span><b id=\"count-at_risk\">–</b></div>\
         <div class=\"count ok\"><span>OK</span><b id=\"count-ok\">–</b></div>\
         <div class=\"count total\"><span>Total</span><b id=\"count-total\">–</b></div></div>\
         <form id=\"ac-filters\" class=\"filters\">\
         <span class=\"seg\" role=\"radiogroup\" aria-label=\"Show\">\
         <label><input type=\"radio\" name=\"scope\" value=\"all\" checked> All</label>\
         <label><input type=\"radio\" name=\"scope\" value=\"mine\"> Mine</label>\
         <label><input type=\"radio\" name=\"scope\" value=\"unassigned\"> Unassigned</label></span>\
         <label>Kind <select name=\"kind\" id=\"f-kind\"><option value=\"\">all</option>\
         <option value=\"task\">tasks</option><option value=\"exception\">exceptions</option></select></label>\
         <label>Priority <select name=\"priority\" id=\"f-priority\"><option value=\"\">any</option>{priorities}</select></label>\
         </form></div>\
         <div id=\"ac-msg\" aria-live=\"polite\"></div>\
         <noscript><div class=\"flash error\">The Action Center needs JavaScript for its live list and quick actions.</div></noscript>\
         <div class=\"card ac-list\"><table id=\"ac-table\"><thead><tr>\
         <th>SLA</th><th>Kind</th><th>Type</th><th>Title</th><th>Subject</th><th>Priority</th>\
         <th>Assignee</th><th>Status</th><th>Actions</th></tr></thead><tbody id=\"ac-rows\"></tbody></table>\
         <p id=\"ac-empty\" class=\"muted\">Loading…</p></div></div>\
         <script>{SCRIPT}</script>",
        user_id = escape(user_id),
        now = escape(now),
    )
}

/// `'sha256-…'` of the inline script, for the page's policy.
fn script_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT.as_bytes())))
    })
}

/// Like `html::respond`, with a policy that lets this page's own script run and talk to
/// this origin (fetch and WebSocket), and nothing else.
fn respond(body: String) -> Response {
    let csp = format!(
        "default-src 'none'; script-src {}; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        script_hash()
    );
    Response::builder()
        .status(StatusCode::OK)
        .content_type("text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .header("content-security-policy", csp)
        .header("x-frame-options", "DENY")
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "same-origin")
        .body(body)
}

/// Goes into `<head>`, before the shared style: selectors here are specific enough to win.
const STYLE: &str = r#"<style>
body main{max-width:1480px}
.ac-head{display:flex;align-items:center;gap:16px}
.ac-scope{margin:0 0 10px}
.live{font-size:12px;color:#667085;display:inline-flex;align-items:center;gap:6px}
.live::before{content:"";width:8px;height:8px;border-radius:50%;background:#98a2b3}
.live[data-state=live]{color:#067647}
.live[data-state=live]::before{background:#17b26a}
.live[data-state=reconnecting]{color:#b54708}
.live[data-state=reconnecting]::before{background:#f79009}
.ac-bar{display:flex;align-items:flex-end;gap:24px;flex-wrap:wrap;margin:0 0 12px}
.counts{display:flex;gap:8px}
.count{background:#fff;border:1px solid #dde1ea;border-radius:6px;padding:5px 14px;min-width:96px}
.count span{font-size:12px;color:#667085}
.count b{display:block;font-size:22px;line-height:1.2;font-variant-numeric:tabular-nums}
.count.breached b{color:#b42318}
.count.at_risk b{color:#b54708}
.count.ok b{color:#067647}
.filters{display:flex;gap:14px;align-items:center;flex-wrap:wrap;margin:0}
.filters select{font:inherit;padding:3px 6px;border:1px solid #aab2c5;border-radius:4px;background:#fff}
.seg{display:inline-flex;border:1px solid #aab2c5;border-radius:4px;background:#fff;overflow:hidden}
.seg label{padding:3px 10px;cursor:pointer;border-left:1px solid #dde1ea}
.seg label:first-child{border-left:0}
.seg label:has(input:checked){background:#e8edfb}
div.card.ac-list{padding:0;overflow-x:auto}
.ac-list table td,.ac-list table th{padding:7px 10px;vertical-align:middle}
.ac-list thead th{background:#f9fafb;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
#ac-empty{padding:14px 12px;margin:0}
#ac-rows tr:hover{background:#fafbfd}
#ac-rows td.sla{white-space:nowrap;font-weight:600;font-variant-numeric:tabular-nums;box-shadow:inset 4px 0 #17b26a;color:#067647}
#ac-rows tr[data-sla-state=at_risk] td.sla{color:#b54708;box-shadow:inset 4px 0 #f79009}
#ac-rows tr[data-sla-state=breached] td.sla{color:#b42318;box-shadow:inset 4px 0 #d92d20}
#ac-rows tr[data-sla-state=breached]{background:#fffbfa}
#ac-rows td.type{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;white-space:nowrap}
#ac-rows td.title{font-weight:600;min-width:180px}
#ac-rows .sub{display:block;font-size:11px;color:#667085;text-transform:uppercase;letter-spacing:.03em}
.badge{display:inline-block;font-size:11px;padding:0 6px;border-radius:8px;border:1px solid #cdd3e0;color:#475067}
.badge.exception{border-color:#fda29b;color:#b42318}
.pill{display:inline-block;padding:0 8px;border-radius:9px;font-size:12px;background:#eef0f4;white-space:nowrap}
.pill.p-critical{background:#fee4e2;color:#b42318;font-weight:600}
.pill.p-high{background:#fef0c7;color:#b54708}
.pill.p-low{color:#667085}
.tag{display:inline-block;font-size:11px;padding:0 5px;margin-left:4px;border-radius:6px;background:#f2f4f7;color:#475067}
.tag.esc{background:#fee4e2;color:#b42318}
#ac-rows td.actions{white-space:nowrap}
.actions .btns{display:flex;align-items:center;gap:4px}
.actions .btns.assign{margin-top:4px;font-size:12px}
.actions .btns.assign button{padding:0 7px}
.actions button{padding:2px 8px;font-size:12px}
.actions button[hidden]{display:none}
.actions button[data-action=confirm]{background:#2950d1;border-color:#2950d1;color:#fff}
.actions button:disabled{opacity:.5;cursor:progress}
.note-form{display:flex;gap:4px;margin-top:6px}
.note-form[hidden]{display:none}
.note-form input{flex:1;font:inherit;font-size:12px;padding:2px 6px;border:1px solid #aab2c5;border-radius:4px;min-width:120px}
#ac-msg .flash{display:flex;justify-content:space-between;align-items:center;gap:12px;padding:5px 12px;margin:0 0 6px}
#ac-msg .flash button{border:0;background:transparent;padding:0 4px;font-size:16px;line-height:1}
</style>"#;

/// The page's script: list, countdowns, quick actions, live feed. Static (the user's id and
/// the server's clock are data attributes), so the policy can name it by its hash.
const SCRIPT: &str = r#"
(() => {
  "use strict";
  const root = document.getElementById("ac");
  const ME = root.getAttribute("data-user-id");
  const SEES_ALL = root.getAttribute("data-sees-all") === "true";
  let skew = Date.parse(root.getAttribute("data-now")) - Date.now();
  if (!Number.isFinite(skew)) skew = 0;
  const tbody = document.getElementById("ac-rows");
  const empty = document.getElementById("ac-empty");
  const filters = document.getElementById("ac-filters");
  const msgs = document.getElementById("ac-msg");
  const live = document.getElementById("ac-live");
  const LOGIN = "/admin/login?next=" + encodeURIComponent("/admin/action-center");
  const RANK = { critical: 0, high: 1, normal: 2, low: 3 };

  let items = [];            // the list, in the API's order
  const rows = new Map();    // "kind:id" -> <tr>
  let loaded = false;

  const key = (it) => it.kind + ":" + it.id;
  const find = (k) => items.findIndex((x) => key(x) === k);

  // ---- filters -------------------------------------------------------------------------
  function current() {
    const f = new FormData(filters);
    return { scope: f.get("scope") || "all", kind: f.get("kind") || "", priority: f.get("priority") || "" };
  }
  function fromUrl() {
    const q = new URLSearchParams(location.search);
    const scope = q.get("mine") === "true" ? "mine" : q.get("unassigned") === "true" ? "unassigned" : "all";
    const radio = filters.querySelector('input[name=scope][value="' + scope + '"]');
    if (radio) radio.checked = true;
    for (const name of ["kind", "priority"]) {
      const sel = filters.elements[name];
      const v = q.get(name) || "";
      if ([...sel.options].some((o) => o.value === v)) sel.value = v;
    }
  }
  function query() {
    const f = current();
    const q = new URLSearchParams();
    if (f.scope === "mine") q.set("mine", "true");
    if (f.scope === "unassigned") q.set("unassigned", "true");
    if (f.kind) q.set("kind", f.kind);
    if (f.priority) q.set("priority", f.priority);
    return q.toString();
  }
  // Whether an item belongs in this view: the API's rules, applied to live items.
  function matches(it) {
    if (!it || !it.open) return false;
    const a = it.assignee_id || null;
    if (!SEES_ALL && a && a !== ME) return false;
    const f = current();
    if (f.scope === "mine" && a !== ME) return false;
    if (f.scope === "unassigned" && a) return false;
    if (f.kind && it.kind !== f.kind) return false;
    if (f.priority && it.priority !== f.priority) return false;
    return true;
  }

  // ---- order: breached first, soonest due (none last), priority, oldest, id ------------
  function ts(s) {
    if (!s) return null;
    const m = /\.(\d+)/.exec(s);
    const sub = m ? parseInt((m[1] + "000000000").slice(3, 9), 10) : 0;
    return [Date.parse(s), sub];
  }
  function cmpTs(a, b) {
    return a[0] !== b[0] ? a[0] - b[0] : a[1] - b[1];
  }
  function cmp(a, b) {
    const ab = a.sla_state === "breached" ? 0 : 1, bb = b.sla_state === "breached" ? 0 : 1;
    if (ab !== bb) return ab - bb;
    const ad = ts(a.due_at), bd = ts(b.due_at);
    if (ad && bd) { const c = cmpTs(ad, bd); if (c) return c; }
    else if (ad) return -1;
    else if (bd) return 1;
    const pr = (RANK[a.priority] ?? 3) - (RANK[b.priority] ?? 3);
    if (pr) return pr;
    const c = cmpTs(ts(a.created_at) || [0, 0], ts(b.created_at) || [0, 0]);
    if (c) return c;
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  }

  // ---- rows -------------------------------------------------------------------------------
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function button(label, action, title) {
    const b = el("button", "", label);
    b.type = "button";
    b.setAttribute("data-action", action);
    if (title) b.title = title;
    return b;
  }
  function buildRow(it) {
    const tr = document.createElement("tr");
    tr.setAttribute("data-kind", it.kind);
    tr.setAttribute("data-id", it.id);
    for (const c of ["sla", "kind", "type", "title", "subject", "priority", "assignee", "status"]) {
      tr.appendChild(el("td", c));
    }
    const td = el("td", "actions");
    const btns = el("div", "btns");
    if (it.kind === "task" && it.type === "confirm_booking") {
      btns.appendChild(button("Confirm", "confirm", "Complete the task and move its booking forward"));
    }
    btns.appendChild(button("Contact", "contact", "Message the client on their preferred channel"));
    btns.appendChild(button("Note", "note", "Add a note"));
    btns.appendChild(button("Acknowledge", "acknowledge", "Say that someone has it"));
    const assign = el("div", "btns assign");
    assign.appendChild(el("span", "muted", "Assign"));
    assign.appendChild(button("to me", "assign-me", "Assign to me"));
    assign.appendChild(button("round robin", "assign-round-robin", "Assign to the least-loaded operator on duty"));
    assign.appendChild(button("unassign", "unassign", "Take it off its assignee"));
    td.append(btns, assign);
    const form = el("form", "note-form");
    form.hidden = true;
    const input = el("input");
    input.name = "text";
    input.required = true;
    input.maxLength = 10000;
    input.placeholder = "Note…";
    input.setAttribute("aria-label", "Note text");
    const save = el("button", "", "Save");
    save.type = "submit";
    save.setAttribute("data-action", "note-save");
    form.append(input, save, button("Cancel", "note-cancel"));
    td.appendChild(form);
    tr.appendChild(td);
    fillRow(tr, it);
    return tr;
  }
  function fillRow(tr, it) {
    const c = tr.cells;
    const a = it.assignee_id || null;
    tr.setAttribute("data-sla-state", it.sla_state);
    tr.setAttribute("data-status", it.status);
    tr.setAttribute("data-assignee", a || "");
    c[1].replaceChildren(el("span", "badge " + (it.kind === "exception" ? "exception" : "task"), it.kind));
    c[2].textContent = it.type;
    c[3].textContent = it.title;
    if (it.subject) {
      c[4].replaceChildren(el("span", "sub", it.subject.type), document.createTextNode(it.subject.label));
    } else {
      c[4].replaceChildren(el("span", "muted", "—"));
    }
    const shown = it.kind === "exception" && it.severity ? it.severity : it.priority;
    c[5].replaceChildren(el("span", "pill p-" + (it.priority in RANK ? it.priority : "normal"), shown));
    if (a) {
      c[6].replaceChildren(document.createTextNode(it.assignee_name || "someone"));
      if (a === ME) c[6].appendChild(el("span", "muted", " (you)"));
    } else {
      c[6].replaceChildren(el("span", "muted", "Unassigned"));
    }
    c[7].replaceChildren(document.createTextNode(String(it.status).replace(/_/g, " ")));
    if (it.sla_paused) c[7].appendChild(el("span", "tag", "SLA paused"));
    if (it.escalation_level > 0) c[7].appendChild(el("span", "tag esc", "escalated L" + it.escalation_level));
    const q = (s) => tr.querySelector('button[data-action="' + s + '"]');
    q("assign-me").hidden = a === ME;
    q("unassign").hidden = !a;
    tr.cells[0].title = it.due_at ? "due " + new Date(Date.parse(it.due_at)).toLocaleString() : "no deadline";
  }

  function place(it) {
    const k = key(it);
    let tr = rows.get(k);
    if (tr) fillRow(tr, it);
    else { tr = buildRow(it); rows.set(k, tr); }
    return tr;
  }
  function upsert(it) {
    const k = key(it);
    const i = find(k);
    if (i >= 0 && items[i].version > it.version) return; // older news
    if (!matches(it)) { remove(k); return; }
    if (i >= 0) items.splice(i, 1);
    let pos = items.findIndex((x) => cmp(it, x) < 0);
    if (pos < 0) pos = items.length;
    items.splice(pos, 0, it);
    const tr = place(it);
    const next = pos + 1 < items.length ? rows.get(key(items[pos + 1])) : null;
    tbody.insertBefore(tr, next || null);
    changed();
  }
  function remove(k) {
    const i = find(k);
    if (i >= 0) items.splice(i, 1);
    const tr = rows.get(k);
    if (tr) { tr.remove(); rows.delete(k); }
    changed();
  }
  // A whole new list (the API's or a snapshot), kept in the order it came in.
  function replaceAll(list) {
    items = (list || []).filter(matches);
    const keep = new Set(items.map(key));
    for (const [k, tr] of rows) if (!keep.has(k)) { tr.remove(); rows.delete(k); }
    tbody.append(...items.map(place));
    loaded = true;
    changed();
  }
  function changed() {
    empty.hidden = items.length > 0;
    if (loaded) empty.textContent = "Nothing open here. New items appear as they come in.";
    tick();
  }

  // ---- SLA countdowns ------------------------------------------------------------------------
  const pad = (n) => String(n).padStart(2, "0");
  function clock(secs) {
    const h = Math.floor(secs / 3600), m = Math.floor((secs % 3600) / 60), s = secs % 60;
    return h > 0 ? h + ":" + pad(m) + ":" + pad(s) : m + ":" + pad(s);
  }
  // The server's state, except that a deadline that has passed here is breached already.
  function state(it, now) {
    if (it.due_at && !it.sla_paused && now >= Date.parse(it.due_at)) return "breached";
    return it.sla_state;
  }
  function countdown(it, now) {
    if (!it.due_at) return "—";
    if (it.sla_paused) return "paused";
    const ms = Date.parse(it.due_at) - now;
    return ms >= 0 ? clock(Math.floor(ms / 1000)) : "overdue " + clock(Math.floor(-ms / 1000));
  }
  function tick() {
    const now = Date.now() + skew;
    const n = { breached: 0, at_risk: 0, ok: 0 };
    for (const it of items) {
      const tr = rows.get(key(it));
      const st = state(it, now);
      n[st in n ? st : "ok"]++;
      if (!tr) continue;
      if (tr.getAttribute("data-sla-state") !== st) tr.setAttribute("data-sla-state", st);
      const text = countdown(it, now);
      if (tr.cells[0].textContent !== text) tr.cells[0].textContent = text;
    }
    const set = (id, v) => { const e = document.getElementById(id); const t = loaded ? String(v) : "–"; if (e.textContent !== t) e.textContent = t; };
    set("count-breached", n.breached);
    set("count-at_risk", n.at_risk);
    set("count-ok", n.ok);
    set("count-total", items.length);
  }
  setInterval(tick, 1000);

  // ---- messages ----------------------------------------------------------------------------
  function say(text, error) {
    const box = el("div", error ? "flash error" : "flash");
    box.setAttribute("role", error ? "alert" : "status");
    const close = el("button", "", "×");
    close.type = "button";
    close.title = "Dismiss";
    close.addEventListener("click", () => box.remove());
    box.append(el("span", "", text), close);
    msgs.prepend(box);
    while (msgs.children.length > 3) msgs.lastElementChild.remove();
    if (!error) setTimeout(() => box.remove(), 5000);
  }

  // ---- the API, with the session cookie ----------------------------------------------------
  // The access cookie lives 15 minutes. Loading this page lets the page guard rotate the
  // refresh cookie (one request at a time: a refresh token is good once).
  let refreshing = null;
  function refreshSession() {
    if (!refreshing) {
      refreshing = fetch("/admin/action-center", { credentials: "same-origin", redirect: "manual", cache: "no-store" })
        .then((r) => (r.ok ? "ok" : r.type === "opaqueredirect" ? "gone" : "failed"), () => "offline")
        .then((s) => { if (s === "gone") location.assign(LOGIN); return s; })
        .finally(() => setTimeout(() => { refreshing = null; }, 0));
    }
    return refreshing;
  }
  async function api(path, opts, retried) {
    const o = Object.assign({ credentials: "same-origin", cache: "no-store" }, opts || {});
    let r;
    try {
      r = await fetch(path, o);
    } catch (e) {
      throw new Error("Virel could not be reached; check the connection and try again.");
    }
    if (r.status === 401 && !retried && (await refreshSession()) === "ok") return api(path, opts, true);
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) {
      const m = body && body.error && body.error.message ? body.error.message : "The request failed (HTTP " + r.status + ").";
      throw new Error(m);
    }
    return body;
  }

  // ---- loading the list; live messages wait while a load is in flight -----------------------
  let seq = 0, loading = false, held = [];
  async function load() {
    const mine = ++seq;
    loading = true;
    const q = query();
    history.replaceState(null, "", location.pathname + (q ? "?" + q : ""));
    try {
      const data = await api("/api/v1/action-center" + (q ? "?" + q : ""));
      if (mine === seq) replaceAll(data.items);
    } catch (e) {
      if (mine === seq) say(e.message, true);
    } finally {
      if (mine === seq) {
        loading = false;
        const h = held;
        held = [];
        h.forEach(apply);
      }
    }
  }
  filters.addEventListener("change", load);
  filters.addEventListener("submit", (e) => { e.preventDefault(); load(); });

  // ---- quick actions ---------------------------------------------------------------------------
  function itemOf(tr) {
    const i = find(tr.getAttribute("data-kind") + ":" + tr.getAttribute("data-id"));
    return i >= 0 ? items[i] : null;
  }
  async function act(tr, action, body, done) {
    const it = itemOf(tr);
    if (!it) return;
    const btns = [...tr.querySelectorAll("button")];
    btns.forEach((b) => { b.disabled = true; });
    try {
      const path = "/api/v1/action-center/" + encodeURIComponent(it.kind) + "/" + encodeURIComponent(it.id) + "/" + action;
      const res = await api(path, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      const next = action === "contact" ? res.item : res;
      if (next) upsert(next);
      say(done(res, next || it), false);
      return true;
    } catch (e) {
      say(e.message, true);
      return false;
    } finally {
      btns.forEach((b) => { b.disabled = false; });
    }
  }
  const quote = (it) => "“" + it.title + "”";
  tbody.addEventListener("click", (e) => {
    const b = e.target.closest("button[data-action]");
    const tr = b && b.closest("tr[data-id]");
    if (!tr) return;
    const form = tr.querySelector(".note-form");
    switch (b.getAttribute("data-action")) {
      case "confirm":
        act(tr, "confirm", {}, (r, it) => "Confirmed " + quote(it) + ": the booking moved forward.");
        break;
      case "contact":
        act(tr, "contact", { template: null }, (r, it) => "Message to the client of " + quote(it) + " queued on " + r.channel + ".");
        break;
      case "note":
        form.hidden = !form.hidden;
        if (!form.hidden) form.elements.text.focus();
        break;
      case "note-cancel":
        form.hidden = true;
        form.reset();
        break;
      case "acknowledge":
        act(tr, "acknowledge", {}, (r, it) => "Acknowledged " + quote(it) + ".");
        break;
      case "assign-me":
        act(tr, "assign", { assignee_id: ME }, (r, it) => "Assigned " + quote(it) + " to you.");
        break;
      case "assign-round-robin":
        act(tr, "assign", { assignee_id: "round_robin" }, (r, it) => "Assigned " + quote(it) + " to " + (it.assignee_name || "an operator") + ".");
        break;
      case "unassign":
        act(tr, "assign", { assignee_id: null }, (r, it) => "Unassigned " + quote(it) + ".");
        break;
    }
  });
  tbody.addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target;
    const tr = form.closest("tr[data-id]");
    const text = form.elements.text.value.trim();
    if (!tr || !text) return;
    const ok = await act(tr, "note", { text }, (r, it) => "Note added to " + quote(it) + ".");
    if (ok) { form.reset(); form.hidden = true; }
  });

  // ---- live feed -------------------------------------------------------------------------------
  function apply(m) {
    if (m.type === "snapshot") replaceAll(m.items);
    else if (m.type === "item.upserted") upsert(m.item);
    else if (m.type === "item.removed" && m.item) remove(key(m.item));
    else if (m.type === "error") say((m.error && m.error.message) || "The live feed failed.", true);
  }
  function setLive(s, text) {
    live.setAttribute("data-state", s);
    live.textContent = text;
  }
  let ws = null, attempt = 0;
  function connect() {
    const s = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/api/v1/ws");
    ws = s;
    s.onmessage = (e) => {
      let m;
      try { m = JSON.parse(e.data); } catch (err) { return; }
      if (m.type === "snapshot") { attempt = 0; setLive("live", "live"); }
      if (loading) held.push(m);
      else apply(m);
    };
    s.onclose = () => {
      if (ws !== s) return;
      ws = null;
      const delay = Math.min(1000 * 2 ** attempt, 15000);
      attempt++;
      setLive("reconnecting", "reconnecting in " + Math.round(delay / 1000) + " s…");
      setTimeout(async () => {
        if ((await refreshSession()) !== "gone") connect();
      }, delay);
    };
  }

  fromUrl();
  load();
  connect();
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_renders_data_as_text_only() {
        for bad in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "</script"] {
            assert!(!SCRIPT.contains(bad), "{bad}");
        }
    }

    #[test]
    fn the_policy_names_the_script_by_its_hash() {
        let h = script_hash();
        assert!(h.starts_with("'sha256-") && h.ends_with('\'') && h.len() == 53, "{h}");
        let body = render("u\"<x>", true, "2025-01-01T00:00:00.000Z");
        assert!(body.contains(&format!("<script>{SCRIPT}</script>")));
        assert!(body.contains("data-user-id=\"u&quot;&lt;x&gt;\""), "attributes are escaped");
    }
}
