//! Bad input of every kind: a clear 4xx in the error shape, nothing written, never a 500, never
//! a stack trace. And every answer carries `x-request-id`.

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::both_engines;
use crate::fixtures;
use crate::harness::TestApp;

struct Answer {
    what: String,
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", self.what, self.text))
    }

    /// A 4xx in `{"error": {"code", "message", "details"}}` (details an object).
    fn error(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}: {}", self.what, self.text);
        self.error_shape()
    }

    fn error_shape(&self) -> Value {
        let b = self.json();
        let e = &b["error"];
        assert!(e["code"].is_string(), "{}: error.code: {b}", self.what);
        assert!(e["message"].is_string(), "{}: error.message: {b}", self.what);
        assert!(e["details"].is_object(), "{}: error.details: {b}", self.what);
        e.clone()
    }

    fn code(&self, status: u16) -> String {
        self.error(status)["code"].as_str().unwrap().to_string()
    }
}

/// Sends raw bytes (or nothing) and keeps status, headers and text.
async fn raw(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Answer {
    try_raw(app, method, path, token, body).await.unwrap()
}

/// The same, keeping a transport error (the connection cut before an answer was read).
async fn try_raw(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Result<Answer, reqwest::Error> {
    let mut req = app.http.request(method.clone(), format!("{}{}", app.base, path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some((ct, bytes)) = body {
        req = req.header("content-type", ct).body(bytes);
    }
    let resp = req.send().await?;
    Ok(Answer {
        what: format!("{method} {path}"),
        status: resp.status(),
        headers: resp.headers().clone(),
        text: resp.text().await?,
    })
}

async fn post_json(app: &TestApp, token: &str, path: &str, body: &str) -> Answer {
    let mut a =
        raw(app, reqwest::Method::POST, path, Some(token), Some(("application/json", body.as_bytes().to_vec()))).await;
    a.what = format!("{} {}", a.what, &body[..body.len().min(300)]);
    a
}

async fn post_value(app: &TestApp, token: &str, path: &str, body: Value) -> Answer {
    post_json(app, token, path, &body.to_string()).await
}

async fn get(app: &TestApp, token: Option<&str>, path: &str) -> Answer {
    raw(app, reqwest::Method::GET, path, token, None).await
}

/// What a write could leave behind.
async fn counts(app: &TestApp) -> Vec<i64> {
    vec![
        app.count("SELECT COUNT(*) AS n FROM inquiries").await,
        app.count("SELECT COUNT(*) AS n FROM bookings").await,
        app.count("SELECT COUNT(*) AS n FROM clients").await,
        app.count("SELECT COUNT(*) AS n FROM tasks").await,
        app.count("SELECT COUNT(*) AS n FROM payments").await,
        app.count("SELECT COUNT(*) AS n FROM domain_events").await,
        app.count("SELECT COUNT(*) AS n FROM audit_log").await,
    ]
}

/// Never a 500, never a trace of the server's insides, always a request id.
fn sane(answers: &[Answer]) {
    for a in answers {
        assert!(!a.status.is_server_error(), "{}: {} {}", a.what, a.status, a.text);
        let lower = a.text.to_lowercase();
        for bad in ["panicked", "stack backtrace", "rust_backtrace", ".rs:", "sqlx", "syntax error"] {
            assert!(!lower.contains(bad), "{}: body mentions {bad}: {}", a.what, a.text);
        }
        assert!(a.headers.contains_key("x-request-id"), "{}: no x-request-id", a.what);
    }
}

fn booking_body(c: &Value, m: &Value) -> Value {
    json!({
        "client_id": c["id"],
        "model_id": m["id"],
        "start_at": fixtures::at(3 * 24 * 60),
        "duration_minutes": 120,
        "location": "London W1",
        "price": {"amount": 30000, "currency": "GBP"},
        "deposit": {"amount": 5000, "currency": "GBP"}
    })
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

both_engines!(malformed_bodies_are_4xx_and_write_nothing, async |app: TestApp| {
    let token = app.login("admin@virel.com").await;
    let c = fixtures::client(&app, &token).await;
    let m = fixtures::model(&app, &token).await;
    let draft = fixtures::booking_for(&app, &token, &m["id"], &c["id"], 5 * 24 * 60, "draft").await;
    let draft_id = draft["id"].as_str().unwrap().to_string();
    let before = counts(&app).await;
    let mut all = Vec::new();

    let inquiry = json!({
        "source": "web",
        "client_id": c["id"],
        "requested_start": fixtures::at(24 * 60),
        "duration_minutes": 120,
        "location": "London W1",
        "budget": {"amount": 40000, "currency": "GBP"}
    });

    // Not JSON, or not the right JSON: 400.
    for body in ["{bad", "", "[]", "null", "\"just a string\"", "{\"source\": \"web\","] {
        let a = post_json(&app, &token, "/inquiries", body).await;
        assert_eq!(a.code(400), "bad_request", "{body:?}");
        all.push(a);
    }
    // Nested too deep for any parser to walk safely.
    let deep = format!("{{\"source\":\"web\",\"preferences\":{}{}}}", "[".repeat(20_000), "]".repeat(20_000));
    let a = post_json(&app, &token, "/inquiries", &deep).await;
    a.error(400);
    all.push(a);
    // Wrong types and forms: well-formed JSON, invalid values, each named (422).
    for (key, value) in [
        ("duration_minutes", json!("abc")),
        ("duration_minutes", json!(1.5)),
        ("requested_start", json!("tomorrow evening")),
        ("budget", json!("lots")),
        ("client_id", json!("not-a-uuid")),
        ("client", json!(["Jane"])),
    ] {
        let a = post_value(&app, &token, "/inquiries", with(inquiry.clone(), key, value.clone())).await;
        assert_eq!(a.code(422), "validation_failed", "{key}: {value}");
        assert!(a.json()["error"]["details"]["field"].as_str().is_some_and(|f| f.starts_with(key)), "{}", a.text);
        all.push(a);
    }
    for (key, value) in [
        ("start_at", json!("yesterday")),
        ("price", json!({"amount": "300", "currency": "GBP"})),
        ("model_id", json!(null)),
    ] {
        let a = post_value(&app, &token, "/bookings", with(booking_body(&c, &m), key, value.clone())).await;
        assert_eq!(a.code(422), "validation_failed", "{key}: {value}");
        assert!(a.json()["error"]["details"]["field"].as_str().is_some_and(|f| f.starts_with(key)), "{}", a.text);
        all.push(a);
    }
    // Numbers far beyond their documented bounds: well-formed, out of range, named.
    for (path, body, field) in [
        ("/inquiries", with(inquiry.clone(), "duration_minutes", json!(1e30)), "duration_minutes"),
        (
            "/bookings",
            with(
                booking_body(&c, &m),
                "price",
                json!({"amount": 99999999999999999999999u128 as f64, "currency": "GBP"}),
            ),
            "price.amount",
        ),
    ] {
        let a = post_value(&app, &token, path, body).await;
        assert_eq!(a.code(422), "validation_failed", "{field}");
        assert_eq!(a.json()["error"]["details"]["field"], field, "{}", a.text);
        all.push(a);
    }
    // A body that is not JSON at all.
    let a = raw(&app, reqwest::Method::POST, "/inquiries", Some(&token), Some(("text/plain", b"source=web".to_vec())))
        .await;
    assert!(a.status.is_client_error(), "{}", a.text);
    a.error_shape();
    all.push(a);

    // A number where a string is expected: poem-openapi reads it as text, then it is checked.
    let a = post_value(&app, &token, "/inquiries", with(inquiry.clone(), "source", json!(42))).await;
    assert!(matches!(a.status.as_u16(), 400 | 422), "{}", a.text);
    a.error_shape();
    all.push(a);
    // Unknown enum values.
    let a = post_value(&app, &token, "/inquiries", with(inquiry.clone(), "source", json!("carrier_pigeon"))).await;
    assert!(matches!(a.status.as_u16(), 400 | 422), "{}", a.text);
    a.error_shape();
    all.push(a);
    let a = post_value(&app, &token, "/bookings", with(booking_body(&c, &m), "status", json!("teleported"))).await;
    assert!(matches!(a.status.as_u16(), 400 | 422), "{}", a.text);
    a.error_shape();
    all.push(a);
    let a = post_value(&app, &token, &format!("/bookings/{draft_id}/status"), json!({"status": "teleported"})).await;
    assert!(matches!(a.status.as_u16(), 400 | 422), "{}", a.text);
    a.error_shape();
    all.push(a);
    let a = post_value(&app, &token, "/tasks", json!({"type": "juggle", "title": "x"})).await;
    assert!(matches!(a.status.as_u16(), 400 | 422), "{}", a.text);
    all.push(a);

    // Well-formed but invalid: 422.
    for (key, value) in [
        ("duration_minutes", json!(-60)),
        ("duration_minutes", json!(0)),
        ("duration_minutes", json!(i64::MAX)),
        ("price", json!({"amount": -1, "currency": "GBP"})),
        ("price", json!({"amount": 30000, "currency": "pounds"})),
        ("price", json!({"amount": 30000, "currency": "gbp"})),
        ("deposit", json!({"amount": -5, "currency": "GBP"})),
        ("deposit", json!({"amount": 40000, "currency": "GBP"})),
    ] {
        let a = post_value(&app, &token, "/bookings", with(booking_body(&c, &m), key, value.clone())).await;
        assert_eq!(a.code(422), "validation_failed", "{key}: {value}");
        all.push(a);
    }
    // A reference to nothing is 404, like a path to nothing.
    let a = post_value(&app, &token, "/bookings", with(booking_body(&c, &m), "client_id", json!(uuid::Uuid::now_v7())))
        .await;
    assert_eq!(a.code(404), "not_found");
    all.push(a);
    for (key, value) in [
        ("duration_minutes", json!(-5)),
        ("budget", json!({"amount": -1, "currency": "GBP"})),
        ("budget", json!({"amount": 1, "currency": "pounds"})),
    ] {
        let a = post_value(&app, &token, "/inquiries", with(inquiry.clone(), key, value.clone())).await;
        assert_eq!(a.code(422), "validation_failed", "{key}: {value}");
        all.push(a);
    }

    // Bad and unknown ids: an id that cannot be one names nothing either.
    for path in
        ["/bookings/not-a-uuid", "/clients/123", "/inquiries/%20", "/tasks/zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"]
    {
        let a = get(&app, Some(&token), path).await;
        assert_eq!(a.code(404), "not_found", "{path}");
        all.push(a);
    }
    let a = post_value(&app, &token, "/bookings/not-a-uuid/status", json!({"status": "pending"})).await;
    assert_eq!(a.code(404), "not_found");
    all.push(a);
    let unknown = uuid::Uuid::now_v7();
    for path in ["/bookings", "/clients", "/inquiries", "/tasks", "/exceptions", "/models"] {
        let a = get(&app, Some(&token), &format!("{path}/{unknown}")).await;
        assert_eq!(a.code(404), "not_found", "{path}");
        all.push(a);
    }
    let a = post_value(&app, &token, &format!("/bookings/{unknown}/status"), json!({"status": "pending"})).await;
    assert_eq!(a.code(404), "not_found");
    all.push(a);
    let a = post_value(&app, &token, &format!("/tasks/{unknown}/status"), json!({"status": "done"})).await;
    assert_eq!(a.code(404), "not_found");
    all.push(a);

    assert_eq!(counts(&app).await, before, "nothing written by bad input");
    let (_, b) = app.get(&token, &format!("/bookings/{draft_id}")).await;
    assert_eq!(b["status"], "draft");
    assert_eq!(b["version"], draft["version"]);
    sane(&all);
});

both_engines!(bad_list_parameters_are_400, async |app: TestApp| {
    let token = app.login("admin@virel.com").await;
    let before = counts(&app).await;
    let mut all = Vec::new();
    for list in ["/clients", "/bookings", "/inquiries", "/tasks", "/exceptions", "/models", "/users", "/audit"] {
        for q in [
            "limit=100000",
            "limit=201",
            "limit=0",
            "limit=-1",
            "limit=99999999999999999999999",
            "limit=abc",
            "limit=1.5",
            "cursor=not-a-cursor!!",
            "cursor=AAAA",
            "cursor=%00%01",
            "cursor=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            let a = get(&app, Some(&token), &format!("{list}?{q}")).await;
            assert_eq!(a.code(400), "bad_request", "{list}?{q}: {}", a.text);
            all.push(a);
        }
        for q in ["limit=1", "limit=200"] {
            let a = get(&app, Some(&token), &format!("{list}?{q}")).await;
            assert_eq!(a.status, StatusCode::OK, "{list}?{q}: {}", a.text);
            all.push(a);
        }
    }
    for q in ["status=teleported", "model_id=nope"] {
        let a = get(&app, Some(&token), &format!("/bookings?{q}")).await;
        assert!(matches!(a.status.as_u16(), 400 | 422), "{q}: {}", a.text);
        a.error_shape();
        all.push(a);
    }
    assert_eq!(counts(&app).await, before);
    sane(&all);
});

both_engines!(oversized_bodies_are_413, async |app: TestApp| {
    let token = app.login("admin@virel.com").await;
    let before = counts(&app).await;
    let mut all = Vec::new();
    let big = "x".repeat(1024 * 1024 + 100 * 1024);
    let body = json!({
        "source": "web",
        "client": {"name": "Big Notes", "phone": "+447700111222"},
        "notes": big
    });
    // With reqwest and a declared content-length. The server answers before reading the body
    // and closes the connection, so under load the client may lose the answer while it is still
    // writing (reported; `a_client_sending_too_much_reads_the_413` pins it down): a cut
    // connection is tried again, and each case must get its answer, the 413, within a few tries.
    let json_body = body.to_string().into_bytes();
    let login_body = json!({"email": big, "password": "x"}).to_string().into_bytes();
    let cases = [("/inquiries", Some(token.as_str()), json_body), ("/auth/login", None, login_body)];
    let mut answered = Vec::new();
    for (path, token, bytes) in &cases {
        let mut cut = Vec::new();
        for _ in 0..10 {
            match try_raw(&app, reqwest::Method::POST, path, *token, Some(("application/json", bytes.clone()))).await {
                Ok(a) => {
                    assert_eq!(a.code(413), "payload_too_large", "{path}: {}", a.text);
                    all.push(a);
                    answered.push(*path);
                    break;
                }
                Err(e) => cut.push(e),
            }
        }
        assert!(answered.last() == Some(path), "{path}: no answer in {} tries: {cut:?}", cut.len());
    }
    assert_eq!(answered, ["/inquiries", "/auth/login"], "each declared-length case was answered");
    assert_eq!(counts(&app).await, before, "the refused bodies wrote nothing");
    // Just under the limit is not refused for its size.
    let under = json!({"source": "web", "client": {"name": "Many Notes", "phone": "+447700111333"}, "notes": "y".repeat(1000 * 1024)});
    let a = post_value(&app, &token, "/inquiries", under).await;
    assert_ne!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text);
    all.push(a);
    let after_under = counts(&app).await;

    // A chunked body without content-length, spoken over a raw socket.
    let payload = body.to_string().into_bytes();
    let a = socket_post(&app, &token, "/inquiries", payload.clone(), true).await;
    assert_eq!(a.status, 413, "{}", a.body);
    let v: Value = serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{e}: {}", a.body));
    assert_eq!(v["error"]["code"], "payload_too_large", "{v}");
    assert!(a.head.contains("x-request-id:"), "{}", a.head);
    // The same with a declared length, far bigger than the limit.
    let huge = json!({"source": "web", "notes": "z".repeat(4 * 1024 * 1024)});
    let a = socket_post(&app, &token, "/inquiries", huge.to_string().into_bytes(), false).await;
    assert_eq!(a.status, 413, "{}", a.body);
    let v: Value = serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{e}: {}", a.body));
    assert_eq!(v["error"]["code"], "payload_too_large", "{v}");
    // A small chunked body goes through as usual.
    let small = json!({"name": "Chunky Client", "phone": "+447700111444", "preferred_channel": "sms"});
    let a = socket_post(&app, &token, "/clients", small.to_string().into_bytes(), true).await;
    assert_eq!(a.status, 201, "{}", a.body);

    let mut expected = after_under.clone();
    expected[2] += 1; // the small chunked client
    let now = counts(&app).await;
    assert_eq!(now[0], expected[0], "no inquiry from the refused bodies");
    assert_eq!(now[2], expected[2]);
    sane(&all);
});

/// An answer read off a raw socket.
struct SocketAnswer {
    status: u16,
    /// The response head, lower-cased.
    head: String,
    body: String,
}

/// POSTs `body` over a raw socket, `chunked` (no content-length) or with its content-length,
/// reading the answer while still writing (a server may answer before the body is sent).
async fn socket_post(app: &TestApp, token: &str, path: &str, body: Vec<u8>, chunked: bool) -> SocketAnswer {
    let addr = app.base.trim_start_matches("http://").trim_end_matches("/api/v1").to_string();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let framing =
        if chunked { "Transfer-Encoding: chunked".to_string() } else { format!("Content-Length: {}", body.len()) };
    let head = format!(
        "POST /api/v1{path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\n{framing}\r\nConnection: close\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        for chunk in body.chunks(64 * 1024) {
            if chunked {
                wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
            }
            wr.write_all(chunk).await?;
            if chunked {
                wr.write_all(b"\r\n").await?;
            }
        }
        if chunked {
            wr.write_all(b"0\r\n\r\n").await?;
        }
        wr.flush().await?;
        Ok::<_, std::io::Error>(wr)
    });
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(30), rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = writer.await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no response head: {text:?}"));
    let status: u16 =
        head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status line: {head}"));
    let head = head.to_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        rest.to_string()
    };
    SocketAnswer { status, head, body }
}

both_engines!(unknown_routes_and_missing_auth, async |app: TestApp| {
    let token = app.login("admin@virel.com").await;
    let before = counts(&app).await;
    let mut all = Vec::new();
    for path in ["/nope", "/bookings/x/y/z"] {
        let a = get(&app, Some(&token), path).await;
        assert_eq!(a.code(404), "not_found", "{path}");
        all.push(a);
    }
    let root = app.base.trim_end_matches("/api/v1").to_string();
    let resp = app.http.get(format!("{root}/definitely/not/here")).send().await.unwrap();
    let a = Answer {
        what: "GET /definitely/not/here".into(),
        status: resp.status(),
        headers: resp.headers().clone(),
        text: resp.text().await.unwrap(),
    };
    assert_eq!(a.code(404), "not_found");
    all.push(a);
    let a = raw(&app, reqwest::Method::DELETE, "/bookings", Some(&token), None).await;
    assert!(matches!(a.status.as_u16(), 404 | 405), "{}", a.text);
    a.error_shape();
    all.push(a);

    // No token, a garbage token, a tampered token, another scheme.
    for path in ["/bookings", "/me", "/clients"] {
        let a = get(&app, None, path).await;
        assert_eq!(a.code(401), "unauthorized", "{path}");
        all.push(a);
    }
    let a = post_value(&app, "garbage", "/bookings", json!({})).await;
    assert_eq!(a.code(401), "unauthorized");
    all.push(a);
    let a = raw(&app, reqwest::Method::POST, "/inquiries", None, Some(("application/json", b"{}".to_vec()))).await;
    assert_eq!(a.code(401), "unauthorized");
    all.push(a);
    for bad in ["garbage", "a.b.c", "", "Bearer"] {
        let a = get(&app, Some(bad), "/bookings").await;
        assert_eq!(a.code(401), "unauthorized", "token {bad:?}");
        all.push(a);
    }
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let a = get(&app, Some(&tampered), "/me").await;
    assert_eq!(a.code(401), "unauthorized");
    all.push(a);
    // A token whose claims were edited (role raised) without a valid signature.
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], parts[1].chars().rev().collect::<String>(), parts[2]);
    let a = get(&app, Some(&forged), "/me").await;
    assert_eq!(a.code(401), "unauthorized");
    all.push(a);
    let resp = app
        .http
        .get(format!("{}/me", app.base))
        .header("authorization", "Basic YWRtaW5AdmlyZWwuY29tOnBhc3N3b3JkMTIz")
        .send()
        .await
        .unwrap();
    let a = Answer {
        what: "Basic auth".into(),
        status: resp.status(),
        headers: resp.headers().clone(),
        text: resp.text().await.unwrap(),
    };
    assert_eq!(a.code(401), "unauthorized");
    all.push(a);

    assert_eq!(counts(&app).await, before);
    sane(&all);
});

