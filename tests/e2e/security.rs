//! Who sees what: PII masking per role, refused calls (403, audited), operators' own items
//! only, an append-only audit log that never holds secrets.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_engines;
use crate::fixtures;
use crate::harness::TestApp;

const PHONE: &str = "+447700900987";
const PHONE_MASKED: &str = "+44 7*** ***987";
const EMAIL: &str = "jane@example.com";
const EMAIL_MASKED: &str = "j***@example.com";
const TELEGRAM: &str = "@handle";
const TELEGRAM_MASKED: &str = "@ha***";

/// Every raw contact detail of every client, as the OWNER sees them.
async fn raw_contacts(app: &TestApp, admin: &str) -> Vec<String> {
    let (s, b) = app.get(admin, "/clients?limit=200").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let mut out = Vec::new();
    for c in b["items"].as_array().unwrap() {
        for f in ["phone", "email", "telegram"] {
            if let Some(v) = c[f].as_str() {
                out.push(v.to_string());
                if f == "phone" {
                    out.push(v.trim_start_matches('+').to_string());
                }
            }
        }
    }
    assert!(out.iter().any(|v| v == PHONE), "{out:?}");
    out
}

fn assert_no_raw(what: &str, body: &Value, raw: &[String]) {
    let text = body.to_string();
    for r in raw {
        assert!(!text.contains(r.as_str()), "{what} leaks {r}: {text}");
    }
}

fn assert_masked_client(what: &str, c: &Value) {
    assert_eq!(c["name"], "Jane Doe", "{what}: {c}");
    assert_eq!(c["phone"], PHONE_MASKED, "{what}: {c}");
    assert_eq!(c["email"], EMAIL_MASKED, "{what}: {c}");
    assert_eq!(c["telegram"], TELEGRAM_MASKED, "{what}: {c}");
}

fn assert_plain_client(what: &str, c: &Value) {
    assert_eq!(c["name"], "Jane Doe", "{what}: {c}");
    assert_eq!(c["phone"], PHONE, "{what}: {c}");
    assert_eq!(c["email"], EMAIL, "{what}: {c}");
    assert_eq!(c["telegram"], TELEGRAM, "{what}: {c}");
}

async fn get_ok(app: &TestApp, token: &str, path: &str) -> Value {
    let (s, b) = app.get(token, path).await;
    assert_eq!(s, StatusCode::OK, "GET {path}: {b}");
    b
}

fn find<'a>(page: &'a Value, id: &Value) -> &'a Value {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == *id)
        .unwrap_or_else(|| panic!("{id} not listed in {page}"))
}

