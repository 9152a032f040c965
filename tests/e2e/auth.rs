//! Logging in and staying logged in: tokens, rotation and reuse detection, logout, throttling,
//! deactivation; the OpenAPI document and docs; cursor pagination.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_engines;
use crate::fixtures;
use crate::harness::TestApp;

async fn login_raw(app: &TestApp, email: &str, password: &str) -> (StatusCode, Value) {
    app.post(None, "/auth/login", json!({"email": email, "password": password})).await
}

async fn session(app: &TestApp, email: &str) -> Value {
    let (s, b) = login_raw(app, email, "password123").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

async fn refresh(app: &TestApp, token: &str) -> (StatusCode, Value) {
    app.post(None, "/auth/refresh", json!({"refresh_token": token})).await
}

fn s(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}")).to_string()
}

both_engines!(login_gives_tokens_and_me_works, async |app: TestApp| {
    let b = session(&app, "admin@virel.com").await;
    let access = s(&b, "access_token");
    let refresh_token = s(&b, "refresh_token");
    assert_eq!(access.split('.').count(), 3, "a JWT: {access}");
    assert!(refresh_token.len() >= 32, "{refresh_token}");
    assert_ne!(access, refresh_token);
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["expires_in"], 900);
    assert_eq!(b["user"]["email"], "admin@virel.com");
    assert_eq!(b["user"]["role"], "OWNER");
    assert!(b["user"]["id"].is_string());
    let text = b["user"].to_string().to_lowercase();
    assert!(!text.contains("password"), "{text}");
    // The email is matched without regard to case or surrounding spaces.
    let (st, _) = login_raw(&app, "  Admin@Virel.com ", "password123").await;
    assert_eq!(st, StatusCode::OK);

    let (st, me) = app.get(&access, "/me").await;
    assert_eq!(st, StatusCode::OK, "{me}");
    assert_eq!(me["email"], "admin@virel.com");
    assert_eq!(me["id"], b["user"]["id"]);
    assert!(me["permissions"].as_array().unwrap().iter().any(|p| p == "users:manage"), "{me}");
    // The refresh token is not an access token.
    let (st, e) = app.get(&refresh_token, "/me").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{e}");
    // Unknown email and wrong password look the same.
    let (s1, b1) = login_raw(&app, "nobody@virel.com", "password123").await;
    let (s2, b2) = login_raw(&app, "admin@virel.com", "wrong-password").await;
    assert_eq!(s1, StatusCode::UNAUTHORIZED);
    assert_eq!(s2, StatusCode::UNAUTHORIZED);
    assert_eq!(b1, b2);
});

both_engines!(refresh_rotates_and_reuse_revokes_the_family, async |app: TestApp| {
    let first = session(&app, "lukas@virel.com").await;
    let r1 = s(&first, "refresh_token");
    // An unrelated login of the same user: another family.
    let other = session(&app, "lukas@virel.com").await;
    let other_r = s(&other, "refresh_token");

    let (st, second) = refresh(&app, &r1).await;
    assert_eq!(st, StatusCode::OK, "{second}");
    let r2 = s(&second, "refresh_token");
    assert_ne!(r1, r2);
    assert_eq!(second["token_type"], "Bearer");
    assert_eq!(second["expires_in"], 900);
    assert_eq!(second["user"]["email"], "lukas@virel.com");
    let (st, me) = app.get(&s(&second, "access_token"), "/me").await;
    assert_eq!(st, StatusCode::OK, "{me}");
    assert_eq!(me["email"], "lukas@virel.com");

    // The new one works (and rotates again).
    let (st, third) = refresh(&app, &r2).await;
    assert_eq!(st, StatusCode::OK, "{third}");
    let r3 = s(&third, "refresh_token");

    // The old one again: refused, and the whole family goes.
    let (st, e) = refresh(&app, &r1).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{e}");
    assert_eq!(e["error"]["code"], "unauthorized");
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'auth.refresh_reuse_detected'").await, 1);
    let (st, e) = refresh(&app, &r3).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "the newest token of the family is revoked too: {e}");
    let (st, e) = refresh(&app, &r2).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{e}");
    // The other login is untouched.
    let (st, b) = refresh(&app, &other_r).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    // Garbage is simply refused.
    let (st, e) = refresh(&app, "not-a-token").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{e}");
    assert_eq!(e["error"]["code"], "unauthorized");
});

