//! Bounds on every value a write accepts (SPEC §15): no NUL character in any text field
//! (PostgreSQL answered 500, SQLite stored it), documented maximum lengths (shown as
//! `maxLength` in the OpenAPI document), times within 2000-01-01..2100-01-01, amounts within
//! 0..=100,000,000 minor units, currencies from ISO 4217 and the agency's list. Each is 422
//! `validation_failed` naming the field, never a 500, nothing written, on both engines.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use virel_domain::Ctx;
use virel_domain::validate;

use crate::both_engines;
use crate::fixtures;
use crate::harness::TestApp;

/// What a write could leave behind.
async fn counts(app: &TestApp) -> Vec<i64> {
    vec![
        app.count("SELECT COUNT(*) AS n FROM inquiries").await,
        app.count("SELECT COUNT(*) AS n FROM bookings").await,
        app.count("SELECT COUNT(*) AS n FROM clients").await,
        app.count("SELECT COUNT(*) AS n FROM models").await,
        app.count("SELECT COUNT(*) AS n FROM tasks").await,
        app.count("SELECT COUNT(*) AS n FROM exceptions").await,
        app.count("SELECT COUNT(*) AS n FROM notes").await,
        app.count("SELECT COUNT(*) AS n FROM users").await,
        app.count("SELECT COUNT(*) AS n FROM automation_rules").await,
        app.count("SELECT COUNT(*) AS n FROM domain_events").await,
    ]
}

/// Sets the value at a dotted path (`client.name`, `tags.0`, `preferences.x`).
fn set(mut body: Value, path: &str, value: Value) -> Value {
    let mut cur = &mut body;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        let last = i == parts.len() - 1;
        cur = match p.parse::<usize>() {
            Ok(n) => {
                if !cur.is_array() {
                    *cur = json!([]);
                }
                let arr = cur.as_array_mut().unwrap();
                while arr.len() <= n {
                    arr.push(Value::Null);
                }
                &mut arr[n]
            }
            Err(_) => {
                if !cur.is_object() {
                    *cur = json!({});
                }
                cur.as_object_mut().unwrap().entry(p.to_string()).or_insert(Value::Null)
            }
        };
        if last {
            *cur = value;
            break;
        }
    }
    body
}

