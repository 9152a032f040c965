//! The four state machines (SPEC §3) over HTTP, on both engines.
//!
//! The table tests take every state S and every target T of a machine, walk a fresh record to S
//! through the API, and ask for T. A pair in the table must be accepted (200, status T, the
//! version incremented, one audit row, one `<entity>.status_changed` event); any other pair must
//! be refused with 409 `invalid_transition` listing the allowed targets, and leave the record
//! untouched.
//!
//! The tables below are written out from the spec, not imported from the domain, so that a wrong
//! table in the product fails here. The guard tests follow the tables.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_engines;
use crate::fixtures::{self, at};
use crate::harness::TestApp;

const REASON: &str = "client called to say so";
const RESOLUTION: &str = "handled by phone";

/// One machine: its entity name, its collection path and, for every state, its allowed targets.
struct Table {
    entity: &'static str,
    path: &'static str,
    allowed: &'static [(&'static str, &'static [&'static str])],
}

const INQUIRY: Table = Table {
    entity: "inquiry",
    path: "/inquiries",
    allowed: &[
        ("new", &["qualified", "lost"]),
        ("qualified", &["awaiting_client", "lost"]),
        ("awaiting_client", &["awaiting_deposit", "lost"]),
        ("awaiting_deposit", &["converted", "lost"]),
        ("converted", &[]),
        ("lost", &[]),
    ],
};

const BOOKING: Table = Table {
    entity: "booking",
    path: "/bookings",
    allowed: &[
        ("draft", &["pending", "cancelled"]),
        ("pending", &["deposit_required", "cancelled"]),
        ("deposit_required", &["confirmed", "cancelled"]),
        ("confirmed", &["in_progress", "cancelled", "no_show"]),
        ("in_progress", &["completed"]),
        ("completed", &[]),
        ("cancelled", &[]),
        ("no_show", &[]),
    ],
};

const TASK: Table = Table {
    entity: "task",
    path: "/tasks",
    allowed: &[
        ("open", &["in_progress", "cancelled"]),
        ("in_progress", &["done", "cancelled"]),
        ("done", &[]),
        ("cancelled", &[]),
    ],
};

const EXCEPTION: Table = Table {
    entity: "exception",
    path: "/exceptions",
    allowed: &[
        ("open", &["acknowledged", "dismissed"]),
        ("acknowledged", &["resolved", "dismissed"]),
        ("resolved", &[]),
        ("dismissed", &[]),
    ],
};

impl Table {
    fn states(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.allowed.iter().map(|(s, _)| *s)
    }

    fn allowed_from(&self, from: &str) -> BTreeSet<String> {
        let (_, targets) = self
            .allowed
            .iter()
            .find(|(s, _)| *s == from)
            .unwrap_or_else(|| panic!("{} has no state {from}", self.entity));
        targets.iter().map(|t| t.to_string()).collect()
    }

    fn allows(&self, from: &str, to: &str) -> bool {
        self.allowed_from(from).contains(to)
    }

    fn url(&self, rec: &Value, tail: &str) -> String {
        format!("{}/{}{tail}", self.path, id(rec))
    }
}

fn id(rec: &Value) -> &str {
    rec["id"].as_str().unwrap_or_else(|| panic!("no id in {rec}"))
}

fn version(rec: &Value) -> i64 {
    rec["version"].as_i64().unwrap_or_else(|| panic!("no version in {rec}"))
}

fn set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Domain events of one type, straight from the database (`count` takes static SQL).
async fn events(app: &TestApp, kind: &str) -> i64 {
    let sql = match kind {
        "inquiry.status_changed" => "SELECT COUNT(*) AS n FROM domain_events WHERE type = 'inquiry.status_changed'",
        "inquiry.converted" => "SELECT COUNT(*) AS n FROM domain_events WHERE type = 'inquiry.converted'",
        "booking.status_changed" => "SELECT COUNT(*) AS n FROM domain_events WHERE type = 'booking.status_changed'",
        "booking.confirmed" => "SELECT COUNT(*) AS n FROM domain_events WHERE type = 'booking.confirmed'",
        "booking.cancelled" => "SELECT COUNT(*) AS n FROM domain_events WHERE type = 'booking.cancelled'",
        "booking.no_show" => "SELECT COUNT(*) AS n FROM domain_events WHERE type = 'booking.no_show'",
        "booking.completed" => "SELECT COUNT(*) AS n FROM domain_events WHERE type = 'booking.completed'",
        "payment.requested" => "SELECT COUNT(*) AS n FROM domain_events WHERE type = 'payment.requested'",
        "task.status_changed" => "SELECT COUNT(*) AS n FROM domain_events WHERE type = 'task.status_changed'",
        "exception.status_changed" => "SELECT COUNT(*) AS n FROM domain_events WHERE type = 'exception.status_changed'",
        "exception.resolved" => "SELECT COUNT(*) AS n FROM domain_events WHERE type = 'exception.resolved'",
        other => panic!("no query for event {other}"),
    };
    app.count(sql).await
}