both_engines!(operators_and_finance_see_masked_contacts_everywhere, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let lukas = app.login("lukas@virel.com").await;
    let finance = app.login("finance@virel.com").await;
    let m = fixtures::model(&app, &admin).await;

    // An operator records an inquiry from a new client: the answer is already masked.
    let (s, inq) = app
        .post(
            Some(&lukas),
            "/inquiries",
            json!({
                "source": "phone",
                "client": {"name": "Jane Doe", "phone": PHONE, "email": EMAIL, "telegram": TELEGRAM},
                "requested_start": fixtures::at(24 * 60),
                "duration_minutes": 120,
                "location": "London W1",
                "model_id": m["id"],
                "budget": {"amount": 40000, "currency": "GBP"}
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{inq}");
    assert_masked_client("POST /inquiries", &inq["client"]);
    let client_id = inq["client_id"].clone();
    let cid = client_id.as_str().unwrap().to_string();
    let iid = inq["id"].as_str().unwrap().to_string();
    let raw = raw_contacts(&app, &admin).await;
    assert_no_raw("POST /inquiries", &inq, &raw);

    // The operator books the client: that answer is masked too.
    let (s, booking) = app
        .post(
            Some(&lukas),
            "/bookings",
            json!({
                "client_id": client_id,
                "model_id": m["id"],
                "start_at": fixtures::at(2 * 24 * 60),
                "duration_minutes": 120,
                "location": "London W1",
                "price": {"amount": 30000, "currency": "GBP"},
                "deposit": {"amount": 5000, "currency": "GBP"}
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{booking}");
    assert_masked_client("POST /bookings", &booking["client"]);
    assert_no_raw("POST /bookings", &booking, &raw);
    let bid = booking["id"].as_str().unwrap().to_string();
    let moved = app.ok(&lukas, &format!("/bookings/{bid}/status"), json!({"status": "pending"}), 200).await;
    assert_masked_client("POST /bookings/{id}/status", &moved["client"]);
    assert_no_raw("POST /bookings/{id}/status", &moved, &raw);
    app.ok(&lukas, "/notes", json!({"subject_type": "booking", "subject_id": bid, "text": "Client called back"}), 201)
        .await;

    // Every read of the operator.
    let clients = get_ok(&app, &lukas, "/clients?limit=200").await;
    assert_masked_client("GET /clients", find(&clients, &client_id));
    assert_no_raw("GET /clients", &clients, &raw);
    let one = get_ok(&app, &lukas, &format!("/clients/{cid}")).await;
    assert_masked_client("GET /clients/{id}", &one);
    assert_no_raw("GET /clients/{id}", &one, &raw);
    let inquiries = get_ok(&app, &lukas, "/inquiries?limit=200").await;
    assert_masked_client("GET /inquiries", &find(&inquiries, &inq["id"])["client"]);
    assert_no_raw("GET /inquiries", &inquiries, &raw);
    let one = get_ok(&app, &lukas, &format!("/inquiries/{iid}")).await;
    assert_masked_client("GET /inquiries/{id}", &one["client"]);
    assert_no_raw("GET /inquiries/{id}", &one, &raw);
    let bookings = get_ok(&app, &lukas, "/bookings?limit=200").await;
    assert_masked_client("GET /bookings", &find(&bookings, &booking["id"])["client"]);
    assert_no_raw("GET /bookings", &bookings, &raw);
    let one = get_ok(&app, &lukas, &format!("/bookings/{bid}")).await;
    assert_masked_client("GET /bookings/{id}", &one["client"]);
    assert_no_raw("GET /bookings/{id}", &one, &raw);
    let timeline = get_ok(&app, &lukas, &format!("/bookings/{bid}/timeline")).await;
    assert_masked_client("timeline", &timeline["booking"]["client"]);
    assert!(!timeline["events"].as_array().unwrap().is_empty(), "{timeline}");
    assert_no_raw("GET /bookings/{id}/timeline", &timeline, &raw);
    // Every client in every list is masked, not only ours.
    for c in clients["items"].as_array().unwrap() {
        if let Some(p) = c["phone"].as_str() {
            assert!(p.contains("***"), "{c}");
        }
        if let Some(e) = c["email"].as_str() {
            assert!(e.contains("***@"), "{c}");
        }
    }

    // FINANCE: masked contacts, but the (billing) name.
    let one = get_ok(&app, &finance, &format!("/clients/{cid}")).await;
    assert_masked_client("FINANCE GET /clients/{id}", &one);
    assert_no_raw("FINANCE GET /clients/{id}", &one, &raw);
    let list = get_ok(&app, &finance, "/clients?limit=200").await;
    assert_no_raw("FINANCE GET /clients", &list, &raw);
    let one = get_ok(&app, &finance, &format!("/bookings/{bid}")).await;
    assert_masked_client("FINANCE GET /bookings/{id}", &one["client"]);
    let list = get_ok(&app, &finance, "/bookings?limit=200").await;
    assert_masked_client("FINANCE GET /bookings", &find(&list, &booking["id"])["client"]);
    assert_no_raw("FINANCE GET /bookings", &list, &raw);
    let timeline = get_ok(&app, &finance, &format!("/bookings/{bid}/timeline")).await;
    assert_masked_client("FINANCE timeline", &timeline["booking"]["client"]);
    assert_no_raw("FINANCE timeline", &timeline, &raw);

    // The OWNER sees everything as it is.
    let one = get_ok(&app, &admin, &format!("/clients/{cid}")).await;
    assert_plain_client("OWNER GET /clients/{id}", &one);
    let one = get_ok(&app, &admin, &format!("/inquiries/{iid}")).await;
    assert_plain_client("OWNER GET /inquiries/{id}", &one["client"]);
    let one = get_ok(&app, &admin, &format!("/bookings/{bid}")).await;
    assert_plain_client("OWNER GET /bookings/{id}", &one["client"]);
    let timeline = get_ok(&app, &admin, &format!("/bookings/{bid}/timeline")).await;
    assert_plain_client("OWNER timeline", &timeline["booking"]["client"]);
});

async fn forbidden_count(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'forbidden'").await
}

/// Sends one request that must be refused with 403 and audited exactly once.
async fn refused(app: &TestApp, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) {
    let before = forbidden_count(app).await;
    let (s, b) = app.send(method.clone(), Some(token), path, body).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path}: {b}");
    assert_eq!(b["error"]["code"], "forbidden", "{method} {path}: {b}");
    assert!(b["error"]["message"].is_string(), "{b}");
    assert_eq!(forbidden_count(app).await, before + 1, "{method} {path}: one audit row per refused request");
}

both_engines!(refused_calls_are_403_and_audited, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let finance = app.login("finance@virel.com").await;
    let content = app.login("content@virel.com").await;
    let lukas = app.login("lukas@virel.com").await;
    let tommy = app.login("tommy@virel.com").await;
    let finance_id = app.user_id("finance@virel.com").await;
    let c = fixtures::client(&app, &admin).await;
    let m = fixtures::model(&app, &admin).await;
    let draft = fixtures::booking_for(&app, &admin, &m["id"], &c["id"], 3 * 24 * 60, "draft").await;
    let bookings = app.count("SELECT COUNT(*) AS n FROM bookings").await;
    let users = app.count("SELECT COUNT(*) AS n FROM users").await;
    let start = forbidden_count(&app).await;

    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    refused(
        &app,
        &finance,
        post.clone(),
        "/bookings",
        Some(json!({
            "client_id": c["id"],
            "model_id": m["id"],
            "start_at": fixtures::at(4 * 24 * 60),
            "duration_minutes": 120,
            "location": "London W1",
            "price": {"amount": 30000, "currency": "GBP"},
            "deposit": {"amount": 5000, "currency": "GBP"}
        })),
    )
    .await;
    refused(
        &app,
        &finance,
        post.clone(),
        &format!("/bookings/{}/status", draft["id"].as_str().unwrap()),
        Some(json!({"status": "pending"})),
    )
    .await;
    refused(&app, &content, get.clone(), "/clients", None).await;
    refused(&app, &content, get.clone(), "/bookings", None).await;
    let new_user =
        json!({"email": "intruder@virel.com", "name": "Intruder", "role": "OWNER", "password": "long-enough-pw"});
    refused(&app, &lukas, get.clone(), "/audit", None).await;
    refused(&app, &lukas, post.clone(), "/users", Some(new_user.clone())).await;
    refused(&app, &tommy, post.clone(), "/users", Some(new_user)).await;
    assert_eq!(forbidden_count(&app).await, start + 7);

    // Nothing was done.
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM bookings").await, bookings);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM users").await, users);
    let (_, b) = app.get(&admin, &format!("/bookings/{}", draft["id"].as_str().unwrap())).await;
    assert_eq!(b["status"], "draft");

    // The refusals are visible to the OWNER, with who tried.
    let (s, audit) = app.get(&admin, "/audit?action=forbidden&limit=200").await;
    assert_eq!(s, StatusCode::OK, "{audit}");
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len() as i64, start + 7, "{audit}");
    assert_eq!(items.iter().filter(|a| a["actor"] == finance_id.as_str()).count(), 2, "{audit}");
    assert!(items.iter().all(|a| a["action"] == "forbidden"));
});

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
}

