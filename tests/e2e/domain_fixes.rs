//! Domain edges found in review, over HTTP on both engines: numbers in rules and policies that
//! would overflow the calendar, Confirm moving a booking only forward to `confirmed`, the SLA
//! ladder for in-progress tasks and for exceptions, and the Action Center list at 10,000 items.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::fixtures::{self, rand_n};
use crate::harness::{TestApp, WorkerOptions};
use crate::{both_engines, both_engines_full};

fn uuid(v: &Value) -> Uuid {
    Uuid::parse_str(v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}"))).unwrap()
}

both_engines!(numbers_beyond_the_calendar_are_refused_at_save_time, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let task = |params: Value| json!({"name": "x", "trigger": "inquiry.created", "actions": [{"type": "create_task", "params": params}]});
    let bad = [
        (
            task(json!({"type": "follow_up", "due_in_minutes": 9223372036854775807i64})),
            "actions[0].params.due_in_minutes",
        ),
        (task(json!({"type": "follow_up", "due_in_minutes": 525601})), "actions[0].params.due_in_minutes"),
        (task(json!({"type": "follow_up", "due_in_minutes": -1})), "actions[0].params.due_in_minutes"),
        (task(json!({"type": "follow_up", "due_in_minutes": 1e300})), "actions[0].params.due_in_minutes"),
        (task(json!({"type": "follow_up", "priority": "apocalyptic"})), "actions[0].params.priority"),
        (
            json!({"name": "x", "trigger": "inquiry.created",
                   "actions": [{"type": "add_note", "delay_minutes": 9223372036854775807i64, "params": {"text": "a"}}]}),
            "actions[0].delay_minutes",
        ),
        (
            json!({"name": "x", "trigger": "inquiry.created",
                   "actions": [{"type": "add_note", "params": {"text": "a", "delay_minutes": -5}}]}),
            "actions[0].params.delay_minutes",
        ),
        (
            json!({"name": "x", "trigger": "inquiry.created",
                   "actions": [{"type": "create_exception", "params": {"type": "payment_failed", "severity": "extreme"}}]}),
            "actions[0].params.severity",
        ),
    ];
    let before = app.count("SELECT COUNT(*) AS n FROM automation_rules").await;
    for (body, part) in bad {
        let (s, b) = app.post(Some(&admin), "/automation/rules", body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {b}");
        let msg = b["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.starts_with(part), "{part}: {b}");
    }
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM automation_rules").await, before, "nothing written");
    // The edge of the range is fine.
    app.ok(&admin, "/automation/rules", task(json!({"type": "follow_up", "due_in_minutes": 525600})), 201).await;

    // SLA policies: an escalation delay past the calendar is refused too.
    let (_, policies) = app.get(&admin, "/sla-policies").await;
    let pid = policies[0]["id"].as_str().unwrap().to_string();
    for e in [json!([0, 60, 9223372036854775807i64]), json!([0, 60, 2592001])] {
        let (s, b) = app.patch(&admin, &format!("/sla-policies/{pid}"), json!({"escalation_secs": e})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "escalation_secs {e}: {b}");
        assert!(b["error"]["message"].as_str().unwrap_or_default().contains("escalation_secs"), "{b}");
    }
});

#[derive(sqlx::FromRow)]
struct Exec {
    action_index: i64,
    status: String,
    error: Option<String>,
}

both_engines_full!(
    a_rule_row_beyond_the_calendar_fails_its_action_not_the_worker,
    WorkerOptions::default(),
    async |app: TestApp| {
        let admin = app.login("admin@virel.com").await;
        app.settle(&admin).await;
        let rule = app
            .ok(
                &admin,
                "/automation/rules",
                json!({"name": "Huge deadline", "trigger": "inquiry.created",
                   "conditions": [{"field": "source", "operator": "equals", "value": "phone"}],
                   "actions": [{"type": "create_task", "params": {"type": "follow_up", "due_in_minutes": 10}},
                               {"type": "add_note", "delay_minutes": 5, "params": {"text": "later"}},
                               {"type": "add_note", "params": {"text": "the rest carries on"}}]}),
                201,
            )
            .await;
        let rule_id = uuid(&rule);
        // Written around the validation, as an older release or a hand-edited database might.
        let forced = json!([
            {"type": "create_task", "params": {"type": "follow_up", "due_in_minutes": 9223372036854775807i64}},
            {"type": "add_note", "delay_minutes": 9223372036854775807i64, "params": {"text": "later"}},
            {"type": "add_note", "params": {"text": "the rest carries on"}}
        ]);
        {
            let mut h = app.db.acquire().await.unwrap();
            virel_domain::q_exec!(
                &mut h.conn(),
                "UPDATE automation_rules SET actions = $1 WHERE id = $2",
                sqlx::types::Json(forced),
                rule_id
            )
            .unwrap();
        }
        let phone = |i: u128| json!({"source": "phone", "client": {"name": format!("Huge {i}"), "phone": format!("+4477005{:05}", i % 100000)}});
        for n in 0..2 {
            app.ok(&admin, "/inquiries", phone(rand_n() + n), 201).await;
        }
        let sql: &'static str = "SELECT action_index, status, error FROM automation_executions WHERE rule_id = $1 AND action_index >= 0 ORDER BY action_index";
        let done = app
            .eventually(20, || async {
                let mut h = app.db.acquire().await.unwrap();
                let rows: Vec<Exec> = virel_domain::q_all!(&mut h.conn(), Exec, sql, rule_id).unwrap();
                (rows.len() == 6 && rows.iter().all(|r| r.status != "running")).then_some(rows)
            })
            .await
            .expect("both events processed: three actions each, none left running");
        for r in &done {
            match r.action_index {
                0 => {
                    assert_eq!(r.status, "failed", "create_task fails");
                    assert!(r.error.as_deref().unwrap_or_default().contains("due_in_minutes"), "{:?}", r.error);
                }
                1 => {
                    assert_eq!(r.status, "failed", "the delayed note cannot be scheduled");
                    assert!(r.error.as_deref().unwrap_or_default().contains("delay_minutes"), "{:?}", r.error);
                }
                _ => assert_eq!(r.status, "succeeded", "the other action runs"),
            }
        }
        // The queue still moves: an ordinary rule acts on the next event.
        app.ok(
            &admin,
            "/automation/rules",
            json!({"name": "Email note", "trigger": "inquiry.created",
               "conditions": [{"field": "source", "operator": "equals", "value": "email"}],
               "actions": [{"type": "add_note", "params": {"text": "seen"}}]}),
            201,
        )
        .await;
        let inq = app
        .ok(&admin, "/inquiries", json!({"source": "email", "client": {"name": "After", "email": format!("after{}@example.com", rand_n())}}), 201)
        .await;
        let inq_id = uuid(&inq);
        let noted = app
            .eventually(10, || async {
                let mut h = app.db.acquire().await.unwrap();
                #[derive(sqlx::FromRow)]
                struct N {
                    n: i64,
                }
                let n = virel_domain::q_one!(
                    &mut h.conn(),
                    N,
                    "SELECT COUNT(*) AS n FROM notes WHERE subject_id = $1",
                    inq_id
                )
                .unwrap()
                .n;
                (n == 1).then_some(())
            })
            .await;
        assert!(noted.is_some(), "later events are still processed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
);

#[derive(sqlx::FromRow)]
struct Stats {
    bookings_count: i64,
    completed_count: i64,
}

both_engines!(confirm_never_starts_or_completes_a_booking, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let c = fixtures::client(&app, &admin).await;
    let m = fixtures::model(&app, &admin).await;
    // Starts in ten minutes: confirmed → in_progress would be allowed by the machine.
    let b = fixtures::booking_for(&app, &admin, &m["id"], &c["id"], 10, "pending").await;
    let bid = b["id"].as_str().unwrap().to_string();
    app.ok(&admin, &format!("/bookings/{bid}/status"), json!({"status": "deposit_required"}), 200).await;
    app.ok(
        &admin,
        &format!("/bookings/{bid}/status"),
        json!({"status": "confirmed", "override": true, "reason": "deposit taken in cash"}),
        200,
    )
    .await;
    let task = app
        .ok(&admin, "/tasks", json!({"type": "confirm_booking", "subject_type": "booking", "subject_id": bid}), 201)
        .await;
    let tid = task["id"].as_str().unwrap().to_string();
    let model_id = uuid(&m);
    let stats = async || {
        let mut h = app.db.acquire().await.unwrap();
        virel_domain::q_opt!(
            &mut h.conn(),
            Stats,
            "SELECT bookings_count, completed_count FROM model_stats WHERE model_id = $1",
            model_id
        )
        .unwrap()
        .map(|s| (s.bookings_count, s.completed_count))
    };
    let stats_before = stats().await;
    let changes = "SELECT COUNT(*) AS n FROM domain_events WHERE type = 'booking.status_changed'";
    let changes_before = app.count(changes).await;
    for attempt in 0..2 {
        let (s, body) = app.post(Some(&admin), &format!("/action-center/task/{tid}/confirm"), json!({})).await;
        assert_eq!(s, StatusCode::CONFLICT, "Confirm #{attempt} on a confirmed booking: {body}");
        assert_eq!(body["error"]["code"], "guard_failed", "{body}");
        let (_, bk) = app.get(&admin, &format!("/bookings/{bid}")).await;
        assert_eq!(bk["status"], "confirmed", "the booking stays confirmed after Confirm #{attempt}");
    }
    let (_, t) = app.get(&admin, &format!("/tasks/{tid}")).await;
    assert_eq!(t["status"], "open", "the task is untouched: {t}");
    assert_eq!(t["version"], task["version"]);
    assert_eq!(stats().await, stats_before, "no stats bumped");
    assert_eq!(app.count(changes).await, changes_before, "no status change recorded");
});

/// Workers and scheduler, the SLA sweep every second.
fn sweeping() -> WorkerOptions {
    WorkerOptions { sweep_secs: 1, ..Default::default() }
}

async fn policy_id(app: &TestApp, token: &str, kind: &str, item_type: &str) -> String {
    let (_, b) = app.get(token, "/sla-policies").await;
    b.as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == kind && p["item_type"] == item_type)
        .unwrap_or_else(|| panic!("no policy {kind}/{item_type}: {b}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn event_count(app: &TestApp, event_type: &str, subject_id: Uuid) -> i64 {
    #[derive(sqlx::FromRow)]
    struct N {
        n: i64,
    }
    let mut h = app.db.acquire().await.unwrap();
    virel_domain::q_one!(
        &mut h.conn(),
        N,
        "SELECT COUNT(*) AS n FROM domain_events WHERE type = $1 AND subject_id = $2",
        event_type.to_string(),
        subject_id
    )
    .unwrap()
    .n
}

both_engines_full!(in_progress_tasks_and_exceptions_climb_the_sla_ladder, sweeping(), async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let tommy = app.login("tommy@virel.com").await;
    let lukas = app.login("lukas@virel.com").await;
    let lukas_id = app.user_id("lukas@virel.com").await;
    let tommy_id = app.user_id("tommy@virel.com").await;
    let fast = json!({"escalation_secs": [0, 2, 4]});
    let pid = policy_id(&app, &admin, "task", "follow_up").await;
    let (s, b) = app.patch(&tommy, &format!("/sla-policies/{pid}"), fast.clone()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let pid = policy_id(&app, &admin, "exception", "payment_failed").await;
    let (s, b) = app.patch(&tommy, &format!("/sla-policies/{pid}"), fast).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // A task being worked on past its deadline escalates like an untouched one.
    let due = chrono::Utc::now() + chrono::Duration::seconds(1);
    let t = app
        .ok(
            &admin,
            "/tasks",
            json!({"type": "follow_up", "title": "Working on it", "assignee_id": lukas_id, "due_at": due}),
            201,
        )
        .await;
    let tid = t["id"].as_str().unwrap().to_string();
    app.ok(&lukas, &format!("/tasks/{tid}/status"), json!({"status": "in_progress"}), 200).await;

    // payment_failed: the 10-minute SLA sets the deadline; brought forward so the test need not wait.
    let e = app
        .ok(
            &admin,
            "/exceptions",
            json!({"type": "payment_failed", "severity": "medium", "assignee_id": lukas_id}),
            201,
        )
        .await;
    let eid = uuid(&e);
    let window = chrono::DateTime::parse_from_rfc3339(e["due_at"].as_str().expect("a deadline from the SLA")).unwrap()
        - chrono::DateTime::parse_from_rfc3339(e["created_at"].as_str().unwrap()).unwrap();
    assert_eq!(window.num_minutes(), 10, "{e}");
    // A second one, acknowledged: it never climbs.
    let quiet = app
        .ok(
            &admin,
            "/exceptions",
            json!({"type": "payment_failed", "severity": "medium", "assignee_id": lukas_id}),
            201,
        )
        .await;
    let qid = uuid(&quiet);
    app.ok(&lukas, &format!("/action-center/exception/{qid}/acknowledge"), json!({}), 200).await;
    {
        let mut h = app.db.acquire().await.unwrap();
        let past = virel_domain::now() - chrono::Duration::seconds(1);
        for id in [eid, qid] {
            virel_domain::q_exec!(&mut h.conn(), "UPDATE exceptions SET due_at = $1 WHERE id = $2", past, id).unwrap();
        }
    }

    let task_level = async || {
        let (_, t) = app.get(&admin, &format!("/tasks/{tid}")).await;
        t["escalation_level"].as_i64().unwrap()
    };
    // The rung is the database's (the Action Center shows it; the exceptions resource does not).
    let exception = async |id: Uuid| {
        #[derive(sqlx::FromRow)]
        struct Row {
            escalation_level: i64,
            severity: String,
            assignee_id: Option<Uuid>,
        }
        let mut h = app.db.acquire().await.unwrap();
        let r = virel_domain::q_one!(
            &mut h.conn(),
            Row,
            "SELECT escalation_level, severity, assignee_id FROM exceptions WHERE id = $1",
            id
        )
        .unwrap();
        json!({"id": id, "escalation_level": r.escalation_level, "severity": r.severity, "assignee_id": r.assignee_id})
    };
    let reached = app
        .eventually(40, || async {
            (task_level().await == 3 && exception(eid).await["escalation_level"] == 3).then_some(())
        })
        .await;
    assert!(reached.is_some(), "both reach level 3: task {}, exception {}", task_level().await, exception(eid).await);
    let (_, t) = app.get(&admin, &format!("/tasks/{tid}")).await;
    assert_eq!(t["status"], "in_progress", "{t}");
    assert_eq!(t["assignee_id"], tommy_id.as_str(), "level 2 handed it to the OPS_MANAGER: {t}");
    assert_eq!(event_count(&app, "task.sla_breached", uuid(&t)).await, 3);

    let ex = exception(eid).await;
    assert_eq!(ex["assignee_id"], tommy_id.as_str(), "level 2 hands the exception to the OPS_MANAGER: {ex}");
    assert_eq!(ex["severity"], "critical", "level 3 makes it critical: {ex}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(event_count(&app, "exception.sla_breached", eid).await, 3, "each level once");
    let (_, list) = app.get(&admin, "/action-center").await;
    let item = list["items"].as_array().unwrap().iter().find(|i| i["id"] == ex["id"]).cloned().expect("listed");
    assert_eq!(item["escalation_level"], 3, "{item}");

    let q = exception(qid).await;
    assert_eq!(q["escalation_level"], 0, "acknowledged: no escalation: {q}");
    assert_eq!(q["assignee_id"], lukas_id.as_str());
    assert_eq!(event_count(&app, "exception.sla_breached", qid).await, 0);
});

both_engines!(the_action_center_lists_ten_thousand_open_items_in_order, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let booking = fixtures::booking(&app, &admin, 3 * 24 * 60).await;
    let bid = uuid(&booking);
    let lukas = Uuid::parse_str(&app.user_id("lukas@virel.com").await).unwrap();
    let (_, before) = app.get(&admin, "/action-center").await;
    let base_total = before["counts"]["total"].as_u64().unwrap();
    let base_breached = before["counts"]["breached"].as_u64().unwrap();

    // 7,000 tasks and 3,000 exceptions, oldest first; the newest of each kind is overdue.
    let (tasks, exceptions) = (7_000, 3_000);
    let at = virel_domain::now();
    let (mut late_task, mut late_exception) = (Uuid::nil(), Uuid::nil());
    {
        let mut tx = app.db.begin().await.unwrap();
        let mut conn = tx.conn();
        for i in 0..tasks {
            let id = Uuid::now_v7();
            let last = i == tasks - 1;
            let due = if last { at - chrono::Duration::minutes(5) } else { at + chrono::Duration::seconds(86_400 + i) };
            if last {
                late_task = id;
            }
            virel_domain::q_exec!(
                &mut conn,
                "INSERT INTO tasks (id, type, title, priority, status, assignee_id, subject_type, subject_id, due_at,
                     created_by, created_at, updated_at)
                 VALUES ($1, 'follow_up', $2, 'normal', 'open', $3, 'booking', $4, $5, 'system', $6, $6)",
                id,
                format!("Bulk task {i}"),
                lukas,
                bid,
                due,
                at
            )
            .unwrap();
        }
        for i in 0..exceptions {
            let id = Uuid::now_v7();
            let last = i == exceptions - 1;
            let due = if last { at - chrono::Duration::minutes(4) } else { at + chrono::Duration::seconds(90_000 + i) };
            if last {
                late_exception = id;
            }
            virel_domain::q_exec!(
                &mut conn,
                "INSERT INTO exceptions (id, type, title, severity, status, assignee_id, subject_type, subject_id, due_at,
                     created_by, created_at, updated_at)
                 VALUES ($1, 'no_show_risk', $2, 'medium', 'open', $3, 'booking', $4, $5, 'system', $6, $6)",
                id,
                format!("Bulk exception {i}"),
                lukas,
                bid,
                due,
                at
            )
            .unwrap();
        }
        tx.commit().await.unwrap();
    }

    let started = std::time::Instant::now();
    let (s, list) = app.get(&admin, "/action-center").await;
    let took = started.elapsed();
    assert_eq!(s, StatusCode::OK);
    let items = list["items"].as_array().unwrap();
    let total = base_total + (tasks + exceptions) as u64;
    assert_eq!(list["counts"]["total"].as_u64().unwrap(), total, "every open item counted");
    assert_eq!(items.len() as u64, total, "every open item listed");
    assert_eq!(list["counts"]["breached"].as_u64().unwrap(), base_breached + 2);
    let breached = (base_breached + 2) as usize;
    let top: Vec<&str> = items[..breached].iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert!(top.contains(&late_task.to_string().as_str()), "the newest, overdue task is at the top: {top:?}");
    assert!(top.contains(&late_exception.to_string().as_str()), "so is the overdue exception: {top:?}");
    // The order holds over the whole list: breached first, then the soonest deadline.
    let key = |i: &Value| (i["sla_state"] != "breached", i["due_at"].as_str().map(String::from));
    for w in items.windows(2) {
        let (a, b) = (key(&w[0]), key(&w[1]));
        assert!(a.0 <= b.0, "breached first: {} then {}", w[0], w[1]);
        if a.0 == b.0
            && let (Some(x), Some(y)) = (&a.1, &b.1)
        {
            let (x, y) =
                (chrono::DateTime::parse_from_rfc3339(x).unwrap(), chrono::DateTime::parse_from_rfc3339(y).unwrap());
            assert!(x <= y, "soonest deadline first: {} then {}", w[0], w[1]);
        }
    }
    // Names and labels, read with the list.
    let bulk: Vec<&Value> = items.iter().filter(|i| i["subject"]["id"] == booking["id"]).collect();
    assert_eq!(bulk.len(), tasks as usize + exceptions as usize);
    let first_label = bulk[0]["subject"]["label"].as_str().unwrap().to_string();
    assert!(first_label.contains(" · "), "a booking's label names its client and model: {first_label}");
    assert!(bulk.iter().all(|i| i["subject"]["label"] == first_label.as_str() && i["assignee_name"].is_string()));
    eprintln!("action center with {total} items: {took:?}");
});

async fn events_of(app: &TestApp, event_type: &'static str) -> i64 {
    #[derive(sqlx::FromRow)]
    struct N {
        n: i64,
    }
    let mut h = app.db.acquire().await.unwrap();
    virel_domain::q_one!(&mut h.conn(), N, "SELECT COUNT(*) AS n FROM domain_events WHERE type = $1", event_type)
        .unwrap()
        .n
}

both_engines!(client_edits_keep_one_person_one_client_and_guarded, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let a = fixtures::client(&app, &admin).await;
    let b = fixtures::client(&app, &admin).await;
    let (aid, bid) = (a["id"].as_str().unwrap().to_string(), b["id"].as_str().unwrap().to_string());
    let (a_phone, a_email) = {
        #[derive(sqlx::FromRow)]
        struct C {
            phone: Option<String>,
            email: Option<String>,
        }
        let mut h = app.db.acquire().await.unwrap();
        let c =
            virel_domain::q_one!(&mut h.conn(), C, "SELECT phone, email FROM clients WHERE id = $1", uuid(&a)).unwrap();
        (c.phone.unwrap(), c.email.unwrap())
    };
    for body in [json!({"phone": a_phone}), json!({"email": a_email.to_uppercase()})] {
        let (s, r) = app.patch(&admin, &format!("/clients/{bid}"), body.clone()).await;
        assert_eq!(s, StatusCode::CONFLICT, "{body}: {r}");
        assert_eq!(r["error"]["code"], "duplicate", "{r}");
    }
    let (_, now_b) = app.get(&admin, &format!("/clients/{bid}")).await;
    assert_eq!(now_b["version"], b["version"], "B untouched");
    // Its own number again is no duplicate.
    let (s, r) = app.patch(&admin, &format!("/clients/{aid}"), json!({"phone": a_phone, "notes": "same"})).await;
    assert_eq!(s, StatusCode::OK, "{r}");

    // Eight blocks at once: one block, one client.blocked.
    let blocked_before = events_of(&app, "client.blocked").await;
    let path = format!("/clients/{bid}/block");
    let blocks = (0..8).map(|_| app.post(Some(&admin), &path, json!({"reason": "abusive"})));
    for (s, r) in futures::future::join_all(blocks).await {
        assert!(s == StatusCode::OK || s == StatusCode::CONFLICT, "{s}: {r}");
    }
    assert_eq!(events_of(&app, "client.blocked").await, blocked_before + 1, "blocked once");

    // A cancelled booking cannot be client-confirmed.
    let bk = fixtures::booking(&app, &admin, 3 * 24 * 60).await;
    let bkid = bk["id"].as_str().unwrap().to_string();
    app.ok(
        &admin,
        &format!("/bookings/{bkid}/status"),
        json!({"status": "cancelled", "reason": "client called off"}),
        200,
    )
    .await;
    let (s, r) = app.post(Some(&admin), &format!("/bookings/{bkid}/client-confirmed"), json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    let (_, after) = app.get(&admin, &format!("/bookings/{bkid}")).await;
    assert!(after["client_confirmed_at"].is_null(), "{after}");
});

both_engines!(every_edit_emits_a_domain_event, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let c = fixtures::client(&app, &admin).await;
    let cid = c["id"].as_str().unwrap().to_string();
    let (s, r) = app.patch(&admin, &format!("/clients/{cid}"), json!({"notes": "prefers mornings"})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(event_count(&app, "client.updated", uuid(&c)).await, 1);

    let m = fixtures::model(&app, &admin).await;
    let mid = m["id"].as_str().unwrap().to_string();
    let (s, r) = app.patch(&admin, &format!("/models/{mid}"), json!({"base_location": "Paris"})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(event_count(&app, "model.updated", uuid(&m)).await, 1);

    let sasha = app.user_id("sasha@virel.com").await;
    let (s, r) = app.patch(&admin, &format!("/users/{sasha}"), json!({"on_duty": false})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(event_count(&app, "user.updated", Uuid::parse_str(&sasha).unwrap()).await, 1);

    let rule_body = json!({"name": "Note", "trigger": "inquiry.created", "actions": [{"type": "add_note", "params": {"text": "a"}}]});
    let rule = app.ok(&admin, "/automation/rules", rule_body.clone(), 201).await;
    let mut edit = rule_body;
    edit["name"] = json!("Note, renamed");
    edit["enabled"] = json!(false);
    let (s, r) = app
        .send(
            reqwest::Method::PUT,
            Some(&admin),
            &format!("/automation/rules/{}", rule["id"].as_str().unwrap()),
            Some(edit),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(event_count(&app, "rule.updated", uuid(&rule)).await, 1);

    let pid = policy_id(&app, &admin, "task", "*").await;
    let (s, r) = app.patch(&admin, &format!("/sla-policies/{pid}"), json!({"minutes": 200})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(event_count(&app, "sla_policy.updated", Uuid::parse_str(&pid).unwrap()).await, 1);

    // A blocked client's inquiry is lost like any other loss.
    app.ok(&admin, &format!("/clients/{cid}/block"), json!({"reason": "abusive"}), 200).await;
    assert_eq!(event_count(&app, "client.blocked", uuid(&c)).await, 1);
    let inq = app.ok(&admin, "/inquiries", json!({"source": "web", "client_id": cid}), 201).await;
    assert_eq!(inq["status"], "lost", "{inq}");
    assert_eq!(event_count(&app, "inquiry.lost", uuid(&inq)).await, 1);
});

both_engines!(concurrent_round_robin_picks_respect_the_cap, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    #[derive(sqlx::FromRow)]
    struct Op {
        id: Uuid,
        open_items: i64,
    }
    let load_sql: &'static str = "SELECT u.id,
            (SELECT COUNT(*) FROM tasks t WHERE t.assignee_id = u.id AND t.status IN ('open', 'in_progress'))
          + (SELECT COUNT(*) FROM exceptions e WHERE e.assignee_id = u.id AND e.status IN ('open', 'acknowledged')) AS open_items
         FROM users u WHERE u.role = 'OPERATOR' AND u.active = $1 AND u.on_duty = $1 ORDER BY u.id";
    let loads = async || {
        let mut h = app.db.acquire().await.unwrap();
        virel_domain::q_all!(&mut h.conn(), Op, load_sql, true).unwrap()
    };
    let cap = app.db.settings().max_open_items_per_operator;
    let ops = loads().await;
    assert!(!ops.is_empty(), "the demo data has operators on duty");
    // Every operator one item below the cap.
    {
        let mut tx = app.db.begin().await.unwrap();
        let mut conn = tx.conn();
        let at = virel_domain::now();
        for op in &ops {
            for i in op.open_items..cap - 1 {
                virel_domain::q_exec!(
                    &mut conn,
                    "INSERT INTO tasks (id, type, title, priority, status, assignee_id, created_by, created_at, updated_at)
                     VALUES ($1, 'custom', $2, 'normal', 'open', $3, 'system', $4, $4)",
                    Uuid::now_v7(),
                    format!("Filler {i}"),
                    op.id,
                    at
                )
                .unwrap();
            }
        }
        tx.commit().await.unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..(ops.len() + 6) {
        let t = app.ok(&admin, "/tasks", json!({"type": "custom", "title": format!("To hand out {i}")}), 201).await;
        tasks.push(t["id"].as_str().unwrap().to_string());
    }
    let paths: Vec<String> = tasks.iter().map(|id| format!("/action-center/task/{id}/assign")).collect();
    let picks = paths.iter().map(|p| app.post(Some(&admin), p, json!({"assignee_id": "round_robin"})));
    let results = futures::future::join_all(picks).await;
    let assigned = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    for (s, b) in &results {
        assert!(*s == StatusCode::OK || *s == StatusCode::CONFLICT, "{s}: {b}");
    }
    let after = loads().await;
    for op in &after {
        assert!(op.open_items <= cap, "operator {} holds {} items, over the cap of {cap}", op.id, op.open_items);
    }
    assert_eq!(assigned, ops.len(), "one more item each, then no one has room: {results:?}");
});
