//! Races: many requests at the same moment must not double-book a model or double-move a task,
//! and a status change is all or nothing (row, audit entry, domain event).

use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_engines;
use crate::fixtures;
use crate::harness::{Engine, TestApp};

/// A time on a whole minute, `minutes_from_now` ahead: comparisons never hinge on sub-seconds.
fn minute(minutes_from_now: i64) -> DateTime<Utc> {
    fixtures::at(minutes_from_now).duration_trunc(Duration::minutes(1)).unwrap()
}

fn booking_body(client_id: &Value, model_id: &Value, start: DateTime<Utc>, minutes: i64, status: &str) -> Value {
    json!({
        "client_id": client_id,
        "model_id": model_id,
        "start_at": start,
        "duration_minutes": minutes,
        "location": "London W1",
        "price": {"amount": 30000, "currency": "GBP"},
        "deposit": {"amount": 5000, "currency": "GBP"},
        "status": status
    })
}

/// Fires every `(path, body)` POST at once from its own task, all released by one barrier, and
/// returns the answers in the same order.
async fn post_all_at_once(app: &TestApp, token: &str, reqs: Vec<(String, Value)>) -> Vec<(StatusCode, Value)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(reqs.len()));
    let handles: Vec<_> = reqs
        .into_iter()
        .map(|(path, body)| {
            let http = app.http.clone();
            let url = format!("{}{}", app.base, path);
            let token = token.to_string();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let req = http.post(url).bearer_auth(token).json(&body);
                barrier.wait().await;
                let resp = req.send().await.unwrap();
                let status = resp.status();
                let text = resp.text().await.unwrap();
                let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
                (status, v)
            })
        })
        .collect();
    futures::future::join_all(handles).await.into_iter().map(|r| r.unwrap()).collect()
}

/// Bookings of one model that hold its time, as the API lists them.
async fn holding(app: &TestApp, token: &str, model_id: &Value) -> Vec<Value> {
    let (s, b) = app.get(token, &format!("/bookings?model_id={}&limit=200", model_id.as_str().unwrap())).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| {
            matches!(b["status"].as_str().unwrap(), "pending" | "deposit_required" | "confirmed" | "in_progress")
        })
        .cloned()
        .collect()
}

/// The same, straight from the database.
async fn holding_in_db(app: &TestApp, model_id: &Value) -> i64 {
    #[derive(sqlx::FromRow)]
    struct N {
        n: i64,
    }
    let id = uuid::Uuid::parse_str(model_id.as_str().unwrap()).unwrap();
    let mut h = app.db.acquire().await.unwrap();
    virel_domain::q_one!(
        &mut h.conn(),
        N,
        "SELECT COUNT(*) AS n FROM bookings WHERE model_id = $1
             AND status IN ('pending', 'deposit_required', 'confirmed', 'in_progress')",
        id
    )
    .unwrap()
    .n
}

fn assert_one_winner(results: &[(StatusCode, Value)], win: StatusCode) {
    let wins = results.iter().filter(|(s, _)| *s == win).count();
    let overlaps =
        results.iter().filter(|(s, b)| *s == StatusCode::CONFLICT && b["error"]["code"] == "booking_overlap").count();
    assert_eq!(wins, 1, "exactly one {win}: {results:?}");
    assert_eq!(overlaps, results.len() - 1, "every other answer is 409 booking_overlap: {results:?}");
}

both_engines!(twenty_concurrent_pending_creates_book_the_model_once, async |app: TestApp| {
    let token = app.login("admin@virel.com").await;
    let c = fixtures::client(&app, &token).await;
    let m = fixtures::model(&app, &token).await;
    let base = minute(3 * 24 * 60);
    // Starts 5 minutes apart, 120 minutes long: every pair overlaps.
    let reqs = (0..20)
        .map(|i| {
            ("/bookings".to_string(), booking_body(&c["id"], &m["id"], base + Duration::minutes(i * 5), 120, "pending"))
        })
        .collect();
    let results = post_all_at_once(&app, &token, reqs).await;
    assert_one_winner(&results, StatusCode::CREATED);
    let winner = &results.iter().find(|(s, _)| *s == StatusCode::CREATED).unwrap().1;
    assert_eq!(winner["status"], "pending");
    for (_, b) in results.iter().filter(|(s, _)| *s == StatusCode::CONFLICT) {
        assert_eq!(b["error"]["details"]["conflicting_booking_id"], winner["id"], "{b}");
    }
    let held = holding(&app, &token, &m["id"]).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["id"], winner["id"]);
    assert_eq!(holding_in_db(&app, &m["id"]).await, 1);
    // The refused ones left nothing behind: the model has one booking at all.
    let (_, all) = app.get(&token, &format!("/bookings?model_id={}", m["id"].as_str().unwrap())).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1, "{all}");
});

