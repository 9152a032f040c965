//! The HTTP edge: request ids on every log line, no secrets in the logs, no panics under
//! concurrent connections, body caps however a body is framed, cookies only from the same
//! origin, auth answers never stored, notes only on visible subjects, a terse health check.

use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::both_engines;
use crate::harness::TestApp;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `virel` binary in its embedded mode (SQLite, demo data) in a temporary directory, its
/// stdout and stderr written to one log file.
struct Spawned {
    child: Child,
    base: String,
    log: std::path::PathBuf,
    dir: std::path::PathBuf,
    /// The PostgreSQL database and Redis prefix of a scaled one, dropped with it.
    _scaled: Option<(crate::harness::GuardHandle, crate::harness::RedisGuard)>,
}

impl Spawned {
    async fn start() -> Spawned {
        Spawned::start_with(vec![], None).await
    }

    /// `virel all` on a fresh PostgreSQL database (migrated, demo data) and Redis prefix.
    async fn start_scaled() -> Spawned {
        let (_db, guard) = crate::harness::fresh_db(crate::harness::Engine::Postgres).await;
        let prefix = format!("virel-test-{}", uuid::Uuid::now_v7().simple());
        let redis = crate::harness::RedisGuard { url: crate::harness::redis_url(), prefix: prefix.clone() };
        let env = vec![
            ("DATABASE_URL".to_string(), guard.1.clone()),
            ("REDIS_URL".to_string(), crate::harness::redis_url()),
            ("VIREL_QUEUE_PREFIX".to_string(), prefix),
        ];
        Spawned::start_with(env, Some((guard, redis))).await
    }