both_engines!(logout_ends_the_session, async |app: TestApp| {
    let a = session(&app, "sasha@virel.com").await;
    let b = session(&app, "sasha@virel.com").await;
    let access = s(&a, "access_token");
    let (st, out) = app.post(Some(&access), "/auth/logout", json!({"refresh_token": s(&a, "refresh_token")})).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    assert_eq!(out["ok"], true);
    let (st, e) = refresh(&app, &s(&a, "refresh_token")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{e}");
    // The other session of the same user lives on.
    let (st, b2) = refresh(&app, &s(&b, "refresh_token")).await;
    assert_eq!(st, StatusCode::OK, "{b2}");

    // Someone else's refresh token cannot be logged out.
    let adam = session(&app, "adam@virel.com").await;
    let (st, e) = app.post(Some(&access), "/auth/logout", json!({"refresh_token": s(&adam, "refresh_token")})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{e}");
    let (st, _) = refresh(&app, &s(&adam, "refresh_token")).await;
    assert_eq!(st, StatusCode::OK);

    // Without a token: every session of the caller ends.
    let c = session(&app, "sasha@virel.com").await;
    let (st, _) = app.post(Some(&s(&c, "access_token")), "/auth/logout", json!({})).await;
    assert_eq!(st, StatusCode::OK);
    for r in [s(&b2, "refresh_token"), s(&c, "refresh_token")] {
        let (st, e) = refresh(&app, &r).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{e}");
    }
    // Logging out needs a valid access token.
    let (st, e) = app.post(None, "/auth/logout", json!({"refresh_token": "x"})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{e}");
});

both_engines!(repeated_failed_logins_are_throttled, async |app: TestApp| {
    // Five failures for one account from one address lock that pair.
    for i in 0..5 {
        let (st, e) = login_raw(&app, "lukas@virel.com", &format!("wrong-{i}")).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "attempt {i}: {e}");
        assert_eq!(e["error"]["code"], "unauthorized");
    }
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'auth.login_failed'").await, 5);
    let (st, e) = login_raw(&app, "lukas@virel.com", "password123").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "the sixth attempt, even with the right password: {e}");
    assert_eq!(e["error"]["code"], "too_many_requests");
    assert!(e["error"]["details"]["retry_after_secs"].as_u64().unwrap() > 0, "{e}");
    let (st, e) = login_raw(&app, "lukas@virel.com", "wrong-again").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{e}");
    // The 429 carries Retry-After, in seconds: the first lock-out lasts a minute.
    let resp = app
        .http
        .post(format!("{}/auth/login", app.base))
        .json(&json!({"email": "lukas@virel.com", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    // Same address, another account: five failures are not yet the address's limit.
    let (st, e) = login_raw(&app, "sasha@virel.com", "password123").await;
    assert_eq!(st, StatusCode::OK, "{e}");
    // The throttled email stays throttled whatever address it claims to come from.
    let resp = app
        .http
        .post(format!("{}/auth/login", app.base))
        .header("x-forwarded-for", "203.0.113.7")
        .json(&json!({"email": "lukas@virel.com", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    // Lukas did not get in; refused attempts wrote one lock-out row, not one row each.
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'auth.login'").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'auth.login_locked'").await, 1);
});

both_engines!(deactivated_users_are_shut_out, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let donald = session(&app, "donald@virel.com").await;
    let access = s(&donald, "access_token");
    let (st, _) = app.get(&access, "/me").await;
    assert_eq!(st, StatusCode::OK);
    let id = s(&donald["user"], "id");

    let (st, u) = app.patch(&admin, &format!("/users/{id}"), json!({"active": false})).await;
    assert_eq!(st, StatusCode::OK, "{u}");
    assert_eq!(u["active"], false);

    let (st, e) = app.get(&access, "/me").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "the old access token: {e}");
    assert_eq!(e["error"]["code"], "unauthorized");
    let (st, e) = app.get(&access, "/tasks").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{e}");
    let (st, e) = login_raw(&app, "donald@virel.com", "password123").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "login: {e}");
    assert_eq!(e["error"]["code"], "unauthorized");
    let (st, e) = refresh(&app, &s(&donald, "refresh_token")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "refresh: {e}");

    // Back on: a fresh login works, the old refresh token stays dead.
    let (st, u) = app.patch(&admin, &format!("/users/{id}"), json!({"active": true})).await;
    assert_eq!(st, StatusCode::OK, "{u}");
    let again = session(&app, "donald@virel.com").await;
    let (st, _) = app.get(&s(&again, "access_token"), "/me").await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = refresh(&app, &s(&donald, "refresh_token")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
});

both_engines!(openapi_document_and_docs, async |app: TestApp| {
    let resp = app.http.get(format!("{}/openapi.json", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/json"), "{ct}");
    let doc: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/inquiries",
        "/inquiries/{id}",
        "/bookings",
        "/bookings/{id}/timeline",
        "/bookings/{id}/status",
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
        "/me",
        "/tasks/{id}/assign",
        "/audit",
    ] {
        assert!(paths.contains_key(p), "{p} in {:?}", paths.keys());
    }
    assert!(doc["servers"].as_array().unwrap().iter().any(|s| s["url"] == "/api/v1"), "{}", doc["servers"]);
    assert!(doc["components"]["securitySchemes"].is_object(), "{}", doc["components"]);

    let root = app.base.trim_end_matches("/api/v1").to_string();
    let resp = app.http.get(format!("{root}/docs")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let html = resp.text().await.unwrap();
    assert!(
        ct.starts_with("text/html") || html.to_lowercase().contains("<html"),
        "{ct}: {}",
        &html[..html.len().min(200)]
    );
    assert!(html.to_lowercase().contains("<html"), "{}", &html[..html.len().min(200)]);
});

both_engines!(pagination_follows_cursors_to_the_end, async |app: TestApp| {
    let token = app.login("admin@virel.com").await;
    let mut created = Vec::new();
    for _ in 0..7 {
        created.push(s(&fixtures::client(&app, &token).await, "id"));
    }
    let total = app.count("SELECT COUNT(*) AS n FROM clients").await as usize;

    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/clients?limit=3&cursor={c}"),
            None => "/clients?limit=3".to_string(),
        };
        let (st, page) = app.get(&token, &path).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        pages += 1;
        assert!(pages <= total, "pagination does not end");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3, "{page}");
        seen.extend(items.iter().map(|c| s(c, "id")));
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(items.len(), 3, "only the last page is short: {page}");
                cursor = Some(c.to_string());
            }
            None => {
                assert!(page["next_cursor"].is_null(), "{page}");
                break;
            }
        }
    }
    assert_eq!(seen.len(), total, "every client once: {seen:?}");
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), total, "no client twice: {seen:?}");
    assert_eq!(pages, total.div_ceil(3));
    // Newest first: ours, last made first, at the top.
    let mut newest: Vec<String> = created.clone();
    newest.reverse();
    assert_eq!(seen[..7].to_vec(), newest);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "ids descend (UUIDv7: newest first)");

    // A page exactly as long as the list has no next page.
    let (_, page) = app.get(&token, &format!("/clients?limit={total}")).await;
    assert_eq!(page["items"].as_array().unwrap().len(), total);
    assert!(page["next_cursor"].is_null(), "{page}");
    // The cursor of the next-to-last item leads to a last page of one.
    let (_, page) = app.get(&token, &format!("/clients?limit={}", total - 1)).await;
    let c = page["next_cursor"].as_str().unwrap().to_string();
    let (_, page) = app.get(&token, &format!("/clients?limit=3&cursor={c}")).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert!(page["next_cursor"].is_null(), "{page}");
});