both_engines!(operators_see_only_their_own_and_unassigned_tasks, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let lukas = app.login("lukas@virel.com").await;
    let lukas_id = app.user_id("lukas@virel.com").await;
    let sasha_id = app.user_id("sasha@virel.com").await;
    let task = |title: &str, assignee: Option<&str>| json!({"type": "follow_up", "title": title, "priority": "normal", "assignee_id": assignee});
    let sashas = app.ok(&admin, "/tasks", task("Sasha's", Some(&sasha_id)), 201).await;
    let free = app.ok(&admin, "/tasks", task("Free", None), 201).await;
    let free2 = app.ok(&admin, "/tasks", task("Free 2", None), 201).await;
    let sid = sashas["id"].as_str().unwrap();
    let fid = free["id"].as_str().unwrap();
    let f2id = free2["id"].as_str().unwrap();

    let (s, list) = app.get(&lukas, "/tasks?limit=200").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let seen = ids(&list);
    assert!(seen.iter().any(|i| i == fid), "{list}");
    assert!(!seen.iter().any(|i| i == sid), "{list}");
    for t in list["items"].as_array().unwrap() {
        assert!(
            t["assignee_id"].is_null() || t["assignee_id"] == lukas_id.as_str(),
            "an operator's list holds only own and unassigned tasks: {t}"
        );
    }
    // Filtering by another's id does not help either.
    let (_, list) = app.get(&lukas, &format!("/tasks?assignee_id={sasha_id}")).await;
    assert!(!ids(&list).iter().any(|i| i == sid), "{list}");

    let (s, b) = app.get(&lukas, &format!("/tasks/{sid}")).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(b["error"]["code"], "forbidden");
    let (s, b) = app.post(Some(&lukas), &format!("/tasks/{sid}/status"), json!({"status": "in_progress"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, b) = app.post(Some(&lukas), &format!("/tasks/{sid}/assign"), json!({"assignee_id": lukas_id})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "taking another's task: {b}");
    let (s, b) = app.post(Some(&lukas), "/tasks", task("For Sasha", Some(&sasha_id))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "creating work for another: {b}");

    // Claiming is fine; handing work to another operator is not.
    let claimed = app.ok(&lukas, &format!("/tasks/{fid}/assign"), json!({"assignee_id": lukas_id}), 200).await;
    assert_eq!(claimed["assignee_id"], lukas_id.as_str());
    let (s, b) = app.post(Some(&lukas), &format!("/tasks/{f2id}/assign"), json!({"assignee_id": sasha_id})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(b["error"]["code"], "forbidden");
    let (s, b) = app.post(Some(&lukas), &format!("/tasks/{fid}/assign"), json!({"assignee_id": sasha_id})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (_, t) = app.get(&admin, &format!("/tasks/{f2id}")).await;
    assert!(t["assignee_id"].is_null(), "{t}");
    let (_, t) = app.get(&admin, &format!("/tasks/{fid}")).await;
    assert_eq!(t["assignee_id"], lukas_id.as_str(), "{t}");
    let (_, t) = app.get(&admin, &format!("/tasks/{sid}")).await;
    assert_eq!(t["assignee_id"], sasha_id.as_str(), "{t}");
    assert_eq!(t["status"], "open", "{t}");
    // Their own task works as usual.
    app.ok(&lukas, &format!("/tasks/{fid}/status"), json!({"status": "in_progress"}), 200).await;
});

both_engines!(operators_see_only_their_own_and_unassigned_exceptions, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let lukas = app.login("lukas@virel.com").await;
    let lukas_id = app.user_id("lukas@virel.com").await;
    let sasha_id = app.user_id("sasha@virel.com").await;
    let exc = |title: &str, assignee: Option<&str>| json!({"type": "no_show_risk", "title": title, "severity": "high", "assignee_id": assignee});
    let sashas = app.ok(&admin, "/exceptions", exc("Sasha's", Some(&sasha_id)), 201).await;
    let free = app.ok(&admin, "/exceptions", exc("Free", None), 201).await;
    let free2 = app.ok(&admin, "/exceptions", exc("Free 2", None), 201).await;
    let sid = sashas["id"].as_str().unwrap();
    let fid = free["id"].as_str().unwrap();
    let f2id = free2["id"].as_str().unwrap();

    let (s, list) = app.get(&lukas, "/exceptions?limit=200").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let seen = ids(&list);
    assert!(seen.iter().any(|i| i == fid), "{list}");
    assert!(!seen.iter().any(|i| i == sid), "{list}");
    for e in list["items"].as_array().unwrap() {
        assert!(e["assignee_id"].is_null() || e["assignee_id"] == lukas_id.as_str(), "{e}");
    }
    let (s, b) = app.get(&lukas, &format!("/exceptions/{sid}")).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(b["error"]["code"], "forbidden");
    let (s, b) = app.post(Some(&lukas), &format!("/exceptions/{sid}/acknowledge"), json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, b) = app.post(Some(&lukas), &format!("/exceptions/{sid}/assign"), json!({"assignee_id": lukas_id})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "taking another's exception: {b}");

    let claimed = app.ok(&lukas, &format!("/exceptions/{fid}/assign"), json!({"assignee_id": lukas_id}), 200).await;
    assert_eq!(claimed["assignee_id"], lukas_id.as_str());
    let (s, b) = app.post(Some(&lukas), &format!("/exceptions/{f2id}/assign"), json!({"assignee_id": sasha_id})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(b["error"]["code"], "forbidden");
    let (_, e) = app.get(&admin, &format!("/exceptions/{f2id}")).await;
    assert!(e["assignee_id"].is_null(), "{e}");
    let (_, e) = app.get(&admin, &format!("/exceptions/{sid}")).await;
    assert_eq!(e["status"], "open", "{e}");
    assert_eq!(e["assignee_id"], sasha_id.as_str(), "{e}");
    app.ok(&lukas, &format!("/exceptions/{fid}/acknowledge"), json!({}), 200).await;
});

both_engines!(audit_log_is_append_only_in_the_database, async |app: TestApp| {
    let n = app.count("SELECT COUNT(*) AS n FROM audit_log").await;
    assert!(n > 0);
    let mut h = app.db.acquire().await.unwrap();
    let upd = virel_domain::q_exec!(&mut h.conn(), "UPDATE audit_log SET action = 'tampered'");
    assert!(upd.is_err(), "UPDATE audit_log must fail: {upd:?}");
    let del = virel_domain::q_exec!(&mut h.conn(), "DELETE FROM audit_log");
    assert!(del.is_err(), "DELETE FROM audit_log must fail: {del:?}");
    let del_one = virel_domain::q_exec!(
        &mut h.conn(),
        "DELETE FROM audit_log WHERE id = (SELECT id FROM audit_log ORDER BY id LIMIT 1)"
    );
    assert!(del_one.is_err(), "deleting one audit row must fail: {del_one:?}");
    drop(h);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM audit_log").await, n);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'tampered'").await, 0);
});

both_engines!(passwords_and_tokens_never_reach_the_audit_log, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let password = "Sup3r-Secret-Passw0rd";
    let new_password = "An0ther-Secret-Passw0rd";
    let wrong = "Wr0ng-Guess-Passw0rd";
    let (s, u) = app
        .post(
            Some(&admin),
            "/users",
            json!({"email": "newbie@virel.com", "name": "Newbie", "role": "OPERATOR", "password": password}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    assert!(!u.to_string().to_lowercase().contains("password"), "{u}");
    let uid = u["id"].as_str().unwrap().to_string();

    let login = |pw: &'static str| app.post(None, "/auth/login", json!({"email": "newbie@virel.com", "password": pw}));
    let (s, b) = login(wrong).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert!(!b.to_string().contains(wrong));
    let (s, session) = login(password).await;
    assert_eq!(s, StatusCode::OK, "{session}");
    let access = session["access_token"].as_str().unwrap().to_string();
    let refresh = session["refresh_token"].as_str().unwrap().to_string();
    let (s, rotated) = app.post(None, "/auth/refresh", json!({"refresh_token": refresh})).await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    let refresh2 = rotated["refresh_token"].as_str().unwrap().to_string();
    let access2 = rotated["access_token"].as_str().unwrap().to_string();
    // A password change by the OWNER is audited too.
    let (s, b) = app.patch(&admin, &format!("/users/{uid}"), json!({"password": new_password})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _) = login(new_password).await;
    assert_eq!(s, StatusCode::OK);

    #[derive(sqlx::FromRow)]
    struct Hash {
        password_hash: String,
    }
    #[derive(sqlx::FromRow)]
    struct TokenHash {
        token_hash: String,
    }
    let mut h = app.db.acquire().await.unwrap();
    let hashes: Vec<String> = virel_domain::q_all!(&mut h.conn(), Hash, "SELECT password_hash FROM users")
        .unwrap()
        .into_iter()
        .map(|h| h.password_hash)
        .collect();
    let token_hashes: Vec<String> =
        virel_domain::q_all!(&mut h.conn(), TokenHash, "SELECT token_hash FROM refresh_tokens")
            .unwrap()
            .into_iter()
            .map(|t| t.token_hash)
            .collect();
    let rows = virel_domain::q_all!(&mut h.conn(), virel_domain::rows::AuditEntry, "SELECT * FROM audit_log").unwrap();
    drop(h);
    assert!(rows.iter().any(|r| r.action == "user.created" && r.entity_id.as_deref() == Some(uid.as_str())));
    assert!(rows.iter().any(|r| r.action == "user.updated" && r.entity_id.as_deref() == Some(uid.as_str())));
    assert!(rows.iter().any(|r| r.action == "auth.login_failed"));
    assert!(rows.iter().any(|r| r.action == "auth.refresh"));
    let mut secrets: Vec<String> = vec![
        password.into(),
        new_password.into(),
        wrong.into(),
        "password123".into(),
        access,
        access2,
        refresh,
        refresh2,
    ];
    secrets.extend(hashes);
    secrets.extend(token_hashes);
    for r in &rows {
        for (side, v) in [("before", &r.before), ("after", &r.after)] {
            let Some(v) = v else { continue };
            let text = v.0.to_string();
            assert!(!text.to_lowercase().contains("password"), "{} {side} mentions a password: {text}", r.action);
            assert!(!text.contains("token"), "{} {side} mentions a token: {text}", r.action);
        }
        let whole = serde_json::to_string(r).unwrap();
        for s in &secrets {
            assert!(!whole.contains(s.as_str()), "{} holds a secret: {whole}", r.action);
        }
    }
    // Nor does the audit API show them.
    let (s, audit) = app.get(&admin, "/audit?limit=200").await;
    assert_eq!(s, StatusCode::OK);
    let text = audit.to_string();
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "GET /audit holds a secret");
    }
});