/// The specific event SPEC §4 names for reaching `to`, besides `<entity>.status_changed`.
fn specific_event(entity: &str, to: &str) -> Option<&'static str> {
    match (entity, to) {
        ("inquiry", "converted") => Some("inquiry.converted"),
        ("booking", "confirmed") => Some("booking.confirmed"),
        ("booking", "cancelled") => Some("booking.cancelled"),
        ("booking", "no_show") => Some("booking.no_show"),
        ("booking", "completed") => Some("booking.completed"),
        ("exception", "resolved") => Some("exception.resolved"),
        _ => None,
    }
}

/// Audit rows of one record, newest first (as admin).
async fn audit(app: &TestApp, admin: &str, entity: &str, rec_id: &str) -> Vec<Value> {
    let (s, b) = app.get(admin, &format!("/audit?entity_type={entity}&entity_id={rec_id}&limit=200")).await;
    assert_eq!(s, StatusCode::OK, "audit: {b}");
    b["items"].as_array().unwrap().clone()
}

async fn fetch(app: &TestApp, token: &str, t: &Table, rec: &Value) -> Value {
    let (s, b) = app.get(token, &t.url(rec, "")).await;
    assert_eq!(s, StatusCode::OK, "GET {}: {b}", t.url(rec, ""));
    b
}

