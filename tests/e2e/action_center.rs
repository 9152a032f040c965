//! The Action Center: its order, who sees what (in the list and on the live feed), the SLA
//! ladder under two schedulers, and live updates across processes.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{Engine, TestApp, WorkerOptions};
use crate::{both_engines, both_engines_full};

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A live feed client, authenticated with `?token=`.
pub async fn connect(base: &str, token: &str) -> (Socket, Value) {
    let url = format!("{}/ws?token={token}", base.replacen("http://", "ws://", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
    let first = next_json(&mut ws, Duration::from_secs(5)).await.expect("a snapshot first");
    assert_eq!(first["type"], "snapshot", "{first}");
    (ws, first)
}

/// The next JSON message within `wait`, skipping pings.
pub async fn next_json(ws: &mut Socket, wait: Duration) -> Option<Value> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).ok(),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// Waits for a message about item `id`; returns it and when it came.
pub async fn wait_for_item(ws: &mut Socket, id: &str, wait: Duration) -> Option<(Value, Instant)> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let m = next_json(ws, left).await?;
        if m["item"]["id"] == id {
            return Some((m, Instant::now()));
        }
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
}

both_engines!(items_come_in_the_order_an_operator_should_work_them, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let now = Utc::now();
    let at = |m: i64| now + chrono::Duration::minutes(m);
    let mk = async |title: &str, due: chrono::DateTime<Utc>, priority: &str| -> String {
        let t = app
            .ok(&admin, "/tasks", json!({"type": "custom", "title": title, "priority": priority, "due_at": due}), 201)
            .await;
        t["id"].as_str().unwrap().to_string()
    };
    let a = mk("A breached long ago, low", at(-10), "low").await;
    let b = mk("B breached recently, critical", at(-5), "critical").await;
    let c = mk("C in an hour, low", at(60), "low").await;
    let d = mk("D in an hour, critical", at(60), "critical").await;
    let e = mk("E in ten minutes", at(10), "normal").await;
    let g = mk("G in two hours, first", at(120), "normal").await;
    let h = mk("H in two hours, second", at(120), "normal").await;
    let (s, list) = app.get(&admin, "/action-center").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let mine = [&a, &b, &c, &d, &e, &g, &h];
    let order: Vec<String> = ids(&list).into_iter().filter(|i| mine.contains(&i)).collect();
    assert_eq!(order, vec![a.clone(), b.clone(), e.clone(), d.clone(), c.clone(), g.clone(), h.clone()]);
    let state =
        |id: &str| list["items"].as_array().unwrap().iter().find(|i| i["id"] == id).unwrap()["sla_state"].clone();
    assert_eq!(state(&a), "breached");
    assert_eq!(state(&e), "ok");
    assert!(list["counts"]["breached"].as_u64().unwrap() >= 2);
    assert_eq!(
        list["counts"]["total"].as_u64().unwrap(),
        list["counts"]["breached"].as_u64().unwrap()
            + list["counts"]["at_risk"].as_u64().unwrap()
            + list["counts"]["ok"].as_u64().unwrap()
    );
    // Filters.
    let (_, crit) = app.get(&admin, "/action-center?priority=critical&kind=task").await;
    let crit_ids = ids(&crit);
    assert!(crit_ids.contains(&b) && crit_ids.contains(&d) && !crit_ids.contains(&c));
    let (_, exc) = app.get(&admin, "/action-center?kind=exception").await;
    assert!(exc["items"].as_array().unwrap().iter().all(|i| i["kind"] == "exception"));
    let lukas = app.user_id("lukas@virel.com").await;
    app.ok(&admin, &format!("/tasks/{c}/assign"), json!({"assignee_id": lukas}), 200).await;
    let (_, unassigned) = app.get(&admin, "/action-center?unassigned=true").await;
    assert!(!ids(&unassigned).contains(&c));
    let op = app.login("lukas@virel.com").await;
    let (_, mine_only) = app.get(&op, "/action-center?mine=true").await;
    assert_eq!(ids(&mine_only).iter().filter(|i| mine.contains(i)).count(), 1, "only C is lukas's");
    let (s, _) = app.get(&op, "/action-center?kind=gadget").await;
    assert!(s.is_client_error());
    let content = app.login("content@virel.com").await;
    let (s, _) = app.get(&content, "/action-center").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
});

