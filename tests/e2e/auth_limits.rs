//! The login limit under attack: simultaneous guesses, lock-outs that cannot shut the real
//! owner out from elsewhere, the per-address limit, audit rows that stay bounded.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_engines;
use crate::harness::TestApp;

/// A client whose connections come from `addr` (any 127.x address is local on Linux), since
/// the server believes the socket's address only (`VIREL_TRUST_PROXY` is off).
fn client_from(addr: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(addr.parse::<std::net::IpAddr>().unwrap()).build().unwrap()
}

async fn login_with(http: &reqwest::Client, app: &TestApp, email: &str, password: &str) -> (StatusCode, Value) {
    let resp = http
        .post(format!("{}/auth/login", app.base))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let st = resp.status();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if st == StatusCode::TOO_MANY_REQUESTS {
        assert!(retry.is_some(), "429 without Retry-After: {body}");
        assert_eq!(body["error"]["code"], "too_many_requests", "{body}");
    }
    (st, body)
}

both_engines!(simultaneous_guesses_hit_the_limit, async |app: TestApp| {
    let http = client_from("127.0.0.1");
    let guesses = (0..30).map(|i| {
        let (http, app) = (&http, &app);
        async move { login_with(http, app, "admin@virel.com", &format!("guess-{i}")).await.0 }
    });
    let statuses = futures::future::join_all(guesses).await;
    let unauthorized = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let throttled = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(unauthorized + throttled, 30, "{statuses:?}");
    assert!(unauthorized <= 5, "the limit of 5 held under 30 simultaneous guesses: {statuses:?}");
    assert!(throttled >= 25, "{statuses:?}");
    // The right password from the attacked address waits too.
    let (st, e) = login_with(&http, &app, "admin@virel.com", "password123").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{e}");

    // From an address that has not failed, the owner still logs in.
    let (st, e) = login_with(&client_from("127.0.0.2"), &app, "admin@virel.com", "password123").await;
    assert_eq!(st, StatusCode::OK, "{e}");

    // 100 more refused attempts: counted on the throttle row, no audit row each.
    for i in 0..100 {
        let (st, _) = login_with(&http, &app, "admin@virel.com", &format!("again-{i}")).await;
        assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    }
    let audit = app
        .count("SELECT COUNT(*) AS n FROM audit_log WHERE action LIKE 'auth.login%' AND action <> 'auth.login'")
        .await;
    assert!(audit <= 6, "at most 5 failures and one lock-out audited, got {audit}");
    let counted = app.count("SELECT COALESCE(MAX(throttled), 0) AS n FROM login_throttle").await;
    assert!(counted >= 125, "refused attempts are counted on the throttle row: {counted}");
});

both_engines!(one_address_many_accounts_is_throttled, async |app: TestApp| {
    let attacker = client_from("127.0.0.3");
    // Two guesses each at ten accounts: twenty failures from one address.
    for i in 0..20 {
        let (st, e) = login_with(&attacker, &app, &format!("user{}@virel.com", i % 10), "wrong-password").await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "attempt {i}: {e}");
    }
    // The address is locked now, for every account, right password or not.
    let (st, e) = login_with(&attacker, &app, "sasha@virel.com", "password123").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{e}");
    // Elsewhere nothing changed.
    let (st, e) = login_with(&client_from("127.0.0.4"), &app, "sasha@virel.com", "password123").await;
    assert_eq!(st, StatusCode::OK, "{e}");
});

both_engines!(lock_outs_grow_and_success_forgives, async |app: TestApp| {
    let http = client_from("127.0.0.5");
    for _ in 0..5 {
        assert_eq!(login_with(&http, &app, "lukas@virel.com", "wrong-password").await.0, StatusCode::UNAUTHORIZED);
    }
    let (st, e) = login_with(&http, &app, "lukas@virel.com", "wrong-password").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    let first = e["error"]["details"]["retry_after_secs"].as_u64().unwrap();
    assert!((50..=60).contains(&first), "the first lock-out is a minute: {e}");
    // Pretend the minute passed, then fail five more times: the next lock-out is twice as long.
    let key = "a:127.0.0.5:lukas@virel.com";
    expire_lock(&app, key).await;
    for _ in 0..5 {
        assert_eq!(login_with(&http, &app, "lukas@virel.com", "wrong-password").await.0, StatusCode::UNAUTHORIZED);
    }
    let (st, e) = login_with(&http, &app, "lukas@virel.com", "wrong-password").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    let second = e["error"]["details"]["retry_after_secs"].as_u64().unwrap();
    assert!((110..=120).contains(&second), "the second lock-out is two minutes: {e}");
    // After the lock, a correct password gets in and forgives the pair's history.
    expire_lock(&app, key).await;
    assert_eq!(login_with(&http, &app, "lukas@virel.com", "password123").await.0, StatusCode::OK);
    assert_eq!(
        app.count(
            "SELECT COUNT(*) AS n FROM login_throttle
             WHERE key = 'a:127.0.0.5:lukas@virel.com' AND failures = 0 AND lockouts = 0 AND pending = 0"
        )
        .await,
        1
    );
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'auth.login_locked'").await, 2);
});

