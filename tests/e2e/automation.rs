//! Events doing work: rules evaluated by the workers through the outbox and the queues, on
//! SQLite (embedded) and on PostgreSQL + Redis.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_engines_full;
use crate::fixtures::rand_n;
use crate::harness::{TestApp, WorkerOptions};

fn phone_rule() -> Value {
    json!({
        "name": "Follow up phone inquiries",
        "trigger": "inquiry.created",
        "conditions": [{"field": "source", "operator": "equals", "value": "phone"}],
        "actions": [{"type": "create_task", "params": {"type": "follow_up", "title": "Call the client back"}}]
    })
}

async fn follow_ups(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) AS n FROM tasks WHERE type = 'follow_up' AND created_by LIKE 'automation:%'").await
}

both_engines_full!(
    phone_inquiries_get_one_follow_up_each_within_a_second,
    WorkerOptions::default(),
    async |app: TestApp| {
        let admin = app.login("admin@virel.com").await;
        // The demo data's phone inquiry must not meet the rule below.
        app.settle(&admin).await;
        let rule = app.ok(&admin, "/automation/rules", phone_rule(), 201).await;
        let mut inquiries = Vec::new();
        for (i, source) in ["phone", "web", "phone", "email", "phone"].into_iter().enumerate() {
            let started = Instant::now();
            let inq = app
            .ok(&admin, "/inquiries", json!({"source": source, "client": {"name": format!("C{i}"), "phone": format!("+4477003{:05}", rand_n() % 100000)}}), 201)
            .await;
            if source == "phone" {
                let id = inq["id"].as_str().unwrap().to_string();
                let path = format!("/tasks?subject_id={id}&type=follow_up");
                let found = app
                    .eventually(1, || async {
                        let (_, b) = app.get(&admin, &path).await;
                        (b["items"].as_array().map(|a| a.len()) == Some(1)).then_some(())
                    })
                    .await;
                assert!(found.is_some(), "a follow-up task within a second for {id} (waited {:?})", started.elapsed());
            }
            inquiries.push((source, inq));
        }
        // Let any stray duplicate show up before counting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(follow_ups(&app).await, 3, "exactly one task per phone inquiry");
        let (_, t) = app.get(&admin, "/tasks?type=follow_up").await;
        let by_rule = format!("automation:{}", rule["id"].as_str().unwrap());
        assert!(
            t["items"].as_array().unwrap().iter().any(|t| t["created_by"] == by_rule),
            "actor is automation:<rule id>"
        );
        let (_, ex) = app
            .get(&admin, &format!("/automation/executions?rule_id={}&limit=200", rule["id"].as_str().unwrap()))
            .await;
        let items = ex["items"].as_array().unwrap();
        let count =
            |status: &str, idx: i64| items.iter().filter(|e| e["status"] == status && e["action_index"] == idx).count();
        assert_eq!(count("matched", -1), 3);
        assert_eq!(count("succeeded", 0), 3);
        assert!(count("skipped", -1) >= 2, "web and email inquiries are evaluated and skipped");
        // The web inquiry was qualified by the default rule, through the state machine.
        let web = &inquiries[1].1;
        let (_, w) = app.get(&admin, &format!("/inquiries/{}", web["id"].as_str().unwrap())).await;
        assert_eq!(w["status"], "qualified");
    }
);

// No scheduler: an SLA sweep escalating a demo item mid-test would start a second chain.
both_engines_full!(
    a_rule_that_feeds_itself_stops_at_depth_five,
    WorkerOptions { scheduler: false, ..Default::default() },
    async |app: TestApp| {
        let admin = app.login("admin@virel.com").await;
        // The demo data's own task.created events must not feed the rule below.
        app.settle(&admin).await;
        app.ok(
            &admin,
            "/automation/rules",
            json!({
                "name": "Task begets task",

                "trigger": "task.created",
                "conditions": [],
                "actions": [{"type": "create_task", "params": {"type": "custom", "title": "again"}}]
            }),
            201,
        )
        .await;
        // Counted by this test's own tasks: the scheduler's clock may add safety checks meanwhile.
        let ours = "SELECT COUNT(*) AS n FROM tasks WHERE type = 'custom' AND title IN ('seed', 'again')";
        let before = app.count(ours).await;
        app.ok(&admin, "/tasks", json!({"type": "custom", "title": "seed"}), 201).await;
        let stopped = app
            .eventually(10, || async {
                (app.count("SELECT COUNT(*) AS n FROM exceptions WHERE type = 'job_failed'").await == 1).then_some(())
            })
            .await;
        assert!(stopped.is_some(), "one job_failed exception reports the loop");
        tokio::time::sleep(Duration::from_secs(1)).await;
        // The human task (depth 0) and one task per automation hop up to depth 6.
        assert_eq!(app.count(ours).await - before, 7);
        assert_eq!(
            app.count("SELECT COUNT(*) AS n FROM exceptions WHERE type = 'job_failed'").await,
            1,
            "reported once"
        );
        assert_eq!(
            app.count("SELECT COUNT(*) AS n FROM domain_events WHERE type = 'task.created' AND depth > 6").await,
            0
        );
    }
);

