//! Domain edges found in review, over HTTP on both engines: numbers in rules and policies that
//! would overflow the calendar, Confirm moving a booking only forward to `confirmed`, the SLA
//! ladder for in-progress tasks and for exceptions, and the Action Center list at 10,000 items.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::fixtures::rand_n;
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
            "actions[0].delay_minutes",
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