/// A record as it was before a transition was asked for, with the counters it must move.
struct Seen {
    rec: Value,
    status: String,
    version: i64,
    audit: usize,
    changed: i64,
    specific: Option<(&'static str, i64)>,
}

async fn seen(app: &TestApp, admin: &str, t: &Table, rec: &Value, to: &str) -> Seen {
    let rec = fetch(app, admin, t, rec).await;
    let status = rec["status"].as_str().unwrap().to_string();
    assert_eq!(
        set(&rec["allowed_transitions"]),
        t.allowed_from(&status),
        "{} in {status}: allowed_transitions",
        t.entity
    );
    let specific = match specific_event(t.entity, to) {
        Some(kind) => Some((kind, events(app, kind).await)),
        None => None,
    };
    Seen {
        version: version(&rec),
        audit: audit(app, admin, t.entity, id(&rec)).await.len(),
        changed: events(app, &format!("{}.status_changed", t.entity)).await,
        specific,
        status,
        rec,
    }
}

/// The transition was refused: the record, its audit trail and the events are as they were.
async fn expect_unchanged(app: &TestApp, admin: &str, t: &Table, before: &Seen, what: &str) {
    let now = fetch(app, admin, t, &before.rec).await;
    assert_eq!(now["status"], before.status.as_str(), "{what}: status");
    assert_eq!(version(&now), before.version, "{what}: version");
    assert_eq!(audit(app, admin, t.entity, id(&now)).await.len(), before.audit, "{what}: no audit row");
    assert_eq!(
        events(app, &format!("{}.status_changed", t.entity)).await,
        before.changed,
        "{what}: no status_changed event"
    );
    if let Some((kind, n)) = before.specific {
        assert_eq!(events(app, kind).await, n, "{what}: no {kind} event");
    }
}

async fn expect_refused(
    app: &TestApp,
    admin: &str,
    t: &Table,
    before: &Seen,
    to: &str,
    (s, body): (StatusCode, Value),
    code: &str,
) {
    let what = format!("{} {} -> {to}", t.entity, before.status);
    assert_eq!(s, StatusCode::CONFLICT, "{what}: {body}");
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    if code == "invalid_transition" {
        assert_eq!(
            set(&body["error"]["details"]["allowed"]),
            t.allowed_from(&before.status),
            "{what}: allowed targets in {body}"
        );
    }
    expect_unchanged(app, admin, t, before, &what).await;
}

/// The record is now in `to`: version + 1, one audit row (before → after), one
/// `<entity>.status_changed` event and the specific one.
async fn expect_moved(app: &TestApp, admin: &str, t: &Table, before: &Seen, to: &str) -> Value {
    let what = format!("{} {} -> {to}", t.entity, before.status);
    let now = fetch(app, admin, t, &before.rec).await;
    assert_eq!(now["status"], to, "{what}: {now}");
    assert_eq!(version(&now), before.version + 1, "{what}: version");
    let rows = audit(app, admin, t.entity, id(&now)).await;
    assert_eq!(rows.len(), before.audit + 1, "{what}: one audit row");
    assert_eq!(rows[0]["before"]["status"], before.status.as_str(), "{what}");
    assert_eq!(rows[0]["after"]["status"], to, "{what}: {}", rows[0]);
    assert_eq!(
        events(app, &format!("{}.status_changed", t.entity)).await,
        before.changed + 1,
        "{what}: one status_changed event"
    );
    if let Some((kind, n)) = before.specific {
        assert_eq!(events(app, kind).await, n + 1, "{what}: one {kind} event");
    }
    now
}

/// Checks one answer against the table; returns the record when the move was accepted.
async fn check(
    app: &TestApp,
    admin: &str,
    t: &Table,
    before: &Seen,
    to: &str,
    (s, body): (StatusCode, Value),
) -> Option<Value> {
    if t.allows(&before.status, to) {
        let what = format!("{} {} -> {to}", t.entity, before.status);
        assert_eq!(s, StatusCode::OK, "{what}: {body}");
        assert_eq!(body["status"], to, "{what}: {body}");
        assert_eq!(version(&body), before.version + 1, "{what}: {body}");
        Some(expect_moved(app, admin, t, before, to).await)
    } else {
        expect_refused(app, admin, t, before, to, (s, body), "invalid_transition").await;
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Moves (the body for a target, with the guard inputs that target needs) and walks.

/// Builds the `/status` body that asks `rec` to go to a target.
type Move = fn(&Value, &str) -> Value;

fn inquiry_move(rec: &Value, to: &str) -> Value {
    match to {
        "lost" => json!({"status": to, "reason": REASON, "version": version(rec)}),
        "awaiting_client" => json!({
            "status": to,
            "proposal": {"model_id": rec["model_id"], "start_at": at(48 * 60)},
            "version": version(rec)
        }),
        _ => json!({"status": to, "version": version(rec)}),
    }
}

fn booking_move(rec: &Value, to: &str) -> Value {
    match to {
        "cancelled" => json!({"status": to, "reason": REASON, "version": version(rec)}),
        "confirmed" => {
            json!({"status": to, "override": true, "reason": REASON, "version": version(rec)})
        }
        _ => json!({"status": to, "version": version(rec)}),
    }
}

fn task_move(rec: &Value, to: &str) -> Value {
    json!({"status": to, "version": version(rec)})
}

fn exception_move(rec: &Value, to: &str) -> Value {
    match to {
        "resolved" | "dismissed" => {
            json!({"status": to, "resolution": RESOLUTION, "version": version(rec)})
        }
        _ => json!({"status": to, "version": version(rec)}),
    }
}

fn convert_body(rec: &Value) -> Value {
    json!({
        "model_id": rec["model_id"],
        "price": {"amount": 30000, "currency": "GBP"},
        "deposit": {"amount": 5000, "currency": "GBP"}
    })
}

/// Applies `steps` through `/status`, each of which must succeed.
async fn walk(app: &TestApp, token: &str, t: &Table, mut rec: Value, steps: &[&str], body: Move) -> Value {
    for step in steps {
        rec = app.ok(token, &t.url(&rec, "/status"), body(&rec, step), 200).await;
        assert_eq!(rec["status"], *step, "walking {} to {step}", t.entity);
    }
    rec
}

/// A fresh inquiry (with a model and a requested start) in `state`, by the shortest path.
async fn inquiry_in(app: &TestApp, token: &str, state: &str) -> Value {
    let to_deposit: &[&str] = &["qualified", "awaiting_client", "awaiting_deposit"];
    let steps: &[&str] = match state {
        "new" => &[],
        "qualified" => &to_deposit[..1],
        "awaiting_client" => &to_deposit[..2],
        "awaiting_deposit" | "converted" => to_deposit,
        "lost" => &["lost"],
        other => panic!("no inquiry state {other}"),
    };
    let rec = fixtures::inquiry(app, token, "phone").await;
    let rec = walk(app, token, &INQUIRY, rec, steps, inquiry_move).await;
    if state != "converted" {
        return rec;
    }
    let booking = app.ok(token, &INQUIRY.url(&rec, "/convert-to-booking"), convert_body(&rec), 201).await;
    assert_eq!(booking["status"], "pending");
    fetch(app, token, &INQUIRY, &rec).await
}

/// A fresh booking in `state`, by the shortest path. It started a minute ago, so that both
/// `in_progress` (from 30 minutes before the start) and `no_show` (from the start) are open.
async fn booking_in(app: &TestApp, token: &str, state: &str) -> Value {
    let steps: &[&str] = match state {
        "draft" => &[],
        "pending" => &["pending"],
        "deposit_required" => &["pending", "deposit_required"],
        "confirmed" => &["pending", "deposit_required", "confirmed"],
        "in_progress" => &["pending", "deposit_required", "confirmed", "in_progress"],
        "completed" => &["pending", "deposit_required", "confirmed", "in_progress", "completed"],
        "cancelled" => &["cancelled"],
        "no_show" => &["pending", "deposit_required", "confirmed", "no_show"],
        other => panic!("no booking state {other}"),
    };
    let rec = fixtures::booking(app, token, -1).await;
    assert_eq!(rec["status"], "draft");
    walk(app, token, &BOOKING, rec, steps, booking_move).await
}

async fn new_task(app: &TestApp, token: &str) -> Value {
    app.ok(token, "/tasks", json!({"type": "follow_up", "title": "Call the client back"}), 201).await
}

/// A fresh task in `state`, by the shortest path.
async fn task_in(app: &TestApp, token: &str, state: &str) -> Value {
    let steps: &[&str] = match state {
        "open" => &[],
        "in_progress" => &["in_progress"],
        "done" => &["in_progress", "done"],
        "cancelled" => &["cancelled"],
        other => panic!("no task state {other}"),
    };
    let rec = new_task(app, token).await;
    assert_eq!(rec["status"], "open");
    walk(app, token, &TASK, rec, steps, task_move).await
}

async fn new_exception(app: &TestApp, token: &str) -> Value {
    app.ok(token, "/exceptions", json!({"type": "no_show_risk", "severity": "medium"}), 201).await
}

/// A fresh exception in `state`, by the shortest path.
async fn exception_in(app: &TestApp, token: &str, state: &str) -> Value {
    let steps: &[&str] = match state {
        "open" => &[],
        "acknowledged" => &["acknowledged"],
        "resolved" => &["acknowledged", "resolved"],
        "dismissed" => &["dismissed"],
        other => panic!("no exception state {other}"),
    };
    let rec = new_exception(app, token).await;
    assert_eq!(rec["status"], "open");
    walk(app, token, &EXCEPTION, rec, steps, exception_move).await
}

// ---------------------------------------------------------------------------------------------
// The tables.

both_engines!(inquiry_table, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    for from in INQUIRY.states() {
        for to in INQUIRY.states() {
            let rec = inquiry_in(&app, &admin, from).await;
            let before = seen(&app, &admin, &INQUIRY, &rec, to).await;
            let answer = app.post(Some(&admin), &INQUIRY.url(&rec, "/status"), inquiry_move(&rec, to)).await;
            if to == "converted" && INQUIRY.allows(from, to) {
                // Allowed by the table, but only through convert-to-booking.
                expect_refused(&app, &admin, &INQUIRY, &before, to, answer, "guard_failed").await;
                continue;
            }
            let Some(moved) = check(&app, &admin, &INQUIRY, &before, to, answer).await else {
                continue;
            };
            match to {
                "lost" => assert_eq!(moved["lost_reason"], REASON),
                "awaiting_client" => {
                    assert_eq!(moved["proposal"]["model_id"], rec["model_id"], "{moved}")
                }
                _ => {}
            }
        }
    }
    // convert-to-booking from every state: only awaiting_deposit → converted, with a booking.
    for from in INQUIRY.states() {
        let rec = inquiry_in(&app, &admin, from).await;
        let before = seen(&app, &admin, &INQUIRY, &rec, "converted").await;
        let (s, body) = app.post(Some(&admin), &INQUIRY.url(&rec, "/convert-to-booking"), convert_body(&rec)).await;
        if !INQUIRY.allows(from, "converted") {
            expect_refused(&app, &admin, &INQUIRY, &before, "converted", (s, body), "invalid_transition").await;
            continue;
        }
        assert_eq!(s, StatusCode::CREATED, "convert from {from}: {body}");
        assert_eq!(body["status"], "pending", "{body}");
        assert_eq!(body["inquiry_id"], rec["id"], "{body}");
        assert_eq!(body["model_id"], rec["model_id"], "{body}");
        let moved = expect_moved(&app, &admin, &INQUIRY, &before, "converted").await;
        assert_eq!(moved["booking_id"], body["id"], "{moved}");
    }
});

both_engines!(booking_table, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    for from in BOOKING.states() {
        for to in BOOKING.states() {
            let rec = booking_in(&app, &admin, from).await;
            let before = seen(&app, &admin, &BOOKING, &rec, to).await;
            let answer = app.post(Some(&admin), &BOOKING.url(&rec, "/status"), booking_move(&rec, to)).await;
            let Some(moved) = check(&app, &admin, &BOOKING, &before, to, answer).await else {
                continue;
            };
            match to {
                "cancelled" => assert_eq!(moved["cancellation_reason"], REASON, "{moved}"),
                "confirmed" => assert_eq!(moved["override_reason"], REASON, "{moved}"),
                _ => {}
            }
        }
    }
});

both_engines!(task_table, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    for from in TASK.states() {
        for to in TASK.states() {
            let rec = task_in(&app, &admin, from).await;
            let before = seen(&app, &admin, &TASK, &rec, to).await;
            let answer = app.post(Some(&admin), &TASK.url(&rec, "/status"), task_move(&rec, to)).await;
            check(&app, &admin, &TASK, &before, to, answer).await;
        }
    }
});