    async fn start_with(
        env: Vec<(String, String)>,
        scaled: Option<(crate::harness::GuardHandle, crate::harness::RedisGuard)>,
    ) -> Spawned {
        let dir = std::env::temp_dir().join(format!("virel-edge-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("virel.log");
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_virel"))
            .arg("all")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env("VIREL_DATA_DIR", dir.join("data"))
            .env("VIREL_BIND", format!("127.0.0.1:{port}"))
            .env("JWT_SECRET", "edge-test-secret-edge-test-secret-edge")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn virel");
        let base = format!("http://127.0.0.1:{port}/api/v1");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while http.get(format!("{base}/health")).send().await.map(|r| r.status() != StatusCode::OK).unwrap_or(true) {
            assert!(Instant::now() < deadline, "virel came up: {}", std::fs::read_to_string(&log).unwrap_or_default());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Spawned { child, base, log, dir, _scaled: scaled }
    }

    /// The log so far, without terminal colour codes.
    fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    async fn login(&self, http: &reqwest::Client, email: &str) -> String {
        let r = http
            .post(format!("{}/auth/login", self.base))
            .json(&json!({"email": email, "password": "password123"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_log_line_of_a_request_carries_its_id_and_no_secret() {
    let app = Spawned::start().await;
    let http = reqwest::Client::new();
    let token = app.login(&http, "admin@virel.com").await;
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let id = |n: &str| format!("abc-{n}-{tag}");

    // A few kinds of request, each with its own id.
    let r = http.get(format!("{}/health", app.base)).header("x-request-id", id("health")).send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], id("health").as_str(), "the caller's id is echoed");
    let r = http
        .post(format!("{}/auth/login", app.base))
        .header("x-request-id", id("login"))
        .json(&json!({"email": "admin@virel.com", "password": "wrong-password-for-the-log"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .get(format!("{}/action-center?mine=true", app.base))
        .header("x-request-id", id("list"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http.get(format!("{}/no-such-route", app.base)).header("x-request-id", id("404")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The live feed with its token in the query string.
    {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}/ws?token={token}", app.base.replacen("http://", "ws://", 1));
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert("x-request-id", id("ws").parse().unwrap());
        let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.expect("websocket connects");
        assert_eq!(resp.headers()["x-request-id"], id("ws").as_str());
        let _ = crate::action_center::next_json(&mut ws, Duration::from_secs(5)).await;
        let _ = ws.close(None).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = app.log();
    app.stop().await;

    for n in ["health", "login", "list", "404", "ws"] {
        let want = id(n);
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(&want)).collect();
        assert!(
            lines.iter().any(|l| l.contains("status=") && l.contains("path=/api/v1/")),
            "the response line of {n} carries its id {want}:\n{log}"
        );
    }
    // Every access-log line is inside a request's span.
    for l in log.lines().filter(|l| l.contains("status=") && l.contains("path=")) {
        assert!(l.contains("request_id="), "an access-log line without a request id: {l}");
    }
    // Nothing secret, and no query strings.
    for secret in [token.as_str(), "wrong-password-for-the-log", "token=", "Bearer ", "mine=true"] {
        assert!(!log.contains(secret), "the log holds {secret:?}:\n{log}");
    }
    assert!(!log.contains("panicked"), "{log}");
}

/// At the most verbose level too (`RUST_LOG=trace`, every crate), no password, access or
/// refresh token, Authorization or Cookie value reaches the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_in_the_log_even_at_trace() {
    let app = Spawned::start_with(vec![("RUST_LOG".into(), "trace".into())], None).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/auth/login", app.base))
        .json(&json!({"email": "admin@virel.com", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    let (access, refresh) =
        (b["access_token"].as_str().unwrap().to_string(), b["refresh_token"].as_str().unwrap().to_string());
    let r =
        http.post(format!("{}/auth/refresh", app.base)).json(&json!({"refresh_token": refresh})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    let (access2, refresh2) =
        (b["access_token"].as_str().unwrap().to_string(), b["refresh_token"].as_str().unwrap().to_string());
    let r =
        http.get(format!("{}/me", app.base)).header("cookie", format!("virel_session={access2}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "a read with the session cookie");
    {
        let url = format!("{}/ws?token={access2}", app.base.replacen("http://", "ws://", 1));
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("the live feed connects");
        let first = crate::action_center::next_json(&mut ws, Duration::from_secs(5)).await.expect("a first message");
        assert_eq!(first["type"], "snapshot", "{first}");
        let _ = ws.close(None).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = app.log();
    app.stop().await;
    assert!(log.lines().count() > 20, "trace logging is on: {log}");
    for (what, secret) in [
        ("password", "password123"),
        ("access token", access.as_str()),
        ("refresh token", refresh.as_str()),
        ("rotated access token", access2.as_str()),
        ("rotated refresh token", refresh2.as_str()),
    ] {
        assert!(!log.contains(secret), "the {what} is in the trace log");
    }
    // A JWT's signature part alone must not leak either.
    let signature = access2.rsplit('.').next().unwrap();
    assert!(!log.contains(signature), "part of the access token is in the trace log");
}

/// `VIREL_LOG_FORMAT=json`: one JSON object per line, no colour codes, the request id on the
/// request's lines (the access-log line included).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_logs_are_one_object_per_line_with_the_request_id() {
    let app = Spawned::start_with(vec![("VIREL_LOG_FORMAT".into(), "json".into())], None).await;
    let http = reqwest::Client::new();
    let id = format!("json-{}", uuid::Uuid::now_v7().simple());
    let r = http.get(format!("{}/health", app.base)).header("x-request-id", &id).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let raw = std::fs::read_to_string(&app.log).unwrap();
    app.stop().await;
    assert!(!raw.contains('\u{1b}'), "no terminal colour codes when the output is a file");
    let lines: Vec<Value> = raw
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(lines.len() > 2, "{raw}");
    let mine: Vec<&Value> = lines.iter().filter(|v| v.to_string().contains(&id)).collect();
    assert!(!mine.is_empty(), "the request's lines carry its id: {raw}");
    assert!(
        mine.iter().any(|v| v["fields"]["status"] == 200 || v.to_string().contains("\"status\":200")),
        "the access-log line is among them: {mine:?}"
    );
}

/// Twenty connections of reads and writes for `VIREL_TEST_LOAD_SECS` (default 15; the
/// recorded long run is 60): no request fails, none answers 5xx, and the log holds no panic.
async fn mixed_load_raises_no_panic(app: Spawned) {
    let secs: u64 = std::env::var("VIREL_TEST_LOAD_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    let token = app.login(&reqwest::Client::new(), "admin@virel.com").await;
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for n in 0..20 {
        let (base, token) = (app.base.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            // One client per task: its own connection.
            let http = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
            let mut done = 0u32;
            while Instant::now() < until {
                let r = match done % 5 {
                    0 => http.get(format!("{base}/health")).send().await,
                    1 => http.get(format!("{base}/me")).bearer_auth(&token).send().await,
                    2 => http.get(format!("{base}/action-center")).bearer_auth(&token).send().await,
                    3 => {
                        let body = json!({"source": "phone", "notes": format!("load {n}.{done}")});
                        http.post(format!("{base}/inquiries")).bearer_auth(&token).json(&body).send().await
                    }
                    _ => http.get(format!("{base}/inquiries?limit=5")).bearer_auth(&token).send().await,
                };
                let r = r.unwrap_or_else(|e| panic!("task {n}: request failed: {e}"));
                assert!(!r.status().is_server_error(), "task {n}: {}", r.status());
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("a load task");
    }
    let log = app.log();
    app.stop().await;
    assert!(total > 100, "the load ran ({total} requests)");
    assert!(!log.contains("panicked"), "a panic under load:\n{}", &log[log.find("panicked").unwrap_or(0)..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn busy_connections_raise_no_panic_embedded() {
    mixed_load_raises_no_panic(Spawned::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn busy_connections_raise_no_panic_postgres_redis() {
    mixed_load_raises_no_panic(Spawned::start_scaled().await).await;
}

/// A 3 MiB JSON-looking body, sent as a stream: no `Content-Length` (HTTP/2 DATA frames, or
/// chunked over HTTP/1.1).
fn streamed_body(mib: usize) -> reqwest::Body {
    let mut chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(br#"{"source": "phone", "notes": ""#.to_vec())];
    for _ in 0..(mib * 16) {
        chunks.push(Ok(vec![b'x'; 64 * 1024]));
    }
    chunks.push(Ok(br#""}"#.to_vec()));
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

both_engines!(bodies_over_a_mebibyte_are_refused_over_http2_too, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let before = app.count("SELECT COUNT(*) AS n FROM inquiries").await;
    for (path, token) in [("/inquiries", Some(admin.as_str())), ("/auth/login", None)] {
        let mut req = h2.post(format!("{}{path}", app.base)).header("content-type", "application/json");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.body(streamed_body(3)).send().await.expect("an answer over h2c");
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["error"]["code"], "payload_too_large", "{path}: {b}");
    }
    // A small body over h2c still works.
    let r = h2
        .post(format!("{}/inquiries", app.base))
        .bearer_auth(&admin)
        .json(&json!({"source": "phone", "client": {"name": "H Two", "phone": "+447700900555"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM inquiries").await, before + 1, "nothing oversized was stored");
});

both_engines!(auth_answers_never_enter_the_idempotency_store, async |app: TestApp| {
    let before = app.count("SELECT COUNT(*) AS n FROM idempotency_keys").await;
    let mut refresh = Vec::new();
    for _ in 0..2 {
        let r = app
            .http
            .post(format!("{}/auth/login", app.base))
            .header("idempotency-key", "login-key-1")
            .json(&json!({"email": "admin@virel.com", "password": "password123"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().get("idempotent-replayed").is_none(), "a login is never replayed");
        let b: Value = r.json().await.unwrap();
        refresh.push(b["refresh_token"].as_str().unwrap().to_string());
    }
    assert_ne!(refresh[0], refresh[1]);
    let r = app
        .http
        .post(format!("{}/auth/refresh", app.base))
        .header("idempotency-key", "refresh-key-1")
        .json(&json!({"refresh_token": refresh[1]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM idempotency_keys").await, before, "no tokens at rest");
});

fn host_of(base: &str) -> String {
    base.trim_start_matches("http://").split('/').next().unwrap().to_string()
}

both_engines!(the_session_cookie_writes_only_from_the_same_origin, async |app: TestApp| {
    let token = app.login("admin@virel.com").await;
    let cookie = format!("virel_session={token}");
    let host = host_of(&app.base);
    let tasks = || app.count("SELECT COUNT(*) AS n FROM tasks");
    let before = tasks().await;
    let post = |headers: Vec<(&'static str, String)>, bearer: bool| {
        let mut r =
            app.http.post(format!("{}/tasks", app.base)).json(&json!({"type": "custom", "title": "csrf probe"}));
        r = if bearer { r.bearer_auth(&token) } else { r.header("cookie", cookie.clone()) };
        for (k, v) in headers {
            r = r.header(k, v);
        }
        async move {
            let resp = r.send().await.unwrap();
            let s = resp.status();
            (s, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Another site, by Sec-Fetch-Site or by Origin: refused with the error shape.
    for headers in [
        vec![("sec-fetch-site", "cross-site".to_string())],
        vec![("sec-fetch-site", "same-site".to_string())],
        vec![("origin", "http://evil.example".to_string())],
        vec![("origin", format!("http://{host}.evil.example"))],
        vec![("origin", "null".to_string())],
    ] {
        let (s, b) = post(headers.clone(), false).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{headers:?}: {b}");
        assert_eq!(b["error"]["code"], "forbidden", "{b}");
    }
    assert_eq!(tasks().await, before, "nothing written from another site");
    // Reads with the cookie still work from anywhere (no side effects).
    let r = app
        .http
        .get(format!("{}/me", app.base))
        .header("cookie", cookie.clone())
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The same origin writes.
    let (s, b) =
        post(vec![("sec-fetch-site", "same-origin".into()), ("origin", format!("http://{host}"))], false).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // A bearer token is not a cookie: unaffected.
    let (s, b) =
        post(vec![("sec-fetch-site", "cross-site".into()), ("origin", "http://evil.example".into())], true).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // WebSocket upgrades: another site's Origin is refused, whatever the credential.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let ws_url = format!("{}/ws", app.base.replacen("http://", "ws://", 1));
    let upgrade = |query: bool, cookie: bool, origin: String| {
        let url = if query { format!("{ws_url}?token={token}") } else { ws_url.clone() };
        let mut req = url.into_client_request().unwrap();
        if cookie {
            req.headers_mut().insert("cookie", format!("virel_session={token}").parse().unwrap());
        }
        req.headers_mut().insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(req)
    };
    for (query, cookie) in [(false, true), (true, false)] {
        match upgrade(query, cookie, "http://evil.example".into()).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), StatusCode::FORBIDDEN, "query={query} cookie={cookie}")
            }
            other => panic!("query={query} cookie={cookie}: a cross-site upgrade was not refused: {:?}", other.is_ok()),
        }
        let (mut ws, _) = upgrade(query, cookie, format!("http://{host}")).await.expect("the same origin connects");
        let first = crate::action_center::next_json(&mut ws, Duration::from_secs(5)).await.unwrap();
        assert_eq!(first["type"], "snapshot");
    }
});

both_engines!(an_operator_annotates_only_what_they_may_see, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let sasha = app.user_id("sasha@virel.com").await;
    let lukas = app.login("lukas@virel.com").await;
    let theirs =
        app.ok(&admin, "/tasks", json!({"type": "custom", "title": "Sasha's", "assignee_id": sasha}), 201).await;
    let open = app.ok(&admin, "/tasks", json!({"type": "custom", "title": "Anyone's"}), 201).await;
    let notes = || app.count("SELECT COUNT(*) AS n FROM notes");
    let before = notes().await;
    let (s, b) = app
        .post(Some(&lukas), "/notes", json!({"subject_type": "task", "subject_id": theirs["id"], "text": "not mine"}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(notes().await, before);
    app.ok(&lukas, "/notes", json!({"subject_type": "task", "subject_id": open["id"], "text": "unassigned"}), 201)
        .await;
    app.ok(&admin, "/notes", json!({"subject_type": "task", "subject_id": theirs["id"], "text": "owner"}), 201).await;
});

both_engines!(health_tells_up_or_down_and_nothing_about_hosts, async |app: TestApp| {
    let (s, h) = app.send(reqwest::Method::GET, None, "/health", None).await;
    assert_eq!(s, StatusCode::OK, "{h}");
    let checks = h["checks"].as_object().unwrap();
    for (name, c) in checks {
        let statuses: Vec<&Value> = if name == "channels" {
            c.as_object().unwrap().values().map(|v| &v["status"]).collect()
        } else {
            vec![&c["status"]]
        };
        for st in statuses {
            assert!(matches!(st.as_str(), Some("up" | "down" | "disabled")), "{name}: {c}");
        }
    }
    let text = h.to_string();
    for leak in ["detail", "leader", "lease_until", "virel:", "127.0.0.1", "localhost", "reason", "configured_by"] {
        assert!(!text.contains(leak), "health shows {leak}: {text}");
    }
});

/// Waits for the server to close `ws`; the close reason.
async fn closed_with(ws: &mut crate::action_center::Socket, within: Duration) -> Option<String> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, ws.next()).await.ok()? {
            Some(Ok(Message::Close(frame))) => return Some(frame.map(|f| f.reason.to_string()).unwrap_or_default()),
            Some(Ok(_)) => continue,
            _ => return Some(String::new()),
        }
    }
}

both_engines!(a_live_socket_ends_when_its_user_is_deactivated_or_demoted, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let sasha = app.user_id("sasha@virel.com").await;
    let tommy = app.user_id("tommy@virel.com").await;
    let (mut ws, _) = crate::action_center::connect(&app.base, &app.login("sasha@virel.com").await).await;
    let (st, b) = app.patch(&admin, &format!("/users/{sasha}"), json!({"active": false})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let reason = closed_with(&mut ws, Duration::from_secs(8)).await.expect("the socket closes within seconds");
    assert_eq!(reason, "account deactivated");

    let (mut ws, _) = crate::action_center::connect(&app.base, &app.login("tommy@virel.com").await).await;
    let (st, b) = app.patch(&admin, &format!("/users/{tommy}"), json!({"role": "OPERATOR"})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let reason = closed_with(&mut ws, Duration::from_secs(8)).await.expect("the socket closes within seconds");
    assert_eq!(reason, "role changed");
});