both_engines!(twenty_concurrent_draft_to_pending_moves_book_the_model_once, async |app: TestApp| {
    let token = app.login("admin@virel.com").await;
    let c = fixtures::client(&app, &token).await;
    let m = fixtures::model(&app, &token).await;
    let base = minute(4 * 24 * 60);
    let mut ids = Vec::new();
    for i in 0..20 {
        let b = app
            .ok(
                &token,
                "/bookings",
                booking_body(&c["id"], &m["id"], base + Duration::minutes(i * 5), 120, "draft"),
                201,
            )
            .await;
        assert_eq!(b["status"], "draft");
        ids.push(b["id"].as_str().unwrap().to_string());
    }
    let reqs = ids.iter().map(|id| (format!("/bookings/{id}/status"), json!({"status": "pending"}))).collect();
    let results = post_all_at_once(&app, &token, reqs).await;
    assert_one_winner(&results, StatusCode::OK);
    let winner = &results.iter().find(|(s, _)| *s == StatusCode::OK).unwrap().1;
    assert_eq!(winner["status"], "pending");
    let held = holding(&app, &token, &m["id"]).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["id"], winner["id"]);
    assert_eq!(holding_in_db(&app, &m["id"]).await, 1);
    // The losers are still drafts at their first version.
    for id in &ids {
        if winner["id"] == id.as_str() {
            continue;
        }
        let (s, b) = app.get(&token, &format!("/bookings/{id}")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(b["status"], "draft", "{b}");
        assert_eq!(b["version"], 1, "{b}");
    }
});

both_engines!(back_to_back_and_other_models_are_not_overlaps, async |app: TestApp| {
    let token = app.login("admin@virel.com").await;
    let c = fixtures::client(&app, &token).await;
    let m = fixtures::model(&app, &token).await;
    let other = fixtures::model(&app, &token).await;
    let t = minute(5 * 24 * 60);
    let first = app.ok(&token, "/bookings", booking_body(&c["id"], &m["id"], t, 120, "pending"), 201).await;
    assert_eq!(DateTime::parse_from_rfc3339(first["end_at"].as_str().unwrap()).unwrap(), t + Duration::minutes(120));
    // Starts exactly when the first ends.
    app.ok(&token, "/bookings", booking_body(&c["id"], &m["id"], t + Duration::minutes(120), 60, "pending"), 201).await;
    // Ends exactly when the first starts (made as a draft, then moved to pending).
    let before = app
        .ok(&token, "/bookings", booking_body(&c["id"], &m["id"], t - Duration::minutes(60), 60, "draft"), 201)
        .await;
    app.ok(&token, &format!("/bookings/{}/status", before["id"].as_str().unwrap()), json!({"status": "pending"}), 200)
        .await;
    // Another model at the very same time.
    app.ok(&token, "/bookings", booking_body(&c["id"], &other["id"], t, 120, "pending"), 201).await;
    // One minute into the first one is an overlap.
    let (s, b) = app
        .post(Some(&token), "/bookings", booking_body(&c["id"], &m["id"], t + Duration::minutes(119), 60, "pending"))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["error"]["code"], "booking_overlap");
    assert_eq!(holding(&app, &token, &m["id"]).await.len(), 3);
    assert_eq!(holding(&app, &token, &other["id"]).await.len(), 1);
});

both_engines!(two_concurrent_moves_of_one_task_one_wins, async |app: TestApp| {
    let token = app.login("admin@virel.com").await;
    let moves = app.count("SELECT COUNT(*) AS n FROM domain_events WHERE type = 'task.status_changed'").await;
    for round in 0..5 {
        let t = app
            .ok(
                &token,
                "/tasks",
                json!({"type": "follow_up", "title": format!("Race {round}"), "priority": "normal"}),
                201,
            )
            .await;
        let id = t["id"].as_str().unwrap();
        let version = t["version"].clone();
        let reqs = vec![
            (format!("/tasks/{id}/status"), json!({"status": "in_progress", "version": version})),
            (format!("/tasks/{id}/status"), json!({"status": "in_progress", "version": version})),
        ];
        let results = post_all_at_once(&app, &token, reqs).await;
        let ok = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
        assert_eq!(ok, 1, "round {round}: {results:?}");
        let (s, b) = results.iter().find(|(s, _)| *s != StatusCode::OK).unwrap();
        assert_eq!(*s, StatusCode::CONFLICT, "round {round}: {b}");
        let code = b["error"]["code"].as_str().unwrap();
        assert!(code == "version_conflict" || code == "invalid_transition", "round {round}: {b}");
        let (_, now) = app.get(&token, &format!("/tasks/{id}")).await;
        assert_eq!(now["status"], "in_progress");
        assert_eq!(now["version"], json!(version.as_i64().unwrap() + 1));
        let n = app.count("SELECT COUNT(*) AS n FROM domain_events WHERE type = 'task.status_changed'").await;
        assert_eq!(n, moves + round + 1, "one status change recorded per round");
    }
});