both_engines!(exception_table, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    for from in EXCEPTION.states() {
        for to in EXCEPTION.states() {
            let rec = exception_in(&app, &admin, from).await;
            let before = seen(&app, &admin, &EXCEPTION, &rec, to).await;
            let answer = app.post(Some(&admin), &EXCEPTION.url(&rec, "/status"), exception_move(&rec, to)).await;
            if let Some(moved) = check(&app, &admin, &EXCEPTION, &before, to, answer).await
                && matches!(to, "resolved" | "dismissed")
            {
                assert_eq!(moved["resolution"], RESOLUTION, "{moved}");
            }
        }
    }
    // The shortcut endpoints obey the same table.
    for from in EXCEPTION.states() {
        for (tail, body, to) in [
            ("/acknowledge", json!({}), "acknowledged"),
            ("/resolve", json!({"resolution": RESOLUTION}), "resolved"),
            ("/resolve", json!({"resolution": RESOLUTION, "status": "dismissed"}), "dismissed"),
        ] {
            let rec = exception_in(&app, &admin, from).await;
            let before = seen(&app, &admin, &EXCEPTION, &rec, to).await;
            let answer = app.post(Some(&admin), &EXCEPTION.url(&rec, tail), body).await;
            check(&app, &admin, &EXCEPTION, &before, to, answer).await;
        }
    }
});

