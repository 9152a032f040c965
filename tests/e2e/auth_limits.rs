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