both_engines!(a_failed_audit_write_rolls_back_the_status_change, async |app: TestApp| {
    let token = app.login("admin@virel.com").await;
    let b = fixtures::booking(&app, &token, 6 * 24 * 60).await;
    let id = b["id"].as_str().unwrap().to_string();
    assert_eq!(b["status"], "draft");
    let version = b["version"].clone();
    {
        let mut h = app.db.acquire().await.unwrap();
        match app.engine {
            Engine::Sqlite => {
                virel_domain::q_exec!(
                    &mut h.conn(),
                    "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log
                         BEGIN SELECT RAISE(ABORT, 'forced failure'); END"
                )
                .unwrap();
            }
            Engine::Postgres => {
                virel_domain::q_exec!(
                    &mut h.conn(),
                    "CREATE FUNCTION fail_audit_fn() RETURNS trigger AS $$
                         BEGIN RAISE EXCEPTION 'forced failure'; END;
                         $$ LANGUAGE plpgsql"
                )
                .unwrap();
                virel_domain::q_exec!(
                    &mut h.conn(),
                    "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log
                         FOR EACH ROW EXECUTE FUNCTION fail_audit_fn()"
                )
                .unwrap();
            }
        }
    }
    let events = app.count("SELECT COUNT(*) AS n FROM domain_events").await;
    let audits = app.count("SELECT COUNT(*) AS n FROM audit_log").await;
    let payments = app.count("SELECT COUNT(*) AS n FROM payments").await;

    let (s, body) = app.post(Some(&token), &format!("/bookings/{id}/status"), json!({"status": "pending"})).await;
    assert!(s.is_server_error(), "{s}: {body}");
    assert!(body["error"]["code"].is_string(), "error shape: {body}");
    assert!(body["error"]["message"].is_string(), "error shape: {body}");
    assert!(body["error"].get("details").is_some(), "error shape: {body}");
    let text = body.to_string();
    assert!(!text.contains("forced failure") && !text.contains("panicked"), "internals stay out of answers: {text}");

    // Another transition (draft -> cancelled) fails the same way.
    let (s2, body2) = app
        .post(
            Some(&token),
            &format!("/bookings/{id}/status"),
            json!({"status": "cancelled", "reason": "client changed plans"}),
        )
        .await;
    assert!(s2.is_server_error(), "{s2}: {body2}");

    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM domain_events").await,
        events,
        "no domain event from a rolled-back change"
    );
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM audit_log").await, audits);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM payments").await, payments);

    {
        let mut h = app.db.acquire().await.unwrap();
        match app.engine {
            Engine::Sqlite => {
                virel_domain::q_exec!(&mut h.conn(), "DROP TRIGGER fail_audit").unwrap();
            }
            Engine::Postgres => {
                virel_domain::q_exec!(&mut h.conn(), "DROP TRIGGER fail_audit ON audit_log").unwrap();
                virel_domain::q_exec!(&mut h.conn(), "DROP FUNCTION fail_audit_fn()").unwrap();
            }
        }
    }

    let (s, now) = app.get(&token, &format!("/bookings/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(now["status"], "draft", "{now}");
    assert_eq!(now["version"], version, "{now}");
    assert_eq!(now["updated_at"], b["updated_at"], "{now}");

    // With the trigger gone the same change goes through, event and audit included.
    let moved = app.ok(&token, &format!("/bookings/{id}/status"), json!({"status": "pending"}), 200).await;
    assert_eq!(moved["status"], "pending");
    assert!(app.count("SELECT COUNT(*) AS n FROM domain_events").await > events);
    assert!(app.count("SELECT COUNT(*) AS n FROM audit_log").await > audits);
});