async fn expire_lock(app: &TestApp, key: &str) {
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    match app.db.pool() {
        virel_domain::store::Pool::Pg(p) => {
            sqlx::query("UPDATE login_throttle SET locked_until = $1 WHERE key = $2")
                .bind(past)
                .bind(key)
                .execute(p)
                .await
                .unwrap();
        }
        virel_domain::store::Pool::Lite(p) => {
            sqlx::query("UPDATE login_throttle SET locked_until = $1 WHERE key = $2")
                .bind(past)
                .bind(key)
                .execute(p)
                .await
                .unwrap();
        }
    }
}

/// The row a request leaves in `idempotency_keys` while it runs: as if its process died
/// mid-way (lease in the past, or no lease at all as before leases existed), or still running.
async fn running_key(app: &TestApp, actor: &str, key: &str, hash: &str, lease: Option<chrono::DateTime<chrono::Utc>>) {
    let sql = "INSERT INTO idempotency_keys (key, actor, request_hash, status, body, created_at, lease_until)
               VALUES ($1, $2, $3, 0, '', $4, $5)";
    let created = chrono::Utc::now() - chrono::Duration::minutes(5);
    match app.db.pool() {
        virel_domain::store::Pool::Pg(p) => {
            sqlx::query(sql).bind(key).bind(actor).bind(hash).bind(created).bind(lease).execute(p).await.unwrap();
        }
        virel_domain::store::Pool::Lite(p) => {
            sqlx::query(sql).bind(key).bind(actor).bind(hash).bind(created).bind(lease).execute(p).await.unwrap();
        }
    }
}

/// The request hash the idempotency middleware computes: method, URI and body.
fn request_hash(path: &str, body: &Value) -> String {
    virel_api::middleware::idempotency::request_hash("POST", path, &serde_json::to_vec(body).unwrap())
}

both_engines!(idempotency_keys_of_dead_requests_do_not_wedge, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let actor = app.user_id("admin@virel.com").await;
    let send = async |key: &str, body: &Value| {
        let r = app
            .http
            .post(format!("{}/clients", app.base))
            .bearer_auth(&admin)
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .unwrap();
        let replayed = r.headers().get("idempotent-replayed").is_some();
        (r.status(), replayed, r.json::<Value>().await.unwrap())
    };
    let now = chrono::Utc::now();

    // A request that died mid-way: its lease lapsed a second ago. The retry does the work.
    let body = json!({"name": "Crashed Once", "phone": "+447700555101"});
    running_key(
        &app,
        &actor,
        "died",
        &request_hash("/api/v1/clients", &body),
        Some(now - chrono::Duration::seconds(1)),
    )
    .await;
    let (st, replayed, b) = send("died", &body).await;
    assert_eq!(st, StatusCode::CREATED, "a retry after the lease lapsed proceeds: {b}");
    assert!(!replayed);
    // ...and is recorded: the next retry is a replay of it.
    let (st, replayed, b2) = send("died", &body).await;
    assert_eq!(st, StatusCode::CREATED, "{b2}");
    assert!(replayed);
    assert_eq!(b["id"], b2["id"]);

    // A row from before leases existed (no lease) counts as lapsed too.
    let body = json!({"name": "Crashed Long Ago", "phone": "+447700555102"});
    running_key(&app, &actor, "no-lease", &request_hash("/api/v1/clients", &body), None).await;
    let (st, _, b) = send("no-lease", &body).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");

    // While the first request's lease is live, a duplicate is still refused.
    let body = json!({"name": "Still Running", "phone": "+447700555103"});
    running_key(
        &app,
        &actor,
        "running",
        &request_hash("/api/v1/clients", &body),
        Some(now + chrono::Duration::seconds(30)),
    )
    .await;
    let (st, _, e) = send("running", &body).await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "duplicate");
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM clients WHERE name = 'Still Running'").await, 0);
    // Another body under a running key is still a mismatch.
    let (st, _, e) = send("running", &json!({"name": "Other", "phone": "+447700555104"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");

    // Two at once with one key: the work is done once; the other is refused or replayed.
    let body = json!({"name": "Twice At Once", "phone": "+447700555105"});
    let (a, b) = futures::join!(send("twice", &body), send("twice", &body));
    let fresh = [&a, &b].iter().filter(|r| r.0 == StatusCode::CREATED && !r.1).count();
    assert_eq!(fresh, 1, "{a:?} {b:?}");
    for r in [&a, &b] {
        assert!(r.0 == StatusCode::CREATED || r.0 == StatusCode::CONFLICT, "{r:?}");
    }
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM clients WHERE name = 'Twice At Once'").await, 1);
    // A finished key holds no lease.
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM idempotency_keys WHERE status <> 0 AND lease_until IS NOT NULL").await,
        0
    );
});
