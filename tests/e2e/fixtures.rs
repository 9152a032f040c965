//! Small builders for the records tests need, made through the API.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::harness::TestApp;

pub fn at(minutes_from_now: i64) -> DateTime<Utc> {
    Utc::now() + Duration::minutes(minutes_from_now)
}

pub async fn client(app: &TestApp, token: &str) -> Value {
    let n = rand_n();
    app.ok(
        token,
        "/clients",
        json!({
            "name": format!("Client {n}"),
            "phone": format!("+4477009{n:06}"),
            "email": format!("client{n}@example.com"),
            "telegram": "@clienthandle",
            "preferred_channel": "sms"
        }),
        201,
    )
    .await
}

pub async fn model(app: &TestApp, token: &str) -> Value {
    app.ok(
        token,
        "/models",
        json!({
            "name": "Test Model",
            "base_location": "London",
            "languages": ["en"],
            "rates": [{"duration_minutes": 60, "amount": 25000, "currency": "GBP"}]
        }),
        201,
    )
    .await
}

/// A booking in `draft` for a new client and model, starting `start_in` minutes from now.
pub async fn booking(app: &TestApp, token: &str, start_in: i64) -> Value {
    let c = client(app, token).await;
    let m = model(app, token).await;
    booking_for(app, token, &m["id"], &c["id"], start_in, "draft").await
}

pub async fn booking_for(
    app: &TestApp,
    token: &str,
    model_id: &Value,
    client_id: &Value,
    start_in: i64,
    status: &str,
) -> Value {
    app.ok(
        token,
        "/bookings",
        json!({
            "client_id": client_id,
            "model_id": model_id,
            "start_at": at(start_in),
            "duration_minutes": 120,
            "location": "London W1",
            "price": {"amount": 30000, "currency": "GBP"},
            "deposit": {"amount": 5000, "currency": "GBP"},
            "status": status
        }),
        201,
    )
    .await
}

pub async fn inquiry(app: &TestApp, token: &str, source: &str) -> Value {
    let m = model(app, token).await;
    let n = rand_n();
    app.ok(token, "/inquiries", json!({
        "source": source,
        "client": {"name": "New Client", "phone": format!("+4477008{n:06}"), "email": format!("new{n}@example.com")},
        "requested_start": at(24 * 60),
        "duration_minutes": 120,
        "location": "London W1",
        "model_id": m["id"],
        "budget": {"amount": 40000, "currency": "GBP"}
    }), 201).await
}

/// A number for unique phones and emails (the low bits of a v7 id are random).
pub fn rand_n() -> u128 {
    uuid::Uuid::now_v7().as_u128() % 1_000_000
}