both_engines!(concurrent_refreshes_of_one_token_one_wins, async |app: TestApp| {
    let (s, session) =
        app.post(None, "/auth/login", json!({"email": "adam@virel.com", "password": "password123"})).await;
    assert_eq!(s, StatusCode::OK, "{session}");
    let token = session["refresh_token"].clone();
    let reqs = (0..10).map(|_| ("/auth/refresh".to_string(), json!({"refresh_token": token}))).collect();
    let results = post_all_at_once(&app, "unused", reqs).await;
    let ok = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(ok, 1, "one rotation per refresh token: {results:?}");
    for (s, b) in results.iter().filter(|(s, _)| *s != StatusCode::OK) {
        assert_eq!(*s, StatusCode::UNAUTHORIZED, "{b}");
        assert_eq!(b["error"]["code"], "unauthorized", "{b}");
    }
});

both_engines!(concurrent_inquiries_from_one_new_client_make_one_client, async |app: TestApp| {
    let token = app.login("admin@virel.com").await;
    for round in 0..5 {
        let n = fixtures::rand_n();
        let phone = format!("+4477005{n:06}");
        let email = format!("twin{n}@example.com");
        let reqs = (0..10)
            .map(|_| {
                (
                    "/inquiries".to_string(),
                    json!({
                        "source": "web",
                        "client": {"name": format!("Same Person {n}"), "phone": phone, "email": email},
                        "requested_start": fixtures::at(24 * 60),
                        "duration_minutes": 120,
                        "location": "London W1"
                    }),
                )
            })
            .collect();
        let results = post_all_at_once(&app, &token, reqs).await;
        for (s, b) in &results {
            assert_eq!(*s, StatusCode::CREATED, "round {round}: {b}");
        }
        let (_, clients) = app.get(&token, "/clients?limit=200").await;
        let same: Vec<&Value> =
            clients["items"].as_array().unwrap().iter().filter(|c| c["phone"] == phone.as_str()).collect();
        assert_eq!(
            same.len(),
            1,
            "round {round}: one person is one client, also when their inquiries arrive together: {same:?}"
        );
        let ids: std::collections::HashSet<String> =
            results.iter().map(|(_, b)| b["client_id"].as_str().unwrap().to_string()).collect();
        assert_eq!(ids.len(), 1, "round {round}: every inquiry names the same client: {ids:?}");
    }
});

/// Two operators claim one unassigned item (`tasks` or `exceptions`) at the same moment, ten
/// times over: each time exactly one gets it and the other is refused.
async fn claim_race(app: &TestApp, kind: &str) {
    let admin = app.login("admin@virel.com").await;
    let tokens = [app.login("lukas@virel.com").await, app.login("sasha@virel.com").await];
    let ids = [app.user_id("lukas@virel.com").await, app.user_id("sasha@virel.com").await];
    for round in 0..10 {
        let body = match kind {
            "tasks" => json!({"type": "follow_up", "title": format!("Claim me {round}")}),
            _ => json!({"type": "no_show_risk", "severity": "high", "title": format!("Claim me {round}")}),
        };
        let item = app.ok(&admin, &format!("/{kind}"), body, 201).await;
        let item_id = item["id"].as_str().unwrap().to_string();
        let path = format!("/{kind}/{item_id}/assign");
        // Each operator claims it for themselves, with their own token.
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let handles: Vec<_> = tokens
            .iter()
            .zip(ids.iter())
            .map(|(token, id)| {
                let req =
                    app.http.post(format!("{}{}", app.base, path)).bearer_auth(token).json(&json!({"assignee_id": id}));
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    let resp = req.send().await.unwrap();
                    let s = resp.status();
                    (s, resp.json::<Value>().await.unwrap())
                })
            })
            .collect();
        let results: Vec<(StatusCode, Value)> =
            futures::future::join_all(handles).await.into_iter().map(|r| r.unwrap()).collect();
        let ok = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
        assert_eq!(ok, 1, "{kind} round {round}: one operator gets it, the other is refused: {results:?}");
        let (_, now) = app.get(&admin, &format!("/{kind}/{item_id}")).await;
        let winner = &results.iter().find(|(s, _)| *s == StatusCode::OK).unwrap().1;
        assert_eq!(now["assignee_id"], winner["assignee_id"], "{kind} round {round}");
    }
}

both_engines!(two_operators_claiming_one_task_one_wins, async |app: TestApp| {
    claim_race(&app, "tasks").await;
});

both_engines!(two_operators_claiming_one_exception_one_wins, async |app: TestApp| {
    claim_race(&app, "exceptions").await;
});