// ---------------------------------------------------------------------------------------------
// The guards.

both_engines!(lost_and_cancelled_need_a_reason, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    for reason in [None, Some(""), Some("   ")] {
        for from in ["new", "awaiting_deposit"] {
            let rec = inquiry_in(&app, &admin, from).await;
            let before = seen(&app, &admin, &INQUIRY, &rec, "lost").await;
            let (s, b) = app
                .post(
                    Some(&admin),
                    &INQUIRY.url(&rec, "/status"),
                    json!({"status": "lost", "reason": reason, "version": version(&rec)}),
                )
                .await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{from} -> lost: {b}");
            assert_eq!(b["error"]["code"], "validation_failed", "{b}");
            expect_unchanged(&app, &admin, &INQUIRY, &before, "lost without reason").await;
        }
        for from in ["draft", "confirmed"] {
            let rec = booking_in(&app, &admin, from).await;
            let before = seen(&app, &admin, &BOOKING, &rec, "cancelled").await;
            let (s, b) = app
                .post(
                    Some(&admin),
                    &BOOKING.url(&rec, "/status"),
                    json!({"status": "cancelled", "reason": reason, "version": version(&rec)}),
                )
                .await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{from} -> cancelled: {b}");
            assert_eq!(b["error"]["code"], "validation_failed", "{b}");
            expect_unchanged(&app, &admin, &BOOKING, &before, "cancel without reason").await;
        }
    }
});