both_engines_full!(
    an_operator_never_sees_another_operators_item,
    WorkerOptions { scheduler: false, ..Default::default() },
    async |app: TestApp| {
        let admin = app.login("admin@virel.com").await;
        let lukas_token = app.login("lukas@virel.com").await;
        let sasha = app.user_id("sasha@virel.com").await;
        let lukas = app.user_id("lukas@virel.com").await;
        let (mut ws, snapshot) = connect(&app.base, &lukas_token).await;
        assert!(
            snapshot["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["assignee_id"].is_null() || i["assignee_id"] == lukas.as_str())
        );
        // Sasha's task: never in lukas's list or feed.
        let hers =
            app.ok(&admin, "/tasks", json!({"type": "custom", "title": "Sasha's", "assignee_id": sasha}), 201).await;
        let hers_id = hers["id"].as_str().unwrap().to_string();
        // An unassigned one: pushed to lukas.
        let open = app.ok(&admin, "/tasks", json!({"type": "custom", "title": "Anyone's"}), 201).await;
        let open_id = open["id"].as_str().unwrap().to_string();
        let started = Instant::now();
        let (m, when) =
            wait_for_item(&mut ws, &open_id, Duration::from_secs(3)).await.expect("the unassigned task is pushed");
        assert_eq!(m["type"], "item.upserted");
        assert!(when - started < Duration::from_secs(1), "within a second: {:?}", when - started);
        // Reassigned to sasha: removed from lukas's view.
        app.ok(&admin, &format!("/tasks/{open_id}/assign"), json!({"assignee_id": sasha}), 200).await;
        let (m, _) = wait_for_item(&mut ws, &open_id, Duration::from_secs(3)).await.expect("removal pushed");
        assert_eq!(m["type"], "item.removed");
        // Nothing about sasha's task ever arrived.
        while let Some(m) = next_json(&mut ws, Duration::from_millis(500)).await {
            assert_ne!(m["item"]["id"], hers_id.as_str(), "lukas must not hear of sasha's task: {m}");
        }
        let (_, list) = app.get(&lukas_token, "/action-center").await;
        assert!(!ids(&list).contains(&hers_id));
        // The admin hears of both.
        let (_, admin_snapshot) = connect(&app.base, &admin).await;
        assert!(admin_snapshot["items"].as_array().unwrap().iter().any(|i| i["id"] == hers_id.as_str()));
        // A garbage token is refused.
        let bad =
            tokio_tungstenite::connect_async(format!("{}/ws?token=garbage", app.base.replacen("http://", "ws://", 1)))
                .await;
        assert!(bad.is_err(), "the handshake is refused");
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_escalation_level_fires_once_with_two_schedulers() {
    let app =
        TestApp::start_full(Engine::Postgres, WorkerOptions { schedulers: 2, sweep_secs: 1, ..Default::default() })
            .await;
    let admin = app.login("admin@virel.com").await;
    let (_, policies) = app.get(&admin, "/sla-policies").await;
    let custom =
        policies.as_array().unwrap().iter().find(|p| p["kind"] == "task" && p["item_type"] == "*").unwrap().clone();
    app.send(
        reqwest::Method::PATCH,
        Some(&admin),
        &format!("/sla-policies/{}", custom["id"].as_str().unwrap()),
        Some(json!({"escalation_secs": [0, 2, 4]})),
    )
    .await;
    let lukas = app.user_id("lukas@virel.com").await;
    let tommy = app.user_id("tommy@virel.com").await;
    let t = app
        .ok(&admin, "/tasks", json!({"type": "custom", "title": "Overdue", "assignee_id": lukas, "due_at": Utc::now() - chrono::Duration::seconds(1)}), 201)
        .await;
    let id = t["id"].as_str().unwrap().to_string();
    let level = async || {
        let (_, t) = app.get(&admin, &format!("/tasks/{id}")).await;
        t["escalation_level"].as_i64().unwrap()
    };
    let started = Instant::now();
    assert!(
        app.eventually(4, || async { (level().await >= 1).then_some(()) }).await.is_some(),
        "level 1 within a sweep or two"
    );
    assert!(app.eventually(6, || async { (level().await >= 2).then_some(()) }).await.is_some(), "level 2");
    let (_, t2) = app.get(&admin, &format!("/tasks/{id}")).await;
    assert_eq!(t2["assignee_id"], tommy.as_str(), "reassigned to the OPS_MANAGER at level 2");
    assert!(app.eventually(6, || async { (level().await >= 3).then_some(()) }).await.is_some(), "level 3");
    // Two schedulers, sweeps every second: still each level exactly once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(level().await, 3);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM domain_events WHERE type = 'task.sla_breached'").await, 3);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'task.escalated'").await, 3);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM exceptions WHERE type = 'sla_breached'").await, 2);
    // And each tick of a schedule ran once, whichever scheduler led: the critical queue ran no
    // more jobs than there were claimed sweep and clock ticks plus critical events (a tick run
    // by both schedulers pushes its job twice), and no fewer once the queue has caught up.
    let rt = app.runtime.clone().unwrap();
    let done = async || {
        rt.flush_counts().await;
        app.count("SELECT CAST(COALESCE(SUM(done), 0) AS BIGINT) AS n FROM job_stats WHERE queue = 'critical'").await
    };
    let expected = async || {
        let ticks =
            app.count("SELECT COUNT(*) AS n FROM schedule_runs WHERE schedule IN ('sla_sweep', 'booking_clock')").await;
        let events = app
            .count(
                "SELECT COUNT(*) AS n FROM domain_events WHERE type IN ('task.sla_breached', 'booking.starting_soon')
                 OR type LIKE 'safety_check%'",
            )
            .await;
        (ticks, events)
    };
    let ran = done().await;
    let (ticks, events) = expected().await;
    assert!(ticks >= 6, "the sweep and the clock each ticked every second: {ticks} ticks");
    assert!(ran <= ticks + events, "{ran} critical jobs ran for {ticks} ticks and {events} events: a tick ran twice");
    let (ticks, events) = expected().await;
    let caught_up = app.eventually(10, || async { (done().await >= ticks + events).then_some(()) }).await;
    assert!(caught_up.is_some(), "every claimed tick ran: {} of {ticks} ticks + {events} events", done().await);
    assert!(started.elapsed() < Duration::from_secs(20));
}

both_engines!(exceptions_about_an_inquiry_waiting_on_the_client_pause_too, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let inq = crate::fixtures::inquiry(&app, &admin, "phone").await;
    let id = inq["id"].as_str().unwrap();
    let e = app
        .ok(
            &admin,
            "/exceptions",
            json!({"type": "no_show_risk", "severity": "high", "subject_type": "inquiry", "subject_id": id}),
            201,
        )
        .await;
    let eid = e["id"].as_str().unwrap().to_string();
    let paused = async || {
        let (_, l) = app.get(&admin, "/action-center?kind=exception").await;
        l["items"].as_array().unwrap().iter().find(|i| i["id"] == eid.as_str()).unwrap()["sla_paused"].clone()
    };
    assert_eq!(paused().await, false);
    app.ok(&admin, &format!("/inquiries/{id}/status"), json!({"status": "qualified"}), 200).await;
    app.ok(&admin, &format!("/inquiries/{id}/status"), json!({"status": "awaiting_client"}), 200).await;
    assert_eq!(paused().await, true, "the clock stops while the client is awaited");
    app.ok(&admin, &format!("/inquiries/{id}/status"), json!({"status": "awaiting_deposit"}), 200).await;
    assert_eq!(paused().await, false, "and runs again after");
});