both_engines!(every_answer_carries_a_request_id, async |app: TestApp| {
    let token = app.login("admin@virel.com").await;
    let root = app.base.trim_end_matches("/api/v1").to_string();
    let mut seen = std::collections::HashSet::new();
    let urls = [
        format!("{}/health", app.base),
        format!("{}/me", app.base),
        format!("{}/nope", app.base),
        format!("{}/bookings/not-a-uuid", app.base),
        format!("{root}/nowhere"),
        format!("{}/openapi.json", app.base),
    ];
    for url in &urls {
        for auth in [true, false] {
            let mut req = app.http.get(url);
            if auth {
                req = req.bearer_auth(&token);
            }
            let resp = req.send().await.unwrap();
            let id = resp
                .headers()
                .get("x-request-id")
                .unwrap_or_else(|| panic!("{url}: no x-request-id"))
                .to_str()
                .unwrap()
                .to_string();
            assert!(!id.is_empty(), "{url}");
            assert!(seen.insert(id.clone()), "{url}: request ids are unique: {id}");
        }
    }
    // Malformed and oversized bodies too.
    let resp = app
        .http
        .post(format!("{}/inquiries", app.base))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{bad")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().contains_key("x-request-id"));
    let a = socket_post(&app, &token, "/inquiries", vec![b' '; 2 * 1024 * 1024], false).await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(a.head.contains("x-request-id:"), "{}", a.head);

    // The caller's id is echoed, on success and on error.
    for (url, expect) in [
        (format!("{}/me", app.base), StatusCode::OK),
        (format!("{}/nope", app.base), StatusCode::NOT_FOUND),
        // An id that cannot be one names nothing.
        (format!("{}/bookings/not-a-uuid", app.base), StatusCode::NOT_FOUND),
    ] {
        let resp = app.http.get(&url).bearer_auth(&token).header("x-request-id", "trace-abc-123").send().await.unwrap();
        assert_eq!(resp.status(), expect, "{url}");
        assert_eq!(resp.headers()["x-request-id"], "trace-abc-123", "{url}");
    }
    // ... and lands in the audit entry of the request.
    let resp = app
        .http
        .post(format!("{}/auth/login", app.base))
        .header("x-request-id", "login-trace-42")
        .json(&json!({"email": "tommy@virel.com", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-request-id"], "login-trace-42");
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'auth.login' AND request_id = 'login-trace-42'")
            .await,
        1
    );
    // An unusable id (too long, or with spaces) is replaced, not echoed.
    for bad in ["x".repeat(300), "has spaces in it".to_string()] {
        let resp =
            app.http.get(format!("{}/health", app.base)).header("x-request-id", bad.as_str()).send().await.unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(!id.is_empty());
        assert_ne!(id, bad);
    }
});

both_engines!(a_client_sending_too_much_reads_the_413, async |app: TestApp| {
    // An ordinary HTTP client sends its whole (8 MiB) body before reading the answer. The 413
    // must reach it: a server that answers early has to drain (or linger on) the rest of the
    // body instead of closing the connection under the client's feet.
    let token = app.login("admin@virel.com").await;
    let body = json!({"source": "web", "notes": "x".repeat(8 * 1024 * 1024)}).to_string().into_bytes();
    for attempt in 0..3 {
        let r =
            try_raw(&app, reqwest::Method::POST, "/inquiries", Some(&token), Some(("application/json", body.clone())))
                .await;
        match r {
            Ok(a) => assert_eq!(a.code(413), "payload_too_large", "attempt {attempt}"),
            Err(e) => panic!("attempt {attempt}: the client never saw the 413: {e:?}"),
        }
    }
});

both_engines!(idempotency_keys_replay_and_refuse_reuse, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let body = json!({"name": "Idem Potent", "phone": "+447700555001", "email": "idem@example.com"});
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
    let before = app.count("SELECT COUNT(*) AS n FROM clients").await;
    let (s1, r1, b1) = send("key-1", &body).await;
    assert_eq!(s1, reqwest::StatusCode::CREATED, "{b1}");
    assert!(!r1);
    let (s2, r2, b2) = send("key-1", &body).await;
    assert_eq!(s2, reqwest::StatusCode::CREATED);
    assert!(r2, "the second answer is a replay");
    assert_eq!(b1["id"], b2["id"], "same answer, no second client");
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM clients").await, before + 1);
    let mut other = body.clone();
    other["name"] = json!("Someone Else");
    let (s3, _, b3) = send("key-1", &other).await;
    assert_eq!(s3, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{b3}");
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM clients").await, before + 1, "nothing written");
    // A refused request (409 duplicate) is replayed too; a fresh key runs the work again.
    let (s4, _, _) = send("key-2", &body).await;
    assert_eq!(s4, reqwest::StatusCode::CONFLICT, "the same phone is a duplicate client");
});