// No scheduler: its sweeps would add chains of their own.
both_engines_full!(
    rules_that_multiply_are_capped_and_their_chains_budgeted,
    WorkerOptions { scheduler: false, cascade_budget: Some(20), ..Default::default() },
    async |app: TestApp| {
        let admin = app.login("admin@virel.com").await;
        app.settle(&admin).await;
        let rule = |i: usize| {
            json!({"name": format!("Fan {i}"), "trigger": "task.created", "conditions": [],
                   "actions": [{"type": "create_task", "params": {"type": "custom", "title": "fan"}}]})
        };
        // A trigger takes at most 25 rules.
        let existing = app.count("SELECT COUNT(*) AS n FROM automation_rules WHERE trigger = 'task.created'").await;
        let mut made = 0;
        for i in 0..(25 - existing) as usize {
            let (s, b) = app.post(Some(&admin), "/automation/rules", rule(i)).await;
            if s == StatusCode::CREATED {
                made += 1;
                // Three rules are enough to multiply; the rest are disabled, only counted.
                if made > 3 {
                    let id = b["id"].as_str().unwrap();
                    let mut off = rule(i);
                    off["enabled"] = json!(false);
                    off["version"] = b["version"].clone();
                    let (s, b) = app
                        .send(reqwest::Method::PUT, Some(&admin), &format!("/automation/rules/{id}"), Some(off))
                        .await;
                    assert_eq!(s, StatusCode::OK, "{b}");
                }
            }
        }
        let (s, b) = app.post(Some(&admin), "/automation/rules", rule(99)).await;
        assert_eq!(s, StatusCode::CONFLICT, "{b}");
        assert_eq!(b["error"]["details"]["guard"], "rules_per_trigger", "{b}");

        // Three rules: 3 tasks one hop deep, 9 two hops deep, 27 three deep, ... cut by the
        // budget of 20 chained events a minute long before depth 5 (which would be 363).
        let fans = "SELECT COUNT(*) AS n FROM tasks WHERE title = 'fan'";
        app.ok(&admin, "/tasks", json!({"type": "custom", "title": "seed"}), 201).await;
        let reported = app
            .eventually(20, || async {
                (app.count("SELECT COUNT(*) AS n FROM exceptions WHERE title LIKE 'Automation cascade stopped%'").await
                    == 1)
                    .then_some(())
            })
            .await;
        assert!(reported.is_some(), "one exception reports the stop");
        app.settle(&admin).await;
        let n = app.count(fans).await;
        assert!((3 + 9..3 + 9 + 27 + 81).contains(&n), "{n} fan tasks: the chain stopped early");
        let stops = app.count("SELECT COUNT(*) AS n FROM automation_executions WHERE status = 'stopped'").await;
        assert!(stops > 0, "each stop is recorded");
        assert_eq!(
            app.count("SELECT COUNT(*) AS n FROM exceptions WHERE title LIKE 'Automation cascade stopped%'").await,
            1,
            "reported once a minute, not once per event"
        );
    }
);

fn failing_options(calls: Arc<Mutex<Vec<Instant>>>) -> WorkerOptions {
    let handler: virel_workers::CustomHandler = Arc::new(move |_payload| {
        let calls = calls.clone();
        Box::pin(async move {
            calls.lock().unwrap().push(Instant::now());
            Err("the provider said no".to_string())
        })
    });
    WorkerOptions {
        retry: virel_workers::RetrySettings { attempts_default: 4, base: Duration::from_secs(1), ..Default::default() },
        handlers: vec![("always_fails".into(), handler)],
        scheduler: false,
        ..Default::default()
    }
}

mod failing_job_is_retried_with_growing_delays_then_dead_and_retryable {
    use super::*;

