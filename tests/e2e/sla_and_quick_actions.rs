//! SLA policies and the Action Center's quick actions (SPEC §7, §8), over HTTP on both engines:
//! Confirm, Contact, Note, Assign and Acknowledge; deadlines from the policies (wall-clock and
//! business hours); the escalation ladder the sweep climbs; the clock pausing while an inquiry
//! waits on the client; the booking clock (starting soon, no-show risk, safety checks); at-risk
//! warnings. Tests that need time to pass run the workers with a one-second sweep.

use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, FixedOffset, NaiveTime, TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::fixtures::{self, at};
use crate::harness::{TestApp, WorkerOptions};
use crate::{both_engines, both_engines_full};

/// Workers and scheduler, the SLA sweep and the booking clock every second.
fn sweeping() -> WorkerOptions {
    WorkerOptions { sweep_secs: 1, ..Default::default() }
}

fn sid(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_string()
}

fn time(v: &Value) -> DateTime<Utc> {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}")).with_timezone(&Utc)
}

fn secs(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// `due - from` is `minutes` minutes, to within a second.
fn assert_window(what: &str, from: &Value, due: &Value, minutes: i64) {
    let got = time(due) - time(from);
    let want = chrono::Duration::minutes(minutes);
    assert!((got - want).num_milliseconds().abs() < 1000, "{what}: due {due} is {got} after {from}, want {want}");
}

#[derive(sqlx::FromRow)]
struct N {
    n: i64,
}

/// Domain events of `event_type` about the subject `subject_id`.
async fn events(app: &TestApp, event_type: &str, subject_id: &str) -> i64 {
    let id = Uuid::parse_str(subject_id).unwrap();
    let mut h = app.db.acquire().await.unwrap();
    virel_domain::q_one!(
        &mut h.conn(),
        N,
        "SELECT COUNT(*) AS n FROM domain_events WHERE type = $1 AND subject_id = $2",
        event_type.to_string(),
        id
    )
    .unwrap()
    .n
}

/// A count with the id `id` bound to `$1`.
async fn count_for(app: &TestApp, sql: &'static str, id: &str) -> i64 {
    let id = Uuid::parse_str(id).unwrap();
    let mut h = app.db.acquire().await.unwrap();
    virel_domain::q_one!(&mut h.conn(), N, sql, id).unwrap().n
}

/// Audit rows of `action` about the entity `entity_id`.
async fn audit_rows(app: &TestApp, action: &str, entity_id: &str) -> i64 {
    let mut h = app.db.acquire().await.unwrap();
    virel_domain::q_one!(
        &mut h.conn(),
        N,
        "SELECT COUNT(*) AS n FROM audit_log WHERE action = $1 AND entity_id = $2",
        action.to_string(),
        entity_id.to_string()
    )
    .unwrap()
    .n
}

/// Exceptions of `kind` about `subject_id`, as the API lists them (admin's view).
async fn exceptions_about(app: &TestApp, admin: &str, kind: &str, subject_id: &str) -> Vec<Value> {
    let (s, b) = app.get(admin, &format!("/exceptions?type={kind}&limit=200")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["items"].as_array().unwrap().iter().filter(|e| e["subject_id"] == subject_id).cloned().collect()
}

/// Tasks of `kind` about `subject_id`.
async fn tasks_about(app: &TestApp, admin: &str, kind: &str, subject_id: &str) -> Vec<Value> {
    let (s, b) = app.get(admin, &format!("/tasks?type={kind}&subject_id={subject_id}&limit=200")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["items"].as_array().unwrap().clone()
}

/// The item as `token`'s Action Center shows it, if it is there.
async fn ac_item(app: &TestApp, token: &str, id: &str) -> Option<Value> {
    let (s, b) = app.get(token, "/action-center").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["items"].as_array().unwrap().iter().find(|i| i["id"] == id).cloned()
}

async fn task(app: &TestApp, token: &str, id: &str) -> Value {
    let (s, b) = app.get(token, &format!("/tasks/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

async fn booking_status(app: &TestApp, token: &str, id: &str) -> String {
    let (s, b) = app.get(token, &format!("/bookings/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["status"].as_str().unwrap().to_string()
}

/// The SLA policy for (`kind`, `item_type`).
async fn policy(app: &TestApp, token: &str, kind: &str, item_type: &str) -> Value {
    let (s, b) = app.get(token, "/sla-policies").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b.as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == kind && p["item_type"] == item_type)
        .unwrap_or_else(|| panic!("no policy for {kind}/{item_type} in {b}"))
        .clone()
}

async fn patch_policy(app: &TestApp, token: &str, id: &str, body: Value) -> (StatusCode, Value) {
    app.patch(token, &format!("/sla-policies/{id}"), body).await
}

async fn action(app: &TestApp, token: &str, kind: &str, id: &str, what: &str, body: Value) -> (StatusCode, Value) {
    app.post(Some(token), &format!("/action-center/{kind}/{id}/{what}"), body).await
}

async fn new_task(app: &TestApp, token: &str, body: Value) -> Value {
    app.ok(token, "/tasks", body, 201).await
}

/// A booking for a new client and model, starting `start_in` minutes from now, moved to
/// confirmed with an override; the client confirms it first when `client_confirms` (the
/// booking clock looks only at confirmed bookings, so it enters the 30-minute window then).
async fn confirmed_booking(app: &TestApp, admin: &str, start_in: i64, client_confirms: bool) -> Value {
    let c = fixtures::client(app, admin).await;
    let m = fixtures::model(app, admin).await;
    let b = fixtures::booking_for(app, admin, &m["id"], &c["id"], start_in, "pending").await;
    let id = sid(&b);
    app.ok(admin, &format!("/bookings/{id}/status"), json!({"status": "deposit_required"}), 200).await;
    if client_confirms {
        let (s, body) = app.post(Some(admin), &format!("/bookings/{id}/client-confirmed"), json!({})).await;
        assert_eq!(s, StatusCode::OK, "client-confirmed: {body}");
    }
    let b = app
        .ok(
            admin,
            &format!("/bookings/{id}/status"),
            json!({"status": "confirmed", "override": true, "reason": "deposit taken in cash"}),
            200,
        )
        .await;
    assert_eq!(b["status"], "confirmed");
    b
}

fn assert_code(s: StatusCode, b: &Value, status: u16, code: &str) {
    assert_eq!(s.as_u16(), status, "{b}");
    assert_eq!(b["error"]["code"], code, "{b}");
}

// ---------------------------------------------------------------------------------------------
// 1. Quick actions
// ---------------------------------------------------------------------------------------------

both_engines!(confirm_completes_the_task_and_moves_the_booking_forward, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let lukas = app.login("lukas@virel.com").await;
    let b = fixtures::booking(&app, &admin, 3 * 24 * 60).await;
    let bid = sid(&b);
    assert_eq!(b["status"], "draft");
    // Confirm does not start a draft: it moves pending → deposit_required → confirmed only.
    let t0 = new_task(
        &app,
        &admin,
        json!({"type": "confirm_booking", "title": "Too early", "subject_type": "booking", "subject_id": bid}),
    )
    .await;
    let (s, body) = action(&app, &lukas, "task", &sid(&t0), "confirm", json!({})).await;
    assert_code(s, &body, 409, "guard_failed");
    assert_eq!(booking_status(&app, &admin, &bid).await, "draft");
    assert_eq!(task(&app, &admin, &sid(&t0)).await["status"], "open", "the task is untouched");
    app.ok(&admin, &format!("/bookings/{bid}/status"), json!({"status": "pending"}), 200).await;
    let t = new_task(
        &app,
        &admin,
        json!({"type": "confirm_booking", "title": "Confirm with the client", "subject_type": "booking", "subject_id": bid}),
    )
    .await;
    let tid = sid(&t);
    assert!(ac_item(&app, &lukas, &tid).await.is_some(), "an unassigned task is in the operator's list");

    // An OPERATOR confirms the unassigned task: done, off the list, the deposit asked for.
    let (s, item) = action(&app, &lukas, "task", &tid, "confirm", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{item}");
    assert_eq!(item["id"], tid.as_str());
    assert_eq!(item["status"], "done", "{item}");
    assert_eq!(item["open"], false, "{item}");
    assert_eq!(task(&app, &admin, &tid).await["status"], "done");
    assert_eq!(booking_status(&app, &admin, &bid).await, "deposit_required");
    assert!(ac_item(&app, &admin, &tid).await.is_none(), "a done task leaves the Action Center");
    assert!(ac_item(&app, &lukas, &tid).await.is_none());
    assert_eq!(events(&app, "booking.status_changed", &bid).await, 2);
    assert_eq!(events(&app, "task.status_changed", &tid).await, 2, "open → in_progress → done");

    // Confirming it again changes nothing: the task is done, the booking stays pending.
    let (s, body) = action(&app, &admin, "task", &tid, "confirm", json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(booking_status(&app, &admin, &bid).await, "deposit_required");
    assert_eq!(events(&app, "booking.status_changed", &bid).await, 2);

    // Confirm on a follow_up task: 409 guard_failed, nothing changes.
    let f = new_task(
        &app,
        &admin,
        json!({"type": "follow_up", "title": "Call back", "subject_type": "booking", "subject_id": bid}),
    )
    .await;
    let fid = sid(&f);
    let (s, body) = action(&app, &lukas, "task", &fid, "confirm", json!({})).await;
    assert_code(s, &body, 409, "guard_failed");
    let after = task(&app, &admin, &fid).await;
    assert_eq!(after["status"], "open");
    assert_eq!(after["version"], f["version"], "the follow_up task is untouched");
    assert_eq!(booking_status(&app, &admin, &bid).await, "deposit_required");
    assert_eq!(events(&app, "task.status_changed", &fid).await, 0);

    // Confirm on an exception: guard_failed too.
    let e = app
        .ok(
            &admin,
            "/exceptions",
            json!({"type": "no_show_risk", "severity": "high", "subject_type": "booking", "subject_id": bid}),
            201,
        )
        .await;
    let (s, body) = action(&app, &admin, "exception", &sid(&e), "confirm", json!({})).await;
    assert_code(s, &body, 409, "guard_failed");

    // A booking that cannot move forward (pending with no deposit: pending → deposit_required is
    // refused by its guard): the task stays open, in one transaction with the refusal.
    let c = fixtures::client(&app, &admin).await;
    let m = fixtures::model(&app, &admin).await;
    let nodep = app
        .ok(
            &admin,
            "/bookings",
            json!({"client_id": c["id"], "model_id": m["id"], "start_at": at(5 * 24 * 60), "duration_minutes": 60,
                   "location": "London W1", "price": {"amount": 30000, "currency": "GBP"},
                   "deposit": {"amount": 0, "currency": "GBP"}, "status": "pending"}),
            201,
        )
        .await;
    let nid = sid(&nodep);
    let ct =
        new_task(&app, &admin, json!({"type": "confirm_booking", "subject_type": "booking", "subject_id": nid})).await;
    let ctid = sid(&ct);
    let (s, body) = action(&app, &lukas, "task", &ctid, "confirm", json!({})).await;
    assert_code(s, &body, 409, "guard_failed");
    let after = task(&app, &admin, &ctid).await;
    assert_eq!(after["status"], "open", "the task stays open when the booking cannot move: {after}");
    assert_eq!(after["version"], ct["version"]);
    assert_eq!(events(&app, "task.status_changed", &ctid).await, 0);
    assert_eq!(booking_status(&app, &admin, &nid).await, "pending");
    assert_eq!(events(&app, "booking.status_changed", &nid).await, 0);
    assert_eq!(count_for(&app, "SELECT COUNT(*) AS n FROM payments WHERE booking_id = $1", &nid).await, 0);
    assert!(ac_item(&app, &admin, &ctid).await.is_some(), "still in the Action Center");

    // An OPERATOR cannot confirm another operator's task.
    let sasha = app.user_id("sasha@virel.com").await;
    let b2 = fixtures::booking(&app, &admin, 4 * 24 * 60).await;
    let hers = new_task(
        &app,
        &admin,
        json!({"type": "confirm_booking", "subject_type": "booking", "subject_id": b2["id"], "assignee_id": sasha}),
    )
    .await;
    let (s, body) = action(&app, &lukas, "task", &sid(&hers), "confirm", json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(booking_status(&app, &admin, &sid(&b2)).await, "draft");
    assert_eq!(task(&app, &admin, &sid(&hers)).await["status"], "open");
});

#[derive(sqlx::FromRow)]
struct NotificationRow {
    channel: String,
    recipient: Option<String>,
    template: String,
    status: String,
    subject_type: Option<String>,
}

async fn notification(app: &TestApp, id: &str) -> NotificationRow {
    let id = Uuid::parse_str(id).unwrap();
    let mut h = app.db.acquire().await.unwrap();
    virel_domain::q_one!(
        &mut h.conn(),
        NotificationRow,
        "SELECT channel, recipient, template, status, subject_type FROM notifications WHERE id = $1",
        id
    )
    .unwrap()
}

/// A booking whose client prefers email, and an unassigned task about it.
async fn booking_and_task_for_email_client(app: &TestApp, admin: &str) -> (String, String, String) {
    let n = fixtures::rand_n();
    let email = format!("prefers-email-{n}@example.com");
    let c = app
        .ok(
            admin,
            "/clients",
            json!({"name": format!("Emma {n}"), "phone": format!("+4477007{n:06}"), "email": email, "preferred_channel": "email"}),
            201,
        )
        .await;
    let m = fixtures::model(app, admin).await;
    let b = fixtures::booking_for(app, admin, &m["id"], &c["id"], 2 * 24 * 60, "draft").await;
    let t = new_task(
        app,
        admin,
        json!({"type": "contact_client", "title": "Ask about the address", "subject_type": "booking", "subject_id": b["id"]}),
    )
    .await;
    (sid(&b), sid(&t), email)
}

both_engines!(contact_queues_a_message_on_the_preferred_channel_and_notes_it, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let lukas = app.login("lukas@virel.com").await;
    let (bid, tid, email) = booking_and_task_for_email_client(&app, &admin).await;
    let before = app.count("SELECT COUNT(*) AS n FROM notifications").await;

    let (s, body) = action(&app, &lukas, "task", &tid, "contact", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["channel"], "email", "the client's preferred channel: {body}");
    assert_eq!(body["notification_status"], "queued", "{body}");
    assert_eq!(body["item"]["id"], tid.as_str());
    assert_eq!(body["item"]["open"], true, "contacting does not close the task");
    let nid = body["notification_id"].as_str().expect("notification_id").to_string();
    let row = notification(&app, &nid).await;
    assert_eq!(row.channel, "email");
    assert_eq!(row.recipient.as_deref(), Some(email.as_str()));
    assert_eq!(row.template, "contact_client");
    assert_eq!(row.status, "queued", "no workers here: still queued");
    assert_eq!(row.subject_type.as_deref(), Some("booking"));
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM notifications").await, before + 1);
    assert_eq!(events(&app, "notification.queued", &nid).await, 1);
    // Nothing was sent yet (no workers here): no "Contacted" note, but the message is on the
    // booking's timeline, queued.
    let (s, tl) = app.get(&admin, &format!("/bookings/{bid}/timeline")).await;
    assert_eq!(s, StatusCode::OK, "{tl}");
    let notes: Vec<&Value> = tl["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["text"].as_str().unwrap_or("").starts_with("Contacted the client"))
        .collect();
    assert!(notes.is_empty(), "the note waits for the message to be sent: {tl}");
    let on_timeline = tl["notifications"].as_array().unwrap();
    assert_eq!(on_timeline.len(), 1, "{tl}");
    assert_eq!(on_timeline[0]["status"], "queued");
    assert_eq!(on_timeline[0]["channel"], "email");

    // A client without a preferred channel, through an inquiry: SMS to the phone.
    let inq = fixtures::inquiry(&app, &admin, "phone").await;
    let it =
        new_task(&app, &admin, json!({"type": "follow_up", "subject_type": "inquiry", "subject_id": inq["id"]})).await;
    let (s, body) = action(&app, &admin, "task", &sid(&it), "contact", json!({"template": "generic"})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["channel"], "sms", "{body}");
    let row = notification(&app, body["notification_id"].as_str().unwrap()).await;
    assert_eq!((row.channel.as_str(), row.template.as_str()), ("sms", "generic"));
    assert!(row.recipient.is_some_and(|r| r.starts_with("+4477008")));
    assert_eq!(count_for(&app, "SELECT COUNT(*) AS n FROM notes WHERE subject_id = $1", &sid(&inq)).await, 0);

    // An unknown template and an item without a client: refused, nothing queued.
    let n = app.count("SELECT COUNT(*) AS n FROM notifications").await;
    let (s, body) = action(&app, &lukas, "task", &tid, "contact", json!({"template": "no_such_template"})).await;
    // A template that names nothing: 404, as any reference to nothing.
    assert_code(s, &body, 404, "not_found");
    let lone = new_task(&app, &admin, json!({"type": "custom", "title": "No subject"})).await;
    let (s, body) = action(&app, &admin, "task", &sid(&lone), "contact", json!({})).await;
    assert_code(s, &body, 409, "guard_failed");
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM notifications").await, n);
    assert_eq!(count_for(&app, "SELECT COUNT(*) AS n FROM notes WHERE subject_id = $1", &bid).await, 0);
});

both_engines_full!(
    contact_on_a_disabled_channel_fails_and_raises_notification_failed,
    WorkerOptions::default(),
    async |app: TestApp| {
        let admin = app.login("admin@virel.com").await;
        let (bid, tid, _) = booking_and_task_for_email_client(&app, &admin).await;
        let (s, body) = action(&app, &admin, "task", &tid, "contact", json!({})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let nid = body["notification_id"].as_str().unwrap().to_string();
        let failed =
            app.eventually(15, || async { (notification(&app, &nid).await.status == "failed").then_some(()) }).await;
        assert!(failed.is_some(), "no provider is configured: the message fails, never pretends to be sent");
        let raised = app
            .eventually(10, || async {
                let e = exceptions_about(&app, &admin, "notification_failed", &bid).await;
                (!e.is_empty()).then_some(e)
            })
            .await
            .expect("a notification_failed exception about the booking");
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert_eq!(raised[0]["status"], "open");
        assert!(ac_item(&app, &admin, &sid(&raised[0])).await.is_some(), "it is in the Action Center");
        assert_eq!(events(&app, "notification.failed", &nid).await, 1);
        // Once: no retries of a disabled channel, no second exception.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(exceptions_about(&app, &admin, "notification_failed", &bid).await.len(), 1);
        assert_eq!(events(&app, "notification.failed", &nid).await, 1);
    }
);

both_engines!(note_assign_and_acknowledge, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let tommy = app.login("tommy@virel.com").await;
    let lukas = app.login("lukas@virel.com").await;
    let lukas_id = app.user_id("lukas@virel.com").await;
    let sasha_id = app.user_id("sasha@virel.com").await;

    // Note: on a task and on an exception.
    let t1 = sid(&new_task(&app, &admin, json!({"type": "custom", "title": "Unassigned one"})).await);
    let (s, item) = action(&app, &lukas, "task", &t1, "note", json!({"text": "Left a voicemail"})).await;
    assert_eq!(s, StatusCode::OK, "{item}");
    assert_eq!(item["id"], t1.as_str());
    assert_eq!(
        count_for(&app, "SELECT COUNT(*) AS n FROM notes WHERE subject_type = 'task' AND subject_id = $1 AND text = 'Left a voicemail'", &t1).await,
        1
    );
    assert_eq!(events(&app, "note.added", &t1).await, 1);
    let (s, body) = action(&app, &lukas, "task", &t1, "note", json!({"text": "   "})).await;
    assert_code(s, &body, 422, "validation_failed");
    let ex = sid(&app.ok(&admin, "/exceptions", json!({"type": "double_booking", "severity": "high"}), 201).await);
    let (s, item) = action(&app, &admin, "exception", &ex, "note", json!({"text": "Checking the calendars"})).await;
    assert_eq!(s, StatusCode::OK, "{item}");
    assert_eq!(
        count_for(&app, "SELECT COUNT(*) AS n FROM notes WHERE subject_type = 'exception' AND subject_id = $1", &ex)
            .await,
        1
    );
    assert_eq!(
        count_for(&app, "SELECT COUNT(*) AS n FROM notes WHERE subject_id = $1", &t1).await,
        1,
        "the blank note was not written"
    );

    // Assign to me: an operator claims an unassigned task.
    let (s, item) = action(&app, &lukas, "task", &t1, "assign", json!({"assignee_id": lukas_id})).await;
    assert_eq!(s, StatusCode::OK, "{item}");
    assert_eq!(item["assignee_id"], lukas_id.as_str());
    assert_eq!(item["assignee_name"], "Lukas Berg");
    let mine = app.get(&lukas, "/action-center?mine=true").await.1;
    assert!(mine["items"].as_array().unwrap().iter().any(|i| i["id"] == t1.as_str()));
    // ... but may not hand it (or an unassigned one) to another operator.
    let (s, body) = action(&app, &lukas, "task", &t1, "assign", json!({"assignee_id": sasha_id})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(task(&app, &admin, &t1).await["assignee_id"], lukas_id.as_str());
    let t2 = sid(&new_task(&app, &admin, json!({"type": "custom", "title": "Another unassigned"})).await);
    let (s, body) = action(&app, &lukas, "task", &t2, "assign", json!({"assignee_id": sasha_id})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(task(&app, &admin, &t2).await["assignee_id"].is_null());
    // ... nor claim sasha's.
    let hers =
        sid(&new_task(&app, &admin, json!({"type": "custom", "title": "Sasha's", "assignee_id": sasha_id})).await);
    let (s, body) = action(&app, &lukas, "task", &hers, "assign", json!({"assignee_id": lukas_id})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(task(&app, &admin, &hers).await["assignee_id"], sasha_id.as_str());

    // round_robin as OPS_MANAGER: goes to an OPERATOR.
    let (s, item) = action(&app, &tommy, "task", &t2, "assign", json!({"assignee_id": "round_robin"})).await;
    assert_eq!(s, StatusCode::OK, "{item}");
    let picked = item["assignee_id"].as_str().expect("assigned").to_string();
    let (_, users) = app.get(&admin, "/users?limit=200").await;
    let role = users["items"].as_array().unwrap().iter().find(|u| u["id"] == picked.as_str()).unwrap()["role"].clone();
    assert_eq!(role, "OPERATOR");
    // Unassign (OPS_MANAGER), and an operator hands back their own.
    let (s, item) = action(&app, &tommy, "task", &t2, "assign", json!({"assignee_id": null})).await;
    assert_eq!(s, StatusCode::OK, "{item}");
    assert!(item["assignee_id"].is_null(), "{item}");
    assert!(task(&app, &admin, &t2).await["assignee_id"].is_null());
    let (s, item) = action(&app, &lukas, "task", &t1, "assign", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{item}");
    assert!(item["assignee_id"].is_null(), "{item}");
    let (s, body) = action(&app, &tommy, "task", &t2, "assign", json!({"assignee_id": "nobody"})).await;
    assert_code(s, &body, 422, "validation_failed");
    // Exceptions are assigned the same way; an operator may not hand one to another operator.
    let (s, body) = action(&app, &lukas, "exception", &ex, "assign", json!({"assignee_id": sasha_id})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let (s, item) = action(&app, &tommy, "exception", &ex, "assign", json!({"assignee_id": sasha_id})).await;
    assert_eq!(s, StatusCode::OK, "{item}");
    assert_eq!(item["assignee_id"], sasha_id.as_str());

    // Acknowledge a task: acknowledged, still open, one event.
    let (s, item) = action(&app, &lukas, "task", &t1, "acknowledge", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{item}");
    assert_eq!(item["open"], true);
    assert_eq!(
        count_for(&app, "SELECT COUNT(*) AS n FROM tasks WHERE id = $1 AND acknowledged_at IS NOT NULL", &t1).await,
        1
    );
    assert_eq!(events(&app, "task.acknowledged", &t1).await, 1);
    // Acknowledge an exception: it moves to acknowledged and stays in the list.
    let ex2 = sid(&app.ok(&admin, "/exceptions", json!({"type": "payment_failed", "severity": "high"}), 201).await);
    let (s, item) = action(&app, &lukas, "exception", &ex2, "acknowledge", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{item}");
    assert_eq!(item["status"], "acknowledged", "{item}");
    let (_, e) = app.get(&admin, &format!("/exceptions/{ex2}")).await;
    assert_eq!(e["status"], "acknowledged");
    assert!(ac_item(&app, &admin, &ex2).await.is_some_and(|i| i["status"] == "acknowledged"));
    let (s, body) = action(&app, &lukas, "exception", &ex2, "acknowledge", json!({})).await;
    assert_code(s, &body, 409, "invalid_transition");

    // Unknown kinds and ids.
    let (s, _) = action(&app, &admin, "gadget", &t1, "note", json!({"text": "x"})).await;
    assert!(s.is_client_error(), "{s}");
    let (s, _) = action(&app, &admin, "task", &Uuid::now_v7().to_string(), "acknowledge", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
});

// ---------------------------------------------------------------------------------------------
// 2. Deadlines from the policies
// ---------------------------------------------------------------------------------------------

both_engines!(deadlines_follow_the_sla_policies, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    for (kind, minutes) in
        [("confirm_booking", 30), ("follow_up", 15), ("deposit_reminder", 120), ("custom", 240), ("notify_model", 240)]
    {
        let t = new_task(&app, &admin, json!({"type": kind})).await;
        assert_window(kind, &t["created_at"], &t["due_at"], minutes);
        let item = ac_item(&app, &admin, &sid(&t)).await.unwrap();
        assert_eq!(item["due_at"], t["due_at"]);
        assert_eq!(item["sla_state"], "ok");
    }
    for (kind, minutes) in [("payment_failed", 10), ("double_booking", 60)] {
        let e = app.ok(&admin, "/exceptions", json!({"type": kind, "severity": "high"}), 201).await;
        assert_window(kind, &e["created_at"], &e["due_at"], minutes);
    }
    // A deadline given by hand stands.
    let given = Utc::now() + chrono::Duration::hours(7);
    let t = new_task(&app, &admin, json!({"type": "confirm_booking", "due_at": given})).await;
    assert!((time(&t["due_at"]) - given).num_milliseconds().abs() < 5, "{t}");
});

/// A working calendar in Tokyo (no daylight saving) open only on the day after tomorrow,
/// 10:00–11:00 and 14:00–16:00; returns the calendar and that day's local midnight.
fn tokyo_calendar() -> (Value, DateTime<FixedOffset>) {
    let tokyo = FixedOffset::east_opt(9 * 3600).unwrap();
    let day = Utc::now().with_timezone(&tokyo).date_naive() + chrono::Days::new(2);
    let key = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][day.weekday().num_days_from_monday() as usize];
    let cal = json!({"timezone": "Asia/Tokyo", "weekly": {key: [["10:00", "11:00"], ["14:00", "16:00"]]}});
    let midnight = tokyo.from_local_datetime(&day.and_time(NaiveTime::MIN)).unwrap();
    (cal, midnight)
}

both_engines!(business_hours_policies_and_who_may_edit_them, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let tommy = app.login("tommy@virel.com").await;
    let lukas = app.login("lukas@virel.com").await;
    let p = policy(&app, &admin, "task", "confirm_booking").await;
    let pid = sid(&p);
    assert_eq!(p["minutes"], 30);
    assert_eq!(p["business_hours"], false);
    let (cal, midnight) = tokyo_calendar();

    // Who may read: those who work tasks; the content manager may not.
    let (s, _) = app.get(&lukas, "/sla-policies").await;
    assert_eq!(s, StatusCode::OK);
    let content = app.login("content@virel.com").await;
    let (s, _) = app.get(&content, "/sla-policies").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Who may edit: OWNER and OPS_MANAGER; not an OPERATOR, not the content manager.
    let (s, body) = patch_policy(&app, &lukas, &pid, json!({"business_hours": true, "calendar": cal})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let (s, _) = patch_policy(&app, &content, &pid, json!({"minutes": 5})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Bad calendars and escalation ladders: 422, nothing written.
    let bad_calendars = [
        json!({"timezone": "Mars/Olympus_Mons", "weekly": {"mon": [["09:00", "18:00"]]}}),
        json!({"timezone": "Europe/London", "weekly": {"mon": [["09:00", "25:00"]]}}),
        json!({"timezone": "Europe/London", "weekly": {"mon": [["9am", "5pm"]]}}),
        json!({"timezone": "Europe/London", "weekly": {"funday": [["09:00", "18:00"]]}}),
        json!({"timezone": "Europe/London", "weekly": {"mon": [["18:00", "09:00"]]}}),
        json!({"timezone": "Europe/London", "weekly": {}}),
        json!({"timezone": "Europe/London"}),
        json!("weekdays"),
    ];
    for c in bad_calendars {
        let (s, body) = patch_policy(&app, &admin, &pid, json!({"business_hours": true, "calendar": c})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "calendar {c}: {body}");
        assert_eq!(body["error"]["code"], "validation_failed", "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.starts_with("calendar")), "{body}");
    }
    for e in [json!([1, 2]), json!([0, 2, 4, 6]), json!([-1, 0, 0]), json!([])] {
        let (s, body) = patch_policy(&app, &tommy, &pid, json!({"escalation_secs": e})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "escalation_secs {e}: {body}");
    }
    for bad in
        [json!({"minutes": 0}), json!({"minutes": -5}), json!({"at_risk_percent": 100}), json!({"at_risk_percent": 0})]
    {
        let (s, body) = patch_policy(&app, &tommy, &pid, bad.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    let unchanged = policy(&app, &admin, "task", "confirm_booking").await;
    assert_eq!(unchanged["version"], p["version"], "refused edits wrote nothing");
    assert_eq!(unchanged["business_hours"], false);
    let t = new_task(&app, &admin, json!({"type": "confirm_booking"})).await;
    assert_window("wall-clock still", &t["created_at"], &t["due_at"], 30);

    // The OWNER turns on business hours: 30 working minutes land on the calendar's one day.
    let (s, body) = patch_policy(&app, &admin, &pid, json!({"business_hours": true, "calendar": cal})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["business_hours"], true);
    assert_eq!(body["calendar"], cal);
    assert_eq!(body["version"].as_i64(), p["version"].as_i64().map(|v| v + 1));
    let t = new_task(&app, &admin, json!({"type": "confirm_booking"})).await;
    let want = (midnight + chrono::Duration::minutes(10 * 60 + 30)).with_timezone(&Utc);
    assert_eq!(time(&t["due_at"]), want, "30 working minutes from now = 10:30 Tokyo on the working day: {t}");

    // The OPS_MANAGER lengthens the window: 90 minutes fill the morning hour, then 30 minutes
    // of the afternoon.
    let (s, body) = patch_policy(&app, &tommy, &pid, json!({"minutes": 90, "escalation_secs": [0, 60, 60]})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["calendar"], cal, "a partial edit keeps the rest");
    assert_eq!(body["escalation_secs"], json!([0, 60, 60]));
    let t = new_task(&app, &admin, json!({"type": "confirm_booking"})).await;
    let want = (midnight + chrono::Duration::minutes(14 * 60 + 30)).with_timezone(&Utc);
    assert_eq!(time(&t["due_at"]), want, "{t}");
    // Other types keep their own policies.
    let f = new_task(&app, &admin, json!({"type": "follow_up"})).await;
    assert_window("follow_up", &f["created_at"], &f["due_at"], 15);
    // The list shows the edit; a stale version is refused.
    let now = policy(&app, &admin, "task", "confirm_booking").await;
    assert_eq!(now["minutes"], 90);
    let (s, body) = patch_policy(&app, &admin, &pid, json!({"minutes": 45, "version": p["version"]})).await;
    assert_code(s, &body, 409, "version_conflict");
    // An unknown policy.
    let (s, _) = patch_policy(&app, &admin, &Uuid::now_v7().to_string(), json!({"minutes": 5})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The levels escalate in order: delays given out of order are kept ascending.
    let (s, body) = patch_policy(&app, &tommy, &pid, json!({"escalation_secs": [5, 2, 9]})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["escalation_secs"], json!([2, 5, 9]), "{body}");
});

both_engines!(working_windows_given_out_of_order_or_overlapping_count_each_minute_once, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let pid = sid(&policy(&app, &admin, "task", "confirm_booking").await);
    let (cal, midnight) = tokyo_calendar();
    let key = cal["weekly"].as_object().unwrap().keys().next().unwrap().clone();
    let local = |h: i64, m: i64| (midnight + chrono::Duration::minutes(h * 60 + m)).with_timezone(&Utc);
    // (windows, working minutes, the deadline they must give on that day).
    let cases = [
        // Afternoon listed first: 30 minutes still end at 10:30, in the morning window.
        (json!([["14:00", "16:00"], ["10:00", "11:00"]]), 30, local(10, 30)),
        // 10–12 and 11–13 cover 10–13 once: 150 minutes end at 12:30.
        (json!([["10:00", "12:00"], ["11:00", "13:00"]]), 150, local(12, 30)),
    ];
    let mut wrong = Vec::new();
    for (windows, minutes, want) in cases {
        let calendar = json!({"timezone": "Asia/Tokyo", "weekly": {key.clone(): windows.clone()}});
        let body = json!({"business_hours": true, "minutes": minutes, "calendar": calendar});
        let (s, body) = patch_policy(&app, &admin, &pid, body).await;
        // Either such a calendar is refused, or its deadline is right.
        if s == StatusCode::UNPROCESSABLE_ENTITY {
            continue;
        }
        assert_eq!(s, StatusCode::OK, "{body}");
        let t = new_task(&app, &admin, json!({"type": "confirm_booking"})).await;
        if time(&t["due_at"]) != want {
            wrong.push(format!(
                "windows {windows} on {key}, {minutes} working minutes: due {} but the calendar says {want}",
                t["due_at"]
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
});

// ---------------------------------------------------------------------------------------------
// 3. Escalation
// ---------------------------------------------------------------------------------------------

both_engines_full!(escalation_climbs_each_level_once_unless_acknowledged, sweeping(), async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let tommy = app.login("tommy@virel.com").await;
    let lukas = app.login("lukas@virel.com").await;
    let lukas_id = app.user_id("lukas@virel.com").await;
    let tommy_id = app.user_id("tommy@virel.com").await;
    let owner_id = app.user_id("admin@virel.com").await;
    let p = policy(&app, &admin, "task", "follow_up").await;
    let (s, body) = patch_policy(&app, &tommy, &sid(&p), json!({"escalation_secs": [0, 2, 4]})).await;
    assert_eq!(s, StatusCode::OK, "{body}");

    let due = Utc::now() + chrono::Duration::seconds(1);
    let a = sid(&new_task(
        &app,
        &admin,
        json!({"type": "follow_up", "title": "Overdue", "assignee_id": lukas_id, "due_at": due}),
    )
    .await);
    // Acknowledged before its deadline passes: never escalates.
    let b = sid(
        &new_task(
            &app,
            &admin,
            json!({"type": "follow_up", "title": "Taken", "assignee_id": lukas_id, "due_at": Utc::now() + chrono::Duration::seconds(2)}),
        )
        .await,
    );
    let (s, body) = action(&app, &lukas, "task", &b, "acknowledge", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{body}");

    // Acknowledged once the ladder has started: it climbs no further.
    let c = sid(&new_task(
        &app,
        &admin,
        json!({"type": "follow_up", "title": "Late but taken", "assignee_id": lukas_id, "due_at": due}),
    )
    .await);
    let level = async |id: &str| task(&app, &admin, id).await["escalation_level"].as_i64().unwrap();
    let reach = async |n: i64, secs: u64| app.eventually(secs, || async { (level(&a).await >= n).then_some(()) }).await;
    let started = Instant::now();

    // Level 1 at the deadline: the assignee keeps it, no exception yet.
    assert!(reach(1, 6).await.is_some(), "level 1");
    let c_level =
        app.eventually(3, || async { Some(level(&c).await).filter(|l| *l >= 1) }).await.expect("C at level 1");
    let (s, body) = action(&app, &lukas, "task", &c, "acknowledge", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let c_level = body["escalation_level"].as_i64().unwrap_or(c_level);
    let t = task(&app, &admin, &a).await;
    assert_eq!(t["escalation_level"], 1, "{t}");
    assert_eq!(t["assignee_id"], lukas_id.as_str(), "level 1 leaves it with the assignee");
    assert_eq!(exceptions_about(&app, &admin, "sla_breached", &a).await.len(), 0);
    assert_eq!(ac_item(&app, &lukas, &a).await.expect("in lukas's list")["sla_state"], "breached");

    // Level 2: reassigned to the OPS_MANAGER, with one sla_breached exception for him.
    assert!(reach(2, 6).await.is_some(), "level 2");
    let t = task(&app, &admin, &a).await;
    assert_eq!(t["assignee_id"], tommy_id.as_str(), "level 2 hands it to tommy: {t}");
    let ex = exceptions_about(&app, &admin, "sla_breached", &a).await;
    assert_eq!(ex.len(), 1, "{ex:?}");
    assert_eq!(ex[0]["assignee_id"], tommy_id.as_str());
    assert_eq!(ex[0]["subject_type"], "task");
    assert!(ac_item(&app, &lukas, &a).await.is_none(), "no longer lukas's");

    // Level 3: a critical sla_breached exception for the OWNER.
    assert!(reach(3, 6).await.is_some(), "level 3");
    let ex = exceptions_about(&app, &admin, "sla_breached", &a).await;
    assert_eq!(ex.len(), 2, "{ex:?}");
    let critical: Vec<&Value> = ex.iter().filter(|e| e["severity"] == "critical").collect();
    assert_eq!(critical.len(), 1, "{ex:?}");
    assert_eq!(critical[0]["assignee_id"], owner_id.as_str());

    // And it stays so: each level exactly once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = task(&app, &admin, &a).await;
    assert_eq!(t["escalation_level"], 3);
    assert_eq!(t["assignee_id"], tommy_id.as_str());
    assert_eq!(events(&app, "task.sla_breached", &a).await, 3);
    assert_eq!(exceptions_about(&app, &admin, "sla_breached", &a).await.len(), 2);
    assert_eq!(audit_rows(&app, "task.escalated", &a).await, 3);
    assert_eq!(ac_item(&app, &admin, &a).await.unwrap()["escalation_level"], 3);

    // Acknowledged at level 1 (or wherever it had got to): it stopped there.
    assert!(c_level >= 1);
    assert_eq!(level(&c).await, c_level, "acknowledging stops the ladder");
    assert_eq!(events(&app, "task.sla_breached", &c).await, c_level);
    // The acknowledged task: past its deadline, never escalated.
    let t = task(&app, &admin, &b).await;
    assert_eq!(t["escalation_level"], 0, "{t}");
    assert_eq!(t["assignee_id"], lukas_id.as_str());
    assert_eq!(events(&app, "task.sla_breached", &b).await, 0);
    assert_eq!(exceptions_about(&app, &admin, "sla_breached", &b).await.len(), 0);
    assert_eq!(ac_item(&app, &lukas, &b).await.expect("still lukas's")["sla_state"], "breached");
    assert!(started.elapsed() < Duration::from_secs(25));
});

both_engines_full!(a_missed_safety_check_raises_one_critical_exception, sweeping(), async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let b = confirmed_booking(&app, &admin, 3 * 24 * 60, false).await;
    let bid = sid(&b);
    let t = sid(&new_task(
        &app,
        &admin,
        json!({"type": "safety_check", "priority": "critical", "subject_type": "booking", "subject_id": bid,
                   "due_at": Utc::now() - chrono::Duration::seconds(1)}),
    )
    .await);
    let raised = app
        .eventually(6, || async {
            let e = exceptions_about(&app, &admin, "safety_check_missed", &bid).await;
            (!e.is_empty()).then_some(e)
        })
        .await
        .expect("a safety_check_missed exception");
    assert_eq!(raised[0]["severity"], "critical");
    assert_eq!(task(&app, &admin, &t).await["escalation_level"], 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(exceptions_about(&app, &admin, "safety_check_missed", &bid).await.len(), 1, "exactly one");
    assert_eq!(task(&app, &admin, &t).await["escalation_level"], 1, "level 2 is 15 minutes later");
    assert_eq!(events(&app, "task.sla_breached", &t).await, 1);
    let item = ac_item(&app, &admin, &sid(&raised[0])).await.expect("in the Action Center");
    assert_eq!(item["priority"], "critical");
});

// ---------------------------------------------------------------------------------------------
// 4. Pausing while the inquiry waits on the client
// ---------------------------------------------------------------------------------------------

both_engines_full!(the_clock_stops_while_the_inquiry_awaits_the_client, sweeping(), async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let lukas_id = app.user_id("lukas@virel.com").await;
    let inq = fixtures::inquiry(&app, &admin, "phone").await;
    let iid = sid(&inq);
    let t = new_task(
        &app,
        &admin,
        json!({"type": "follow_up", "subject_type": "inquiry", "subject_id": iid, "assignee_id": lukas_id,
               "due_at": Utc::now() + chrono::Duration::seconds(3)}),
    )
    .await;
    let tid = sid(&t);
    let due0 = time(&t["due_at"]);
    app.ok(&admin, &format!("/inquiries/{iid}/status"), json!({"status": "qualified"}), 200).await;
    let before_pause = Utc::now();
    app.ok(
        &admin,
        &format!("/inquiries/{iid}/status"),
        json!({"status": "awaiting_client", "proposal": {"model_id": inq["model_id"], "start_at": at(2 * 24 * 60)}}),
        200,
    )
    .await;
    let after_pause = Utc::now();
    let item = ac_item(&app, &admin, &tid).await.unwrap();
    assert_eq!(item["sla_paused"], true, "{item}");
    assert_eq!(events(&app, "task.sla_paused", &tid).await, 1);

    // Past the original deadline while paused: not breached, not escalated.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let item = ac_item(&app, &admin, &tid).await.unwrap();
    assert_eq!(item["sla_paused"], true);
    assert_ne!(item["sla_state"], "breached", "a stopped clock does not run out: {item}");
    assert_eq!(item["escalation_level"], 0);
    assert_eq!(time(&item["due_at"]), due0, "the deadline moves only on resume");
    assert_eq!(events(&app, "task.sla_breached", &tid).await, 0);

    // On it goes: the clock restarts and the deadline moves by the time spent waiting.
    let before_resume = Utc::now();
    app.ok(&admin, &format!("/inquiries/{iid}/status"), json!({"status": "awaiting_deposit"}), 200).await;
    let after_resume = Utc::now();
    let item = ac_item(&app, &admin, &tid).await.unwrap();
    assert_eq!(item["sla_paused"], false, "{item}");
    assert_eq!(events(&app, "task.sla_resumed", &tid).await, 1);
    let moved = time(&item["due_at"]) - due0;
    let (least, most) = (before_resume - after_pause, after_resume - before_pause);
    let slack = chrono::Duration::milliseconds(500);
    assert!(
        moved >= least - slack && moved <= most + slack,
        "the deadline moved {}s; paused between {}s and {}s",
        secs(moved),
        secs(least),
        secs(most)
    );
    // The clock runs again: the moved deadline passes and the ladder starts.
    let escalated = app
        .eventually(8, || async {
            (task(&app, &admin, &tid).await["escalation_level"].as_i64() >= Some(1)).then_some(())
        })
        .await;
    assert!(escalated.is_some(), "breached after the moved deadline");
    assert_eq!(events(&app, "task.sla_paused", &tid).await, 1);
});

both_engines!(a_task_created_while_the_inquiry_awaits_the_client_starts_paused, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let inq = fixtures::inquiry(&app, &admin, "phone").await;
    let iid = sid(&inq);
    app.ok(&admin, &format!("/inquiries/{iid}/status"), json!({"status": "qualified"}), 200).await;
    app.ok(
        &admin,
        &format!("/inquiries/{iid}/status"),
        json!({"status": "awaiting_client", "proposal": {"model_id": inq["model_id"], "start_at": at(2 * 24 * 60)}}),
        200,
    )
    .await;
    // The inquiry already waits on the client when its follow-up task is made.
    let t = new_task(&app, &admin, json!({"type": "follow_up", "subject_type": "inquiry", "subject_id": iid})).await;
    let tid = sid(&t);
    let item = ac_item(&app, &admin, &tid).await.unwrap();
    assert_eq!(item["sla_paused"], true, "the inquiry is awaiting_client, so the task's clock is stopped: {item}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    app.ok(&admin, &format!("/inquiries/{iid}/status"), json!({"status": "awaiting_deposit"}), 200).await;
    let item = ac_item(&app, &admin, &tid).await.unwrap();
    assert_eq!(item["sla_paused"], false);
    let moved = time(&item["due_at"]) - time(&t["due_at"]);
    assert!(moved >= chrono::Duration::milliseconds(900), "the deadline moves by the wait: {}s", secs(moved));
});

// ---------------------------------------------------------------------------------------------
// 5. The booking clock
// ---------------------------------------------------------------------------------------------

both_engines_full!(the_booking_clock_warns_before_and_checks_at_the_start, sweeping(), async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    // A: confirmed, 20 minutes away, the client has not confirmed.
    let a = sid(&confirmed_booking(&app, &admin, 20, false).await);
    // B: the client confirmed (today) before it came inside the window.
    let b = sid(&confirmed_booking(&app, &admin, 20, true).await);
    // C: confirmed, started a minute ago.
    let c = confirmed_booking(&app, &admin, -1, false).await;
    let cid = sid(&c);
    // D: confirmed, started 130 minutes ago and (two hours long) ended ten minutes ago.
    let d = confirmed_booking(&app, &admin, -130, false).await;
    let did = sid(&d);

    for id in [&a, &b] {
        let soon =
            app.eventually(6, || async { (events(&app, "booking.starting_soon", id).await >= 1).then_some(()) }).await;
        assert!(soon.is_some(), "booking.starting_soon for {id}");
    }
    let risk = app
        .eventually(6, || async {
            let e = exceptions_about(&app, &admin, "no_show_risk", &a).await;
            (!e.is_empty()).then_some(e)
        })
        .await
        .expect("a no_show_risk exception for the unconfirmed booking");
    assert_eq!(risk.len(), 1);
    // B's event was evaluated by the rule and skipped: no exception for it.
    #[derive(sqlx::FromRow)]
    struct Ev {
        id: Uuid,
    }
    let b_event = {
        let mut h = app.db.acquire().await.unwrap();
        virel_domain::q_one!(
            &mut h.conn(),
            Ev,
            "SELECT id FROM domain_events WHERE type = 'booking.starting_soon' AND subject_id = $1",
            Uuid::parse_str(&b).unwrap()
        )
        .unwrap()
        .id
        .to_string()
    };
    let evaluated = app
        .eventually(6, || async {
            (count_for(&app, "SELECT COUNT(*) AS n FROM automation_executions WHERE event_id = $1", &b_event).await > 0)
                .then_some(())
        })
        .await;
    assert!(evaluated.is_some(), "the no-show rule saw B's event");
    let same_day = (Utc::now() + chrono::Duration::minutes(20)).date_naive() == Utc::now().date_naive();
    if same_day {
        assert_eq!(exceptions_about(&app, &admin, "no_show_risk", &b).await.len(), 0, "B's client confirmed today");
    }

    // C: exactly one safety_check task, critical, due 15 minutes after the start.
    let checks = app
        .eventually(6, || async {
            let t = tasks_about(&app, &admin, "safety_check", &cid).await;
            (!t.is_empty()).then_some(t)
        })
        .await
        .expect("a safety_check task at the start");
    assert_eq!(checks[0]["priority"], "critical");
    assert_eq!(checks[0]["subject_type"], "booking");
    let want = time(&c["start_at"]) + chrono::Duration::minutes(15);
    assert!((time(&checks[0]["due_at"]) - want).num_milliseconds().abs() < 1000, "{}", checks[0]);

    // D: one check at its start and one at its end. The start's check was already past its
    // deadline when it was made, so it is missed at once; the end's has five minutes left.
    let checks = app
        .eventually(6, || async {
            let t = tasks_about(&app, &admin, "safety_check", &did).await;
            (t.len() >= 2).then_some(t)
        })
        .await
        .expect("safety_check tasks at the start and at the end");
    let mut dues: Vec<DateTime<Utc>> = checks.iter().map(|t| time(&t["due_at"])).collect();
    dues.sort();
    let start = time(&d["start_at"]);
    let end = time(&d["end_at"]);
    for (got, want) in dues.iter().zip([start, end]) {
        let want = want + chrono::Duration::minutes(15);
        assert!((*got - want).num_milliseconds().abs() < 1000, "due {got}, want {want}");
    }
    let missed = app
        .eventually(6, || async {
            let e = exceptions_about(&app, &admin, "safety_check_missed", &did).await;
            (!e.is_empty()).then_some(e)
        })
        .await
        .expect("the start's check is missed");
    assert_eq!(missed[0]["severity"], "critical");
    assert_eq!(events(&app, "booking.starting_soon", &did).await, 0, "no \"starting soon\" for a booking that ended");

    // Several more ticks: still once each.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(events(&app, "booking.starting_soon", &a).await, 1);
    assert_eq!(events(&app, "booking.starting_soon", &b).await, 1);
    assert_eq!(exceptions_about(&app, &admin, "no_show_risk", &a).await.len(), 1);
    assert_eq!(tasks_about(&app, &admin, "safety_check", &cid).await.len(), 1);
    assert_eq!(tasks_about(&app, &admin, "safety_check", &a).await.len(), 0, "A has not started");
    assert_eq!(tasks_about(&app, &admin, "safety_check", &did).await.len(), 2);
    assert_eq!(exceptions_about(&app, &admin, "safety_check_missed", &did).await.len(), 1);
    if same_day {
        assert_eq!(exceptions_about(&app, &admin, "no_show_risk", &b).await.len(), 0);
    }
});

// ---------------------------------------------------------------------------------------------
// 6. At risk
// ---------------------------------------------------------------------------------------------

both_engines_full!(a_task_near_its_deadline_is_at_risk_and_warned_once, sweeping(), async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    // Default share (20%): a follow_up due in two seconds.
    let near =
        sid(&new_task(&app, &admin, json!({"type": "follow_up", "due_at": Utc::now() + chrono::Duration::seconds(2)}))
            .await);
    // A larger share on other tasks: a custom task due in five seconds is at risk after ~1 s.
    let p = policy(&app, &admin, "task", "*").await;
    let (s, body) = patch_policy(&app, &admin, &sid(&p), json!({"at_risk_percent": 75})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let wide =
        new_task(&app, &admin, json!({"type": "custom", "due_at": Utc::now() + chrono::Duration::seconds(5)})).await;
    let wid = sid(&wide);
    assert_eq!(ac_item(&app, &admin, &wid).await.unwrap()["sla_state"], "ok");
    let risky = app
        .eventually(4, || async {
            ac_item(&app, &admin, &wid).await.filter(|i| i["sla_state"] == "at_risk").map(|_| ())
        })
        .await;
    assert!(risky.is_some(), "at risk with less than 75% of the window left");
    let warned =
        app.eventually(4, || async { (events(&app, "task.sla_at_risk", &wid).await == 1).then_some(()) }).await;
    assert!(warned.is_some(), "the sweep warns");
    assert_eq!(ac_item(&app, &admin, &wid).await.unwrap()["sla_state"], "at_risk", "not yet breached");

    let warned =
        app.eventually(4, || async { (events(&app, "task.sla_at_risk", &near).await >= 1).then_some(()) }).await;
    assert!(warned.is_some(), "the near task is warned");
    let state = ac_item(&app, &admin, &near).await.unwrap()["sla_state"].clone();
    assert!(state == "at_risk" || state == "breached", "{state}");

    // Past both deadlines, several sweeps later: still one warning each.
    let breached = app
        .eventually(6, || async {
            ac_item(&app, &admin, &wid).await.filter(|i| i["sla_state"] == "breached").map(|_| ())
        })
        .await;
    assert!(breached.is_some());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(events(&app, "task.sla_at_risk", &wid).await, 1);
    assert_eq!(events(&app, "task.sla_at_risk", &near).await, 1);
});