/// No trusted proxy is configured, so `X-Forwarded-For` is only the caller's own claim.
async fn login_from(app: &TestApp, claimed_ip: &str, email: &str, password: &str) -> StatusCode {
    app.http
        .post(format!("{}/auth/login", app.base))
        .header("x-forwarded-for", claimed_ip)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

both_engines!(a_claimed_address_does_not_dodge_the_address_limit, async |app: TestApp| {
    // Password spraying: one guess for each of twenty emails (the address limit), all from here.
    for i in 0..20 {
        let (st, _) = login_raw(&app, &format!("user{i}@virel.com"), "guess").await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    let (st, _) = login_raw(&app, "sasha@virel.com", "guess").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "the address limit holds");
    // The same socket, now claiming to be someone else.
    let st = login_from(&app, "198.51.100.23", "adam@virel.com", "guess").await;
    assert_eq!(
        st,
        StatusCode::TOO_MANY_REQUESTS,
        "a client-supplied X-Forwarded-For must not reset the per-address limit"
    );
});

both_engines!(the_audit_log_records_the_real_address, async |app: TestApp| {
    let st = login_from(&app, "198.51.100.77", "admin@virel.com", "password123").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'auth.login' AND ip = '198.51.100.77'").await,
        0,
        "an address the caller merely claims is not recorded as theirs"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'auth.login' AND ip = '127.0.0.1'").await,
        1
    );
});