    async fn body(app: TestApp, calls: Arc<Mutex<Vec<Instant>>>) {
        let admin = app.login("admin@virel.com").await;
        let job = virel_workers::Job::new(&virel_domain::jobs::kinds::Custom {
            name: "always_fails".into(),
            payload: json!({}),
        });
        app.queues.as_ref().unwrap().push(job, None).await.unwrap();
        let dead = app
            .eventually(40, || async {
                let (_, q) = app.get(&admin, "/system/queue").await;
                q["dead_jobs"].as_array().and_then(|d| d.first().cloned())
            })
            .await
            .expect("the job ends dead");
        let times = calls.lock().unwrap().clone();
        assert_eq!(times.len(), 4, "tried the configured number of times");
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps[2] > gaps[0], "delays grow: {gaps:?}");
        assert!(gaps[0] >= Duration::from_millis(400), "the first retry waits: {gaps:?}");
        assert_eq!(dead["attempts"], 4);
        assert_eq!(dead["kind"], "always_fails");
        assert!(dead["error"].as_str().unwrap().contains("the provider said no"));
        let (_, q) = app.get(&admin, "/system/queue").await;
        let ops = q["queues"].as_array().unwrap().iter().find(|q| q["name"] == "ops").unwrap().clone();
        assert_eq!(ops["dead"], 1);
        // A job_failed exception tells an operator.
        assert_eq!(app.count("SELECT COUNT(*) AS n FROM exceptions WHERE type = 'job_failed'").await, 1);

        let id = dead["id"].as_str().unwrap();
        let (s, b) = app.post(Some(&admin), &format!("/system/queue/ops/jobs/{id}/retry"), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let again = app.eventually(10, || async { (calls.lock().unwrap().len() >= 5).then_some(()) }).await;
        assert!(again.is_some(), "the retried job runs again");
        let (s, b) = app.post(Some(&admin), &format!("/system/queue/ops/jobs/{id}/retry"), json!({})).await;
        assert_eq!(s, StatusCode::CONFLICT, "a dead job is retried once: {b}");
        let op = app.login("lukas@virel.com").await;
        let (s, _) = app.get(&op, "/system/queue").await;
        assert_eq!(s, StatusCode::FORBIDDEN, "the queue dashboard needs system:read");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let app = TestApp::start_full(crate::harness::Engine::Sqlite, failing_options(calls.clone())).await;
        body(app, calls).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_redis() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let app = TestApp::start_full(crate::harness::Engine::Postgres, failing_options(calls.clone())).await;
        body(app, calls).await;
    }
}

fn panicking_options(runs: Arc<Mutex<Vec<&'static str>>>) -> WorkerOptions {
    let panics: virel_workers::CustomHandler = Arc::new(move |_payload| {
        Box::pin(async move {
            let minutes: i64 = std::hint::black_box(i64::MAX);
            let _ = chrono::Duration::minutes(minutes); // panics: out of bounds
            Ok(())
        })
    });
    let fine: virel_workers::CustomHandler = Arc::new(move |_payload| {
        let runs = runs.clone();
        Box::pin(async move {
            runs.lock().unwrap().push("fine");
            Ok(())
        })
    });
    WorkerOptions {
        retry: virel_workers::RetrySettings {
            attempts_default: 2,
            base: Duration::from_millis(200),
            ..Default::default()
        },
        handlers: vec![("panics".into(), panics), ("fine".into(), fine)],
        scheduler: false,
        ..Default::default()
    }
}

/// A handler that panics fails its attempts like any other and ends dead and visible; the
/// pool keeps running the jobs behind it.
mod a_panicking_job_ends_dead_and_the_pool_carries_on {
    use super::*;