both_engines!(awaiting_client_needs_a_proposal, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let m = fixtures::model(&app, &admin).await;
    let n = fixtures::rand_n();
    // No wanted model and no requested start: nothing to propose from.
    let rec = app
        .ok(
            &admin,
            "/inquiries",
            json!({
                "source": "web",
                "client": {"name": "Vague Client", "phone": format!("+4477007{n:06}")}
            }),
            201,
        )
        .await;
    let rec = walk(&app, &admin, &INQUIRY, rec, &["qualified"], inquiry_move).await;
    let before = seen(&app, &admin, &INQUIRY, &rec, "awaiting_client").await;
    let answer = app
        .post(
            Some(&admin),
            &INQUIRY.url(&rec, "/status"),
            json!({"status": "awaiting_client", "version": version(&rec)}),
        )
        .await;
    expect_refused(&app, &admin, &INQUIRY, &before, "awaiting_client", answer, "guard_failed").await;
    let start = at(72 * 60);
    let moved = app
        .ok(
            &admin,
            &INQUIRY.url(&rec, "/status"),
            json!({
                "status": "awaiting_client",
                "proposal": {"model_id": m["id"], "start_at": start},
                "version": version(&rec)
            }),
            200,
        )
        .await;
    assert_eq!(moved["proposal"]["model_id"], m["id"], "{moved}");
    assert!(!moved["proposal"]["start_at"].is_null(), "{moved}");
    expect_moved(&app, &admin, &INQUIRY, &before, "awaiting_client").await;
});

both_engines!(confirming_without_a_paid_deposit_needs_an_override, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let operator = app.login("lukas@virel.com").await;
    let rec = booking_in(&app, &admin, "deposit_required").await;
    let url = BOOKING.url(&rec, "/status");
    let before = seen(&app, &admin, &BOOKING, &rec, "confirmed").await;

    // No succeeded payment, no override.
    let answer =
        app.post(Some(&admin), &url, json!({"status": "confirmed", "reason": REASON, "version": version(&rec)})).await;
    assert_eq!(answer.1["error"]["details"]["guard"], "deposit_paid", "{}", answer.1);
    expect_refused(&app, &admin, &BOOKING, &before, "confirmed", answer, "guard_failed").await;

    // An override by someone without bookings:override: 403, audited, nothing else.
    let forbidden = "SELECT COUNT(*) AS n FROM audit_log WHERE action = 'forbidden'";
    let refused_before = app.count(forbidden).await;
    let (s, b) = app
        .post(
            Some(&operator),
            &url,
            json!({"status": "confirmed", "override": true, "reason": REASON, "version": version(&rec)}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(b["error"]["code"], "forbidden", "{b}");
    assert_eq!(app.count(forbidden).await, refused_before + 1);
    expect_unchanged(&app, &admin, &BOOKING, &before, "override as OPERATOR").await;

    // An override needs a reason.
    for reason in [None, Some(" ")] {
        let (s, b) = app
            .post(
                Some(&admin),
                &url,
                json!({"status": "confirmed", "override": true, "reason": reason, "version": version(&rec)}),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["error"]["code"], "validation_failed", "{b}");
        expect_unchanged(&app, &admin, &BOOKING, &before, "override without reason").await;
    }

    // The owner overrides, with a reason.
    let b = app
        .ok(
            &admin,
            &url,
            json!({"status": "confirmed", "override": true, "reason": "paid in cash at the office", "version": version(&rec)}),
            200,
        )
        .await;
    assert_eq!(b["status"], "confirmed");
    assert_eq!(b["override_reason"], "paid in cash at the office", "{b}");
    expect_moved(&app, &admin, &BOOKING, &before, "confirmed").await;

    // So may an OPS_MANAGER (who has bookings:override).
    let manager = app.login("tommy@virel.com").await;
    let rec = booking_in(&app, &admin, "deposit_required").await;
    let b = app
        .ok(
            &manager,
            &BOOKING.url(&rec, "/status"),
            json!({"status": "confirmed", "override": true, "reason": REASON}),
            200,
        )
        .await;
    assert_eq!(b["override_reason"], REASON, "{b}");
});

both_engines!(a_paid_deposit_confirms_without_override, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let operator = app.login("lukas@virel.com").await;
    let requested = events(&app, "payment.requested").await;
    let rec = booking_in(&app, &admin, "deposit_required").await;
    assert_eq!(events(&app, "payment.requested").await, requested + 1);
    // The payment endpoints and the Stripe webhook are not this test's subject: mark the
    // requested deposit as paid in the database, as the webhook would.
    {
        let booking_id = uuid::Uuid::parse_str(id(&rec)).unwrap();
        let mut h = app.db.acquire().await.unwrap();
        let n = virel_domain::q_exec!(
            &mut h.conn(),
            "UPDATE payments SET status = 'succeeded' WHERE booking_id = $1 AND kind = 'deposit'",
            booking_id
        )
        .unwrap();
        assert_eq!(n, 1, "one requested deposit payment");
    }
    let before = seen(&app, &admin, &BOOKING, &rec, "confirmed").await;
    let b = app
        .ok(&operator, &BOOKING.url(&rec, "/status"), json!({"status": "confirmed", "version": version(&rec)}), 200)
        .await;
    assert!(b["override_reason"].is_null(), "{b}");
    let rec = expect_moved(&app, &admin, &BOOKING, &before, "confirmed").await;

    // Cancelling it now leaves finance a refund-review task about the booking.
    let path = format!("/tasks?subject_type=booking&subject_id={}", id(&rec));
    let (_, tasks) = app.get(&admin, &path).await;
    assert_eq!(tasks["items"].as_array().unwrap().len(), 0, "{tasks}");
    app.ok(&admin, &BOOKING.url(&rec, "/status"), booking_move(&rec, "cancelled"), 200).await;
    let (_, tasks) = app.get(&admin, &path).await;
    let items = tasks["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{tasks}");
    assert_eq!(items[0]["assignee_id"], app.user_id("finance@virel.com").await.as_str());
});

