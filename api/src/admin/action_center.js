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
    else if (m.type === "resync") load();
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