    async fn body(app: TestApp, runs: Arc<Mutex<Vec<&'static str>>>) {
        let admin = app.login("admin@virel.com").await;
        let q = app.queues.as_ref().unwrap();
        for _ in 0..3 {
            let job = virel_workers::Job::new(&virel_domain::jobs::kinds::Custom {
                name: "panics".into(),
                payload: json!({}),
            });
            q.push(job, None).await.unwrap();
        }
        for _ in 0..5 {
            let job =
                virel_workers::Job::new(&virel_domain::jobs::kinds::Custom { name: "fine".into(), payload: json!({}) });
            q.push(job, None).await.unwrap();
        }
        let dead = app
            .eventually(30, || async {
                let (_, q) = app.get(&admin, "/system/queue").await;
                let dead = q["dead_jobs"].as_array().cloned().unwrap_or_default();
                (dead.len() == 3).then_some(dead)
            })
            .await
            .expect("all three panicking jobs end dead");
        for d in &dead {
            assert_eq!(d["attempts"], 2, "{d}");
            assert!(d["error"].as_str().unwrap().contains("panicked"), "{d}");
        }
        assert_eq!(runs.lock().unwrap().len(), 5, "the other jobs all ran");
        assert_eq!(app.count("SELECT COUNT(*) AS n FROM exceptions WHERE type = 'job_failed'").await, 3);
        // The pool is still there: a job pushed now runs.
        let job =
            virel_workers::Job::new(&virel_domain::jobs::kinds::Custom { name: "fine".into(), payload: json!({}) });
        q.push(job, None).await.unwrap();
        let ran = app.eventually(10, || async { (runs.lock().unwrap().len() == 6).then_some(()) }).await;
        assert!(ran.is_some(), "the pool keeps taking jobs");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        let runs = Arc::new(Mutex::new(Vec::new()));
        let app = TestApp::start_full(crate::harness::Engine::Sqlite, panicking_options(runs.clone())).await;
        body(app, runs).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_redis() {
        let runs = Arc::new(Mutex::new(Vec::new()));
        let app = TestApp::start_full(crate::harness::Engine::Postgres, panicking_options(runs.clone())).await;
        body(app, runs).await;
    }
}

both_engines_full!(
    rules_are_validated_and_dry_runs_change_nothing,
    WorkerOptions { scheduler: false, ..Default::default() },
    async |app: TestApp| {
        let admin = app.login("admin@virel.com").await;
        let bad = [
            (
                json!({"name": "x", "trigger": "inquiry.teleported", "actions": [{"type": "add_note", "params": {"text": "a"}}]}),
                "trigger",
            ),
            (
                json!({"name": "x", "trigger": "inquiry.created", "conditions": [{"field": "colour", "operator": "equals", "value": 1}], "actions": [{"type": "add_note", "params": {"text": "a"}}]}),
                "conditions[0].field",
            ),
            (
                json!({"name": "x", "trigger": "inquiry.created", "conditions": [{"field": "source", "operator": "resembles", "value": 1}], "actions": [{"type": "add_note", "params": {"text": "a"}}]}),
                "conditions[0].operator",
            ),
            (
                json!({"name": "x", "trigger": "inquiry.created", "actions": [{"type": "launch_rocket"}]}),
                "actions[0].type",
            ),
            (
                json!({"name": "x", "trigger": "inquiry.created", "actions": [{"type": "create_task", "params": {"type": 42}}]}),
                "actions[0].params.type",
            ),
            (
                json!({"name": "x", "trigger": "inquiry.created", "actions": [{"type": "create_task", "params": {"type": "follow_up", "due_in_minutes": "soon"}}]}),
                "actions[0].params.due_in_minutes",
            ),
            (
                json!({"name": "x", "trigger": "booking.created", "actions": [{"type": "update_status", "params": {"newStatus": "teleported"}}]}),
                "actions[0].params.newStatus",
            ),
        ];
        let rules_before = app.count("SELECT COUNT(*) AS n FROM automation_rules").await;
        for (body, part) in bad {
            let (s, b) = app.post(Some(&admin), "/automation/rules", body).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
            assert!(b["error"]["message"].as_str().unwrap().starts_with(part), "{part}: {b}");
        }
        assert_eq!(app.count("SELECT COUNT(*) AS n FROM automation_rules").await, rules_before, "nothing written");

        let rule = app.ok(&admin, "/automation/rules", phone_rule(), 201).await;
        let id = rule["id"].as_str().unwrap();
        // The demo data's own events may still be running their default rules: let them finish.
        app.settle(&admin).await;
        let tasks = app.count("SELECT COUNT(*) AS n FROM tasks").await;
        let (s, out) = app
            .post(
                Some(&admin),
                &format!("/automation/rules/{id}/test"),
                json!({"event": {"type": "inquiry.created", "payload": {"source": "phone"}}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{out}");
        assert_eq!(out["results"][0]["matched"], true);
        assert!(out["results"][0]["actions"][0]["would"].as_str().unwrap().contains("follow_up"));
        let (_, out) = app
            .post(
                Some(&admin),
                &format!("/automation/rules/{id}/test"),
                json!({"event": {"payload": {"source": "web"}}}),
            )
            .await;
        assert_eq!(out["results"][0]["matched"], false);
        assert_eq!(out["results"][0]["conditions"][0]["actual"], "web");
        // Replay over the real events of the trigger: the seeded inquiries (one of them by phone).
        let (_, out) =
            app.post(Some(&admin), &format!("/automation/rules/{id}/test"), json!({"replay_last": 10})).await;
        let results = out["results"].as_array().unwrap();
        assert_eq!(results.len(), 3);
        assert_eq!(results.iter().filter(|r| r["matched"] == true).count(), 1);
        assert_eq!(app.count("SELECT COUNT(*) AS n FROM tasks").await, tasks, "a dry run changes nothing");

        // Edit, disable, delete.
        let mut edited = phone_rule();
        edited["enabled"] = json!(false);
        edited["version"] = rule["version"].clone();
        let (s, r) = app
            .send(reqwest::Method::PUT, Some(&admin), &format!("/automation/rules/{id}"), Some(edited.clone()))
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["enabled"], false);
        let (s, _) =
            app.send(reqwest::Method::PUT, Some(&admin), &format!("/automation/rules/{id}"), Some(edited)).await;
        assert_eq!(s, StatusCode::CONFLICT, "a stale version is refused");
        let (s, _) = app.send(reqwest::Method::DELETE, Some(&admin), &format!("/automation/rules/{id}"), None).await;
        assert_eq!(s, StatusCode::OK);
        let op = app.login("lukas@virel.com").await;
        let (s, _) = app.post(Some(&op), "/automation/rules", phone_rule()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "operators do not write rules");
        // The five default rules are there.
        let (_, rules) = app.get(&admin, "/automation/rules?limit=200").await;
        assert_eq!(rules["items"].as_array().unwrap().iter().filter(|r| r["is_default"] == true).count(), 5);
    }
);

both_engines_full!(delayed_actions_are_rechecked_when_due, WorkerOptions::default(), async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let rule = app
        .ok(
            &admin,
            "/automation/rules",
            json!({
                "name": "Note on deposit-required bookings later",
                "trigger": "booking.status_changed",
                "conditions": [{"field": "to", "operator": "equals", "value": "deposit_required"},
                               {"field": "booking.status", "operator": "equals", "value": "deposit_required"}],
                "actions": [{"type": "add_note", "delay_minutes": 1, "params": {"text": "deposit still due"}}]
            }),
            201,
        )
        .await;
    let mk = async || {
        let b = crate::fixtures::booking(&app, &admin, 24 * 60).await;
        let id = b["id"].as_str().unwrap().to_string();
        app.ok(&admin, &format!("/bookings/{id}/status"), json!({"status": "pending"}), 200).await;
        app.ok(&admin, &format!("/bookings/{id}/status"), json!({"status": "deposit_required"}), 200).await;
        id
    };
    let still_due = mk().await;
    let paid = mk().await;
    let scheduled = app
        .eventually(5, || async {
            (app.count("SELECT COUNT(*) AS n FROM automation_executions WHERE status = 'scheduled'").await >= 2)
                .then_some(())
        })
        .await;
    assert!(scheduled.is_some(), "both actions are scheduled, not run");
    // One booking moves on before the action comes due.
    app.ok(
        &admin,
        &format!("/bookings/{paid}/status"),
        json!({"status": "confirmed", "override": true, "reason": "paid in cash"}),
        200,
    )
    .await;
    app.settle(&admin).await;
    // Bring the due time forward instead of waiting a minute (this rule's actions only).
    let mut h = app.db.acquire().await.unwrap();
    virel_domain::q_exec!(
        &mut h.conn(),
        "UPDATE automation_executions SET run_at = $1 WHERE status = 'scheduled' AND rule_id = $2",
        virel_domain::now(),
        uuid::Uuid::parse_str(rule["id"].as_str().unwrap()).unwrap()
    )
    .unwrap();
    drop(h);
    let path = format!("/automation/executions?rule_id={}&limit=200", rule["id"].as_str().unwrap());
    let done = app
        .eventually(20, || async {
            let (_, ex) = app.get(&admin, &path).await;
            let open = ex["items"]
                .as_array()?
                .iter()
                .filter(|e| ["scheduled", "queued", "running"].contains(&e["status"].as_str().unwrap_or("")))
                .count();
            (open == 0).then_some(())
        })
        .await;
    if done.is_none() {
        let (_, ex) = app.get(&admin, "/automation/executions?limit=50").await;
        let statuses: Vec<String> = ex["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| format!("{}:{}:{}:{}", e["action_index"], e["status"], e["run_at"], e["error"]))
            .collect();
        panic!("due actions are run by the scheduler and workers: {statuses:?}");
    }
    let (_, t1) = app.get(&admin, &format!("/bookings/{still_due}/timeline")).await;
    assert_eq!(t1["notes"].as_array().unwrap().len(), 1, "the note was added where the deposit is still due");
    let (_, t2) = app.get(&admin, &format!("/bookings/{paid}/timeline")).await;
    assert_eq!(t2["notes"].as_array().unwrap().len(), 0, "and skipped where it was paid meanwhile");
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM automation_executions WHERE status = 'skipped' AND action_index = 0")
            .await,
        1
    );
});