both_engines!(starting_and_no_show_wait_for_the_clock, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let confirmed = async |start_in: i64| {
        let rec = fixtures::booking(&app, &admin, start_in).await;
        let steps = ["pending", "deposit_required", "confirmed"];
        walk(&app, &admin, &BOOKING, rec, &steps, booking_move).await
    };
    let refused = async |rec: &Value, to: &str, guard: &str| {
        let before = seen(&app, &admin, &BOOKING, rec, to).await;
        let answer = app.post(Some(&admin), &BOOKING.url(rec, "/status"), booking_move(rec, to)).await;
        assert_eq!(answer.1["error"]["details"]["guard"], guard, "{}", answer.1);
        expect_refused(&app, &admin, &BOOKING, &before, to, answer, "guard_failed").await;
    };

    // Two hours ahead: too early to start, and certainly no no-show yet.
    let rec = confirmed(120).await;
    refused(&rec, "in_progress", "not_before_start_window").await;
    refused(&rec, "no_show", "not_before_start").await;
    // 31 minutes ahead: still too early to start.
    let rec = confirmed(31).await;
    refused(&rec, "in_progress", "not_before_start_window").await;

    // 20 minutes ahead: it may start, but the client is not late yet.
    let rec = confirmed(20).await;
    refused(&rec, "no_show", "not_before_start").await;
    let before = seen(&app, &admin, &BOOKING, &rec, "in_progress").await;
    app.ok(&admin, &BOOKING.url(&rec, "/status"), booking_move(&rec, "in_progress"), 200).await;
    expect_moved(&app, &admin, &BOOKING, &before, "in_progress").await;

    // A minute past the start: the no-show can be recorded.
    let rec = confirmed(-1).await;
    let before = seen(&app, &admin, &BOOKING, &rec, "no_show").await;
    app.ok(&admin, &BOOKING.url(&rec, "/status"), booking_move(&rec, "no_show"), 200).await;
    expect_moved(&app, &admin, &BOOKING, &before, "no_show").await;
});

both_engines!(resolving_an_exception_needs_a_resolution, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    for (from, to) in [("acknowledged", "resolved"), ("open", "dismissed"), ("acknowledged", "dismissed")] {
        let rec = exception_in(&app, &admin, from).await;
        let before = seen(&app, &admin, &EXCEPTION, &rec, to).await;
        for body in [json!({"status": to}), json!({"status": to, "resolution": "  "})] {
            let (s, b) = app.post(Some(&admin), &EXCEPTION.url(&rec, "/status"), body).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{from} -> {to}: {b}");
            assert_eq!(b["error"]["code"], "validation_failed", "{b}");
            expect_unchanged(&app, &admin, &EXCEPTION, &before, "no resolution").await;
        }
        let (s, b) =
            app.post(Some(&admin), &EXCEPTION.url(&rec, "/resolve"), json!({"resolution": "", "status": to})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "/resolve {from} -> {to}: {b}");
        // A body without the resolution at all is malformed.
        let (s, b) = app.post(Some(&admin), &EXCEPTION.url(&rec, "/resolve"), json!({"status": to})).await;
        assert!(matches!(s.as_u16(), 400 | 422), "/resolve without resolution: {s} {b}");
        expect_unchanged(&app, &admin, &EXCEPTION, &before, "no resolution").await;
    }
});