/// `tags.0` → `tags[0]`: how the answers name a list item.
fn field_name(path: &str) -> String {
    let mut out = String::new();
    for p in path.split('.') {
        if p.parse::<usize>().is_ok() {
            out.push_str(&format!("[{p}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(p);
        }
    }
    out
}

struct Write {
    method: Method,
    path: String,
    body: Value,
    /// Text fields of the body, by dotted path.
    fields: Vec<&'static str>,
}

async fn send(app: &TestApp, token: &str, w: &Write, body: Value) -> (StatusCode, Value) {
    app.send(w.method.clone(), Some(token), &w.path, Some(body)).await
}

/// Every write endpoint with a valid body and the text fields it takes.
async fn writes(app: &TestApp, token: &str) -> Vec<Write> {
    let c = fixtures::client(app, token).await;
    let m = fixtures::model(app, token).await;
    let cid = c["id"].as_str().unwrap().to_string();
    let mid = m["id"].as_str().unwrap().to_string();
    let b = fixtures::booking_for(app, token, &m["id"], &c["id"], 5 * 24 * 60, "draft").await;
    let bid = b["id"].as_str().unwrap().to_string();
    let i = fixtures::inquiry(app, token, "web").await;
    let iid = i["id"].as_str().unwrap().to_string();
    let t = app.ok(token, "/tasks", json!({"type": "follow_up", "title": "Bounds"}), 201).await;
    let tid = t["id"].as_str().unwrap().to_string();
    let e = app.ok(token, "/exceptions", json!({"type": "no_show_risk", "severity": "low"}), 201).await;
    let eid = e["id"].as_str().unwrap().to_string();
    let uid = app.user_id("lukas@virel.com").await;
    let w = |method: Method, path: String, body: Value, fields: Vec<&'static str>| Write { method, path, body, fields };
    vec![
        w(
            Method::POST,
            "/clients".into(),
            json!({"name": "Bound Client", "phone": "+447700123999", "email": "bound@example.com",
                   "telegram": "@bound", "preferred_channel": "sms", "notes": "n", "tags": ["vip"]}),
            vec!["name", "phone", "email", "telegram", "preferred_channel", "notes", "tags.0"],
        ),
        w(
            Method::PATCH,
            format!("/clients/{cid}"),
            json!({"name": "Renamed", "notes": "n", "telegram": "@renamed", "tags": ["a"]}),
            vec!["name", "notes", "telegram", "tags.0"],
        ),
        w(Method::POST, format!("/clients/{cid}/block"), json!({"reason": "r"}), vec!["reason"]),
        w(
            Method::POST,
            "/inquiries".into(),
            json!({"source": "web", "client": {"name": "Bound Caller", "phone": "+447700123998",
                   "email": "caller@example.com", "telegram": "@caller", "preferred_channel": "sms"},
                   "requested_start": fixtures::at(24 * 60), "duration_minutes": 120, "location": "London W1",
                   "budget": {"amount": 40000, "currency": "GBP"}, "notes": "n", "preferences": {"x": "y"}}),
            vec![
                "source",
                "client.name",
                "client.phone",
                "client.email",
                "client.telegram",
                "client.preferred_channel",
                "location",
                "notes",
                "budget.currency",
                "preferences.x",
                "preferences.list.0",
            ],
        ),
        w(
            Method::POST,
            format!("/inquiries/{iid}/status"),
            json!({"status": "lost", "reason": "r"}),
            vec!["status", "reason"],
        ),
        w(
            Method::POST,
            format!("/inquiries/{iid}/convert-to-booking"),
            json!({"model_id": mid, "price": {"amount": 100, "currency": "GBP"}, "location": "x",
                   "start_at": fixtures::at(9 * 24 * 60), "duration_minutes": 60}),
            vec!["location", "price.currency"],
        ),
        w(
            Method::POST,
            "/bookings".into(),
            json!({"client_id": cid, "model_id": mid, "start_at": fixtures::at(7 * 24 * 60), "duration_minutes": 60,
                   "location": "x", "price": {"amount": 100, "currency": "GBP"},
                   "deposit": {"amount": 10, "currency": "GBP"}, "status": "draft"}),
            vec!["location", "status", "price.currency", "deposit.currency"],
        ),
        w(
            Method::POST,
            format!("/bookings/{bid}/status"),
            json!({"status": "cancelled", "reason": "r"}),
            vec!["status", "reason"],
        ),
        w(
            Method::POST,
            "/tasks".into(),
            json!({"type": "follow_up", "title": "t", "priority": "low", "subject_type": "client", "subject_id": cid}),
            vec!["type", "title", "priority", "subject_type"],
        ),
        w(Method::POST, format!("/tasks/{tid}/status"), json!({"status": "in_progress"}), vec!["status"]),
        w(
            Method::POST,
            "/exceptions".into(),
            json!({"type": "no_show_risk", "title": "t", "severity": "low"}),
            vec!["type", "title", "severity"],
        ),
        w(
            Method::POST,
            format!("/exceptions/{eid}/resolve"),
            json!({"resolution": "r", "status": "resolved"}),
            vec!["resolution", "status"],
        ),
        w(
            Method::POST,
            "/notes".into(),
            json!({"subject_type": "client", "subject_id": cid, "text": "t"}),
            vec!["subject_type", "text"],
        ),
        w(
            Method::POST,
            "/models".into(),
            json!({"name": "Bound Model", "base_location": "London", "languages": ["en"], "profile_text": "p",
                   "seo_slug": "bound", "attributes": {"k": "v"},
                   "rates": [{"duration_minutes": 60, "amount": 100, "currency": "GBP"}]}),
            vec![
                "name",
                "base_location",
                "languages.0",
                "profile_text",
                "seo_slug",
                "attributes.k",
                "rates.0.currency",
            ],
        ),
        w(
            Method::PATCH,
            format!("/models/{mid}"),
            json!({"name": "Renamed Model", "profile_text": "p", "status": "active"}),
            vec!["name", "profile_text", "status"],
        ),
        w(
            Method::POST,
            "/users".into(),
            json!({"email": "bound.user@virel.com", "name": "Bound User", "role": "OPERATOR",
                   "password": "a-long-password"}),
            vec!["email", "name", "role", "password"],
        ),
        w(Method::PATCH, format!("/users/{uid}"), json!({"name": "Lukas B"}), vec!["name"]),
        w(
            Method::POST,
            "/automation/rules".into(),
            json!({"name": "Bound rule", "trigger": "inquiry.created", "conditions": [],
                   "actions": [{"type": "create_task", "params": {"type": "follow_up", "title": "t"}}]}),
            vec!["name", "trigger", "actions.0.params.title"],
        ),
    ]
}

both_engines!(a_nul_character_in_any_text_field_is_422_naming_it, async |app: TestApp| {
    let token = app.login("admin@virel.com").await;
    let writes = writes(&app, &token).await;
    let before = counts(&app).await;
    let mut cases = 0;
    for w in &writes {
        for f in &w.fields {
            for bad in ["a\u{0}b", "\u{0}"] {
                let body = set(w.body.clone(), f, json!(bad));
                let (s, b) = send(&app, &token, w, body).await;
                assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{} {} {f}: {b}", w.method, w.path);
                assert_eq!(b["error"]["code"], "validation_failed", "{} {f}: {b}", w.path);
                assert_eq!(b["error"]["details"]["field"], field_name(f), "{} {f}: {b}", w.path);
                cases += 1;
            }
        }
        // A NUL in a key of a free-form object too.
        let body = set(w.body.clone(), "extra\u{0}key", json!(1));
        let (s, b) = send(&app, &token, w, body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{} key: {b}", w.path);
    }
    assert!(cases > 100, "every endpoint's fields were tried ({cases})");
    // Query parameters reach SQL too (`q` is a LIKE pattern).
    for path in ["/clients?q=a%00b", "/inquiries?status=%00", "/tasks?type=x%00", "/audit?entity_type=%00"] {
        let (s, b) = app.get(&token, path).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {b}");
        assert_eq!(b["error"]["code"], "validation_failed", "{path}: {b}");
    }
    // A form body (the operator pages' login).
    let root = app.base.trim_end_matches("/api/v1").to_string();
    let r = app
        .http
        .post(format!("{root}/admin/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=admin%00@virel.com&password=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(counts(&app).await, before, "nothing written");
    // The valid bodies are not refused as invalid (a state conflict, 409, is fine).
    for w in &writes {
        let (s, b) = send(&app, &token, w, w.body.clone()).await;
        assert!(s.is_success() || s == StatusCode::CONFLICT, "{} {}: {b}", w.method, w.path);
    }
});

both_engines!(text_fields_have_documented_maximum_lengths, async |app: TestApp| {
    let token = app.login("admin@virel.com").await;
    let writes = writes(&app, &token).await;
    let before = counts(&app).await;
    // The OpenAPI document shows the domain's limits.
    let (_, doc) = app.get(&token, "/openapi.json").await;
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let mut shown = 0;
    for (name, schema) in schemas {
        let Some(props) = schema["properties"].as_object() else { continue };
        for (prop, p) in props {
            let max = p["maxLength"].as_u64().or_else(|| p["items"]["maxLength"].as_u64());
            if let Some(max) = max {
                let key = if name == "ClientIn" { format!("client.{prop}") } else { prop.clone() };
                assert_eq!(max as usize, validate::max_chars(&key), "{name}.{prop}: maxLength vs validate::LIMITS");
                shown += 1;
            }
        }
    }
    assert!(shown >= 40, "maxLength shown on the request bodies ({shown})");
    assert_eq!(schemas["CreateClient"]["properties"]["name"]["maxLength"], 200);
    assert_eq!(schemas["CreateClient"]["properties"]["email"]["maxLength"], 254);
    assert_eq!(schemas["CreateNote"]["properties"]["text"]["maxLength"], 10_000);

    // One past each limit is 422 naming the field.
    for w in &writes {
        for f in &w.fields {
            let key: String = f.split('.').filter(|p| p.parse::<usize>().is_err()).collect::<Vec<_>>().join(".");
            let max = validate::max_chars(&key);
            let body = set(w.body.clone(), f, json!("x".repeat(max + 1)));
            let (s, b) = send(&app, &token, w, body).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{} {f} ({max}): {b}", w.path);
            assert_eq!(b["error"]["code"], "validation_failed", "{} {f}: {b}", w.path);
            let named = b["error"]["details"]["field"].as_str().unwrap_or_default().to_string();
            let last = f.rsplit('.').find(|p| p.parse::<usize>().is_err()).unwrap();
            assert!(named.contains(last), "{} {f}: names the field: {b}", w.path);
        }
    }
    // A 900 KB client name is not a name.
    let (s, b) = app.post(Some(&token), "/clients", json!({"name": "n".repeat(900 * 1024)})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["details"]["field"], "name");
    // Too many tags.
    let (s, b) = app.post(Some(&token), "/clients", json!({"name": "Tagged", "tags": vec!["t"; 51]})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(counts(&app).await, before, "nothing written");
    // Exactly at the limit is accepted (counted in characters, not bytes).
    let (s, b) =
        app.post(Some(&token), "/clients", json!({"name": "é".repeat(200), "notes": "n".repeat(10_000)})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
});

both_engines!(times_amounts_and_currencies_are_bounded, async |app: TestApp| {
    let token = app.login("admin@virel.com").await;
    let c = fixtures::client(&app, &token).await;
    let m = fixtures::model(&app, &token).await;
    let booking = json!({"client_id": c["id"], "model_id": m["id"], "start_at": fixtures::at(3 * 24 * 60),
                         "duration_minutes": 60, "price": {"amount": 30000, "currency": "GBP"},
                         "deposit": {"amount": 0, "currency": "GBP"}});
    let before = counts(&app).await;
    let refused = async |path: &str, body: Value, field: &str| {
        let (s, b) = app.post(Some(&token), path, body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path} {body}: {b}");
        assert_eq!(b["error"]["code"], "validation_failed", "{b}");
        let named = b["error"]["details"]["field"].as_str().unwrap_or_default();
        assert!(field.split('|').any(|f| named.ends_with(f)), "{path}: names {field}: {b}");
    };
    for t in ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2100-01-01T00:00:00Z", "1999-12-31T23:59:59Z"] {
        refused("/bookings", set(booking.clone(), "start_at", json!(t)), "start_at").await;
        refused("/bookings", set(set(booking.clone(), "start_at", json!(t)), "status", json!("pending")), "start_at")
            .await;
        refused(
            "/inquiries",
            json!({"source": "web", "client_id": c["id"], "requested_start": t, "duration_minutes": 60}),
            "requested_start",
        )
        .await;
        refused("/tasks", json!({"type": "follow_up", "due_at": t}), "due_at").await;
    }
    for (price, field) in [
        // Both wrong: either may be named.
        (json!({"amount": i64::MAX, "currency": "XXX"}), "amount|currency"),
        (json!({"amount": i64::MAX, "currency": "GBP"}), "amount"),
        (json!({"amount": 100_000_001, "currency": "GBP"}), "amount"),
        (json!({"amount": -1, "currency": "GBP"}), "amount"),
        (json!({"amount": 100, "currency": "XXX"}), "currency"),
        (json!({"amount": 100, "currency": "ABC"}), "currency"),
        (json!({"amount": 100, "currency": "JPY"}), "currency"),
        (json!({"amount": 100, "currency": "POUNDS"}), "currency"),
    ] {
        let mut b = set(booking.clone(), "price", price.clone());
        b["deposit"] = json!({"amount": 0, "currency": price["currency"]});
        refused("/bookings", b, field).await;
        refused("/inquiries", json!({"source": "web", "client_id": c["id"], "budget": price.clone()}), field).await;
        refused(
            "/models",
            json!({"name": "Rated", "rates": [{"duration_minutes": 60, "amount": price["amount"],
                                               "currency": price["currency"]}]}),
            field,
        )
        .await;
    }
    assert_eq!(counts(&app).await, before, "nothing written");
    // The bounds themselves are accepted, in any of the agency's currencies.
    let edge = set(
        set(booking.clone(), "start_at", json!("2099-12-31T00:00:00Z")),
        "price",
        json!({"amount": 100_000_000, "currency": "EUR"}),
    );
    let edge = set(edge, "deposit", json!({"amount": 0, "currency": "EUR"}));
    let (s, b) = app.post(Some(&token), "/bookings", edge).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = app
        .post(
            Some(&token),
            "/inquiries",
            json!({"source": "web", "client_id": c["id"], "budget": {"amount": 0, "currency": "USD"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
});

both_engines!(the_commands_refuse_what_the_api_would, async |app: TestApp| {
    // Workers, rules and the seed call the commands directly: the same refusals, no SQL error.
    use virel_domain::DomainError;
    use virel_domain::commands::{Money, bookings, clients, models, notes, tasks};
    let ctx = Ctx::system();
    let db = &app.db;
    let field = |r: Result<_, DomainError>| match r {
        Err(DomainError::InvalidField { field, .. }) => field,
        Err(other) => panic!("not a field error: {other:?}"),
        Ok(_) => panic!("accepted"),
    };
    let before = counts(&app).await;
    let c = clients::NewClient { name: "Nul\u{0}Name".into(), ..Default::default() };
    assert_eq!(field(clients::create(db, &ctx, c).await.map(|_| ())), "name");
    let c = clients::NewClient { name: "Ok".into(), notes: Some("x\u{0}".into()), ..Default::default() };
    assert_eq!(field(clients::create(db, &ctx, c).await.map(|_| ())), "notes");
    let t = tasks::NewTask { kind: "follow_up".into(), title: Some("t\u{0}".into()), ..Default::default() };
    assert_eq!(field(tasks::create(db, &ctx, t).await.map(|_| ())), "title");
    let t = tasks::NewTask { kind: "follow_up".into(), title: Some("t".repeat(501)), ..Default::default() };
    assert_eq!(field(tasks::create(db, &ctx, t).await.map(|_| ())), "title");
    let m = models::NewModel { name: "M".into(), attributes: Some(json!({"a": ["\u{0}"]})), ..Default::default() };
    assert_eq!(field(models::create(db, &ctx, m).await.map(|_| ())), "attributes.a[0]");
    let token = app.login("admin@virel.com").await;
    let cl = fixtures::client(&app, &token).await;
    let mo = fixtures::model(&app, &token).await;
    let cid: uuid::Uuid = cl["id"].as_str().unwrap().parse().unwrap();
    let mid: uuid::Uuid = mo["id"].as_str().unwrap().parse().unwrap();
    let before = {
        let mut b = before;
        b[2] += 1;
        b[3] += 1;
        b[9] = counts(&app).await[9];
        b
    };
    let n = notes::NewNote { subject_type: "client".into(), subject_id: cid, text: "a\u{0}".into() };
    assert_eq!(field(notes::create(db, &ctx, n).await.map(|_| ())), "text");
    let far = chrono::DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z").unwrap().to_utc();
    let gbp = |amount| Money { amount, currency: "GBP".into() };
    let b = |start_at, price: Money, location: Option<String>| bookings::NewBooking {
        client_id: cid,
        model_id: mid,
        start_at,
        duration_minutes: 60,
        location,
        price,
        deposit: None,
        status: Some("pending".into()),
        assignee_id: None,
    };
    let soon = chrono::Utc::now() + chrono::Duration::days(3);
    assert_eq!(field(bookings::create(db, &ctx, b(far, gbp(100), None)).await.map(|_| ())), "start_at");
    assert_eq!(field(bookings::create(db, &ctx, b(soon, gbp(i64::MAX), None)).await.map(|_| ())), "price.amount");
    let xxx = Money { amount: 1, currency: "XXX".into() };
    assert_eq!(field(bookings::create(db, &ctx, b(soon, xxx, None)).await.map(|_| ())), "price.currency");
    let loc = Some("L\u{0}".into());
    assert_eq!(field(bookings::create(db, &ctx, b(soon, gbp(100), loc)).await.map(|_| ())), "location");
    assert_eq!(counts(&app).await, before, "nothing written by the refused commands");
});
