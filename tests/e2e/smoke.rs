//! A newcomer's first minutes: log in, find the demo data, see the docs.

use reqwest::StatusCode;
use serde_json::json;

use crate::both_engines;
use crate::harness::TestApp;

both_engines!(login_and_demo_data, async |app: TestApp| {
    let token = app.login("admin@virel.com").await;
    let (s, me) = app.get(&token, "/me").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["role"], "OWNER");
    for path in ["/inquiries", "/bookings", "/tasks", "/exceptions", "/clients", "/models", "/users"] {
        let (s, b) = app.get(&token, path).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
        assert!(!b["items"].as_array().unwrap().is_empty(), "{path} has demo data");
    }
    let (_, users) = app.get(&token, "/users").await;
    assert_eq!(users["items"].as_array().unwrap().len(), 8);
});

both_engines!(wrong_password_is_401_and_audited, async |app: TestApp| {
    let (s, b) = app.post(None, "/auth/login", json!({"email": "admin@virel.com", "password": "nope"})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(b["error"]["code"], "unauthorized");
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'auth.login_failed'").await, 1);
});