both_engines!(a_stale_version_is_a_conflict, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    // (machine, a fresh record, first move, second move, body for a move)
    let inquiry = fixtures::inquiry(&app, &admin, "web").await;
    let booking = fixtures::booking(&app, &admin, 24 * 60).await;
    let task = new_task(&app, &admin).await;
    let exception = new_exception(&app, &admin).await;
    let cases: [(&Table, Value, &str, &str, Move); 4] = [
        (&INQUIRY, inquiry, "qualified", "awaiting_client", inquiry_move),
        (&BOOKING, booking, "pending", "deposit_required", booking_move),
        (&TASK, task, "in_progress", "done", task_move),
        (&EXCEPTION, exception, "acknowledged", "resolved", exception_move),
    ];
    for (t, stale, first, second, body) in cases {
        let moved = walk(&app, &admin, t, stale.clone(), &[first], body).await;
        assert_eq!(version(&moved), version(&stale) + 1);
        // The second move is allowed by the table, but sent with the version seen before.
        let before = seen(&app, &admin, t, &moved, second).await;
        let mut b = body(&moved, second);
        b["version"] = json!(version(&stale));
        let (s, err) = app.post(Some(&admin), &t.url(&moved, "/status"), b).await;
        assert_eq!(s, StatusCode::CONFLICT, "{} stale version: {err}", t.entity);
        assert_eq!(err["error"]["code"], "version_conflict", "{err}");
        assert_eq!(err["error"]["details"]["current_version"], version(&moved), "{err}");
        expect_unchanged(&app, &admin, t, &before, "stale version").await;
        // With the current version it goes through.
        let (s, ok) = app.post(Some(&admin), &t.url(&moved, "/status"), body(&moved, second)).await;
        check(&app, &admin, t, &before, second, (s, ok)).await;
    }
});

both_engines!(every_step_is_audited_and_evented, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let changed = events(&app, "booking.status_changed").await;
    let confirmed = events(&app, "booking.confirmed").await;
    let completed = events(&app, "booking.completed").await;
    let steps = ["pending", "deposit_required", "confirmed", "in_progress", "completed"];
    let rec = fixtures::booking(&app, &admin, 10).await;
    let rec = walk(&app, &admin, &BOOKING, rec, &steps, booking_move).await;
    assert_eq!(version(&rec), 1 + steps.len() as i64, "{rec}");

    let rows = audit(&app, &admin, "booking", id(&rec)).await;
    let actions: Vec<&str> = rows.iter().rev().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "booking.created",
            "booking.status_changed",
            "booking.status_changed",
            "booking.status_changed",
            "booking.status_changed",
            "booking.status_changed"
        ]
    );
    let trail: Vec<(&str, &str)> = rows
        .iter()
        .rev()
        .skip(1)
        .map(|r| (r["before"]["status"].as_str().unwrap(), r["after"]["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        trail,
        [
            ("draft", "pending"),
            ("pending", "deposit_required"),
            ("deposit_required", "confirmed"),
            ("confirmed", "in_progress"),
            ("in_progress", "completed"),
        ]
    );
    assert!(rows.iter().all(|r| !r["actor"].as_str().unwrap().is_empty()));

    assert_eq!(events(&app, "booking.status_changed").await, changed + steps.len() as i64);
    assert_eq!(events(&app, "booking.confirmed").await, confirmed + 1);
    assert_eq!(events(&app, "booking.completed").await, completed + 1);

    // The booking's timeline shows the same story.
    let (s, tl) = app.get(&admin, &format!("/bookings/{}/timeline", id(&rec))).await;
    assert_eq!(s, StatusCode::OK, "{tl}");
    let kinds: Vec<&str> =
        tl["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap_or_default()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "booking.status_changed").count(), steps.len(), "{kinds:?}");
});