both_engines!(an_operator_sees_only_the_country_code_and_last_three_digits_of_a_phone, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let lukas = app.login("lukas@virel.com").await;
    // (number, as the operator sees it, its country code, what must not show)
    let cases = [
        ("+15551234567", "+1 **** ***567", "+1", "555"),
        ("+447700900123", "+44 7*** ***123", "+44", "7700"),
        ("+442079460123", "+44 **** ***123", "+44", "2079"),
        ("+4915123456789", "+49 1*** ***789", "+49", "5123"),
    ];
    let seeded = get_ok(&app, &admin, "/clients?limit=200").await;
    for (i, (phone, masked, cc, hidden)) in cases.into_iter().enumerate() {
        // The demo data may hold the number already (one client per phone).
        let c = match seeded["items"].as_array().unwrap().iter().find(|c| c["phone"] == phone) {
            Some(c) => c.clone(),
            None => {
                let body = json!({"name": format!("Phone Case {i}"), "phone": phone, "preferred_channel": "sms"});
                app.ok(&admin, "/clients", body, 201).await
            }
        };
        assert_eq!(c["phone"], phone, "the OWNER sees the number: {c}");
        let one = get_ok(&app, &lukas, &format!("/clients/{}", c["id"].as_str().unwrap())).await;
        let shown = one["phone"].as_str().unwrap_or_else(|| panic!("{one}"));
        assert_eq!(shown, masked, "{phone}: {one}");
        assert!(shown.starts_with(&format!("{cc} ")) && shown.ends_with(&phone[phone.len() - 3..]), "{shown}");
        // Nowhere in the answer (ids and timestamps aside, whose digits are random).
        let mut rest = one.clone();
        if let Some(m) = rest.as_object_mut() {
            m.retain(|k, _| !(k == "id" || k.ends_with("_id") || k.ends_with("_at") || k == "version"));
        }
        assert!(!rest.to_string().contains(hidden), "{phone} shows {hidden}: {one}");
    }
});
