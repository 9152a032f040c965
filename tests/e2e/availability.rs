//! Availability and matching (SPEC §11) over HTTP, on both engines: rules and their
//! validation, free windows (midnight-crossing windows, blocks, clock-change nights), the
//! booking guard with its audited override, the scheduled expansion, and matching.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::London;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_engines;
use crate::fixtures;
use crate::harness::TestApp;

async fn put_rules(app: &TestApp, token: &str, model_id: &Value, body: Value) -> (StatusCode, Value) {
    let path = format!("/models/{}/availability-rules", model_id.as_str().unwrap());
    app.send(reqwest::Method::PUT, Some(token), &path, Some(body)).await
}

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// `date` at `h:m` London time.
fn london(date: NaiveDate, h: u32, m: u32) -> DateTime<Utc> {
    London.from_local_datetime(&date.and_hms_opt(h, m, 0).unwrap()).earliest().unwrap().with_timezone(&Utc)
}

/// The London date `days` from today.
fn london_day(days: i64) -> NaiveDate {
    (Utc::now() + Duration::days(days)).with_timezone(&London).date_naive()
}

/// The next Friday at least a week away (inside the expanded horizon), London date.
fn next_friday() -> NaiveDate {
    use chrono::Datelike;
    let mut d = london_day(7);
    while d.weekday() != chrono::Weekday::Fri {
        d = d.succ_opt().unwrap();
    }
    d
}

fn windows(body: &Value, model_id: &Value) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let item = body["items"].as_array().unwrap().iter().find(|i| i["model_id"] == *model_id).expect("model listed");
    item["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (utc(w["start_at"].as_str().unwrap()), utc(w["end_at"].as_str().unwrap())))
        .collect()
}

async fn free(
    app: &TestApp,
    token: &str,
    model_id: &Value,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let path = format!("/availability?from={}&to={}&model_id={}", urlenc(from), urlenc(to), model_id.as_str().unwrap());
    let (s, b) = app.get(token, &path).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    windows(&b, model_id)
}

fn urlenc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn demo_models(app: &TestApp, token: &str) -> Vec<Value> {
    let (s, b) = app.get(token, "/models?limit=200").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["items"].as_array().unwrap().clone()
}

fn named<'a>(models: &'a [Value], name: &str) -> &'a Value {
    models.iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("no model {name}"))
}

both_engines!(rules_round_trip_validation_and_permissions, async |app: TestApp| {
    let content = app.login("content@virel.com").await;
    let lukas = app.login("lukas@virel.com").await;
    let finance = app.login("finance@virel.com").await;
    let m = fixtures::model(&app, &content).await;
    let path = format!("/models/{}/availability-rules", m["id"].as_str().unwrap());

    // Before any rules: unrestricted.
    let (s, b) = app.get(&lukas, &path).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["configured"], false);

    let body = json!({
        "time_zone": "Europe/London",
        "weekly": [{"day": "fri", "start": "18:00", "end": "02:00"}, {"day": "sat", "start": "18:00", "end": "02:00"}],
        "blocks": [{"start_at": "2027-01-08T21:00:00Z", "end_at": "2027-01-08T22:00:00Z"}],
        "extra": [{"start_at": "2027-01-12T12:00:00Z", "end_at": "2027-01-12T15:00:00Z"}]
    });
    let events_before =
        app.count("SELECT COUNT(*) AS n FROM domain_events WHERE type = 'model.availability_changed'").await;
    let (s, b) = put_rules(&app, &content, &m["id"], body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["configured"], true);
    assert_eq!(b["version"], 1);
    assert_eq!(b["weekly"][0], json!({"day": "fri", "start": "18:00", "end": "02:00"}));
    let events_after =
        app.count("SELECT COUNT(*) AS n FROM domain_events WHERE type = 'model.availability_changed'").await;
    assert_eq!(events_after, events_before + 1);

    // Operators read; they do not edit; finance does neither.
    let (s, got) = app.get(&lukas, &path).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got["blocks"], b["blocks"]);
    assert_eq!(got["time_zone"], "Europe/London");
    let (s, _) = put_rules(&app, &lukas, &m["id"], body.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app.get(&finance, &path).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // OPS_MANAGER edits too; a stale version is refused.
    let tommy = app.login("tommy@virel.com").await;
    let (s, b2) =
        put_rules(&app, &tommy, &m["id"], json!({"time_zone": "Europe/London", "weekly": [], "version": 1})).await;
    assert_eq!(s, StatusCode::OK, "{b2}");
    assert_eq!(b2["version"], 2);
    let (s, b3) = put_rules(&app, &tommy, &m["id"], json!({"time_zone": "Europe/London", "version": 1})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b3}");

    // Invalid input: 422 naming the part.
    let cases = [
        (json!({"time_zone": "Mars/Olympus"}), "time_zone"),
        (
            json!({"time_zone": "Europe/London", "weekly": [{"day": "fri", "start": "18:00", "end": "18:00"}]}),
            "weekly[0]: start equals end",
        ),
        (
            json!({"time_zone": "Europe/London", "weekly": [
                {"day": "fri", "start": "18:00", "end": "02:00"}, {"day": "sat", "start": "01:00", "end": "03:00"}]}),
            "weekly[0] and weekly[1] overlap",
        ),
        (
            json!({"time_zone": "Europe/London", "weekly": [{"day": "someday", "start": "18:00", "end": "20:00"}]}),
            "weekly[0].day",
        ),
        (
            json!({"time_zone": "Europe/London", "weekly": [{"day": "mon", "start": "7pm", "end": "20:00"}]}),
            "weekly[0].start",
        ),
        (
            json!({"time_zone": "Europe/London", "blocks": [{"start_at": "2027-01-08T22:00:00Z", "end_at": "2027-01-08T21:00:00Z"}]}),
            "blocks[0]: end_at is before start_at",
        ),
        (
            json!({"time_zone": "Europe/London", "extra": [{"start_at": "2027-01-08T22:00:00Z", "end_at": "2027-01-08T21:00:00Z"}]}),
            "extra[0]",
        ),
    ];
    for (body, needle) in cases {
        let (s, b) = put_rules(&app, &content, &m["id"], body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {b}");
        assert_eq!(b["error"]["code"], "validation_failed");
        assert!(b["error"]["message"].as_str().unwrap().contains(needle), "{needle}: {b}");
    }
    // Nothing of that was written.
    let (_, still) = app.get(&lukas, &path).await;
    assert_eq!(still["version"], 2);
    // An unknown model is 404.
    let (s, _) = put_rules(&app, &content, &json!(uuid::Uuid::now_v7().to_string()), json!({"time_zone": "UTC"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
});

both_engines!(a_midnight_window_with_a_block_inside_gives_two_windows, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let m = fixtures::model(&app, &admin).await;
    let fri = next_friday();
    let sat = fri.succ_opt().unwrap();
    let block = (london(fri, 21, 0), london(fri, 22, 0));
    let (s, b) = put_rules(
        &app,
        &admin,
        &m["id"],
        json!({
            "time_zone": "Europe/London",
            "weekly": [{"day": "fri", "start": "18:00", "end": "02:00"}],
            "blocks": [{"start_at": block.0, "end_at": block.1}]
        }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Inside the expanded horizon: from the slots table.
    let got = free(&app, &admin, &m["id"], london(fri, 0, 0), london(sat, 12, 0)).await;
    assert_eq!(got, vec![(london(fri, 18, 0), block.0), (block.1, london(sat, 2, 0))]);
    let slots = app.count("SELECT COUNT(*) AS n FROM availability_slots").await;
    assert!(slots >= 8 * 4, "the slots were expanded ({slots})");

    // Far beyond the horizon (computed from the rules): the same shape, a winter Friday.
    let far = NaiveDate::from_ymd_opt(2028, 1, 7).unwrap();
    let got = free(&app, &admin, &m["id"], utc("2028-01-07T00:00:00Z"), utc("2028-01-09T00:00:00Z")).await;
    assert_eq!(got, vec![(london(far, 18, 0), london(far.succ_opt().unwrap(), 2, 0))]);

    // The range is checked.
    let (s, b) = app
        .get(
            &admin,
            &format!(
                "/availability?from={}&to={}",
                urlenc(utc("2027-01-01T00:00:00Z")),
                urlenc(utc("2027-02-02T00:00:00Z"))
            ),
        )
        .await;
    // Longer than 31 days: cut there, and the answer says so.
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["to"].as_str().map(utc), Some(utc("2027-02-01T00:00:00Z")), "{b}");
    let last_end =
        b["items"][0]["windows"].as_array().and_then(|w| w.last()).map(|w| utc(w["end_at"].as_str().unwrap()));
    assert!(last_end.is_some_and(|e| e <= utc("2027-02-01T00:00:00Z")), "{b}");
    let (s, b) = app
        .get(
            &admin,
            &format!(
                "/availability?from={}&to={}",
                urlenc(utc("2027-01-02T00:00:00Z")),
                urlenc(utc("2027-01-01T00:00:00Z"))
            ),
        )
        .await;
    // Reversed: an empty range, nothing free in it.
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["to"], b["from"], "{b}");
    assert_eq!(b["items"], json!([]), "{b}");
    let (s, _) = app.get(&admin, "/availability?from=yesterday&to=today").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Without a model: every active model, the unrestricted ones free all along.
    let (s, all) = app
        .get(&admin, &format!("/availability?from={}&to={}", urlenc(london(fri, 0, 0)), urlenc(london(sat, 0, 0))))
        .await;
    assert_eq!(s, StatusCode::OK, "{all}");
    assert!(all["items"].as_array().unwrap().len() >= 5, "{all}");
});

both_engines!(windows_on_the_clock_change_nights_have_the_right_instants, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let ldn = fixtures::model(&app, &admin).await;
    let nyc = fixtures::model(&app, &admin).await;
    let sat = |start: &str, end: &str| json!([{"day": "sat", "start": start, "end": end}]);
    let (s, b) =
        put_rules(&app, &admin, &ldn["id"], json!({"time_zone": "Europe/London", "weekly": sat("22:00", "02:00")}))
            .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) =
        put_rules(&app, &admin, &nyc["id"], json!({"time_zone": "America/New_York", "weekly": sat("22:00", "04:00")}))
            .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let cases = [
        // London 2027, spring forward Sun 28 March: 22:00 GMT → 02:00 BST is three hours.
        (&ldn, "2027-03-27T00:00:00Z", "2027-03-29T00:00:00Z", "2027-03-27T22:00:00Z", "2027-03-28T01:00:00Z"),
        // London 2027, fall back Sun 31 October: 22:00 BST → 02:00 GMT is five hours.
        (&ldn, "2027-10-30T00:00:00Z", "2027-11-01T00:00:00Z", "2027-10-30T21:00:00Z", "2027-10-31T02:00:00Z"),
        // New York 2027, spring forward Sun 14 March: 22:00 EST → 04:00 EDT.
        (&nyc, "2027-03-13T00:00:00Z", "2027-03-15T00:00:00Z", "2027-03-14T03:00:00Z", "2027-03-14T08:00:00Z"),
        // New York 2027, fall back Sun 7 November: 22:00 EDT → 04:00 EST.
        (&nyc, "2027-11-06T00:00:00Z", "2027-11-08T00:00:00Z", "2027-11-07T02:00:00Z", "2027-11-07T09:00:00Z"),
    ];
    for (m, from, to, start, end) in cases {
        let got = free(&app, &admin, &m["id"], utc(from), utc(to)).await;
        assert_eq!(got, vec![(utc(start), utc(end))], "{from}..{to}");
    }
});

both_engines!(bookings_outside_availability_are_refused_unless_overridden, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let lukas = app.login("lukas@virel.com").await;
    let models = demo_models(&app, &admin).await;
    let mila = named(&models, "Mila")["id"].clone();
    let client = fixtures::client(&app, &admin).await;
    let day = london_day(10);
    let book = |start: DateTime<Utc>, minutes: i64, status: &str| {
        json!({
            "client_id": client["id"], "model_id": mila, "start_at": start, "duration_minutes": minutes,
            "location": "London W1", "price": {"amount": 30000, "currency": "GBP"},
            "deposit": {"amount": 5000, "currency": "GBP"}, "status": status
        })
    };

    // 06:00–08:00 London: outside her 10:00–04:00.
    let (s, b) = app.post(Some(&lukas), "/bookings", book(london(day, 6, 0), 120, "pending")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["error"]["code"], "model_unavailable");
    let nearest = b["error"]["details"]["nearest_free_windows"].as_array().unwrap();
    assert!(!nearest.is_empty(), "{b}");
    // The nearest: the night before ending 04:00 and the day starting 10:00.
    assert!(nearest.iter().any(|w| utc(w["end_at"].as_str().unwrap()) == london(day, 4, 0)), "{b}");
    assert!(nearest.iter().any(|w| utc(w["start_at"].as_str().unwrap()) == london(day, 10, 0)), "{b}");

    // A draft holds no time; moving it to pending does.
    let draft = app.ok(&lukas, "/bookings", book(london(day, 6, 0), 120, "draft"), 201).await;
    let url = format!("/bookings/{}/status", draft["id"].as_str().unwrap());
    let (s, b) = app.post(Some(&lukas), &url, json!({"status": "pending"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["error"]["code"], "model_unavailable");
    // An operator may not override; an owner must give a reason.
    let (s, _) =
        app.post(Some(&lukas), &url, json!({"status": "pending", "override": true, "reason": "she agreed"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = app.post(Some(&admin), &url, json!({"status": "pending", "override": true})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, b) = app
        .post(
            Some(&admin),
            &url,
            json!({"status": "pending", "override": true, "reason": "she agreed to an early start"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "pending");
    let (_, audit) = app
        .get(&admin, &format!("/audit?entity_type=booking&entity_id={}&limit=50", draft["id"].as_str().unwrap()))
        .await;
    let o = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "booking.availability_override")
        .expect("override audited");
    assert_eq!(o["after"]["reason"], "she agreed to an early start", "{o}");
    assert_eq!(o["after"]["unavailable"]["model_id"], mila, "{o}");

    // Inside her hours: fine. Within the travel buffer of another booking: not free.
    app.ok(&lukas, "/bookings", book(london(day, 20, 0), 120, "pending"), 201).await;
    let (s, b) = app.post(Some(&lukas), "/bookings", book(london(day, 22, 15), 60, "pending")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["error"]["code"], "model_unavailable");
    assert!(b["error"]["message"].as_str().unwrap().contains("travel buffer"), "{b}");
    app.ok(&lukas, "/bookings", book(london(day, 22, 30), 60, "pending"), 201).await;
    // Overlap is still its own error.
    let (s, b) = app.post(Some(&lukas), "/bookings", book(london(day, 21, 0), 60, "pending")).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(b["error"]["code"], "booking_overlap", "{b}");

    // A model with no rules is unrestricted.
    let free_model = fixtures::model(&app, &admin).await;
    fixtures::booking_for(&app, &lukas, &free_model["id"], &client["id"], 60 * 24 * 10 + 7, "pending").await;

    // convert-to-booking checks again.
    let inq = app
        .ok(
            &lukas,
            "/inquiries",
            json!({
                "source": "phone", "client_id": client["id"], "requested_start": london(day, 8, 45),
                "duration_minutes": 60, "location": "London W1", "model_id": mila
            }),
            201,
        )
        .await;
    let iurl = format!("/inquiries/{}", inq["id"].as_str().unwrap());
    for st in ["qualified", "awaiting_client", "awaiting_deposit"] {
        app.ok(&lukas, &format!("{iurl}/status"), json!({"status": st}), 200).await;
    }
    let (s, b) = app
        .post(
            Some(&lukas),
            &format!("{iurl}/convert-to-booking"),
            json!({"price": {"amount": 30000, "currency": "GBP"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["error"]["code"], "model_unavailable");
    let (_, still) = app.get(&lukas, &iurl).await;
    assert_eq!(still["status"], "awaiting_deposit");
    let (s, b) = app
        .post(
            Some(&lukas),
            &format!("{iurl}/convert-to-booking"),
            json!({
                "price": {"amount": 30000, "currency": "GBP"}, "start_at": london(day, 12, 0)
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
});

both_engines!(match_returns_free_models_ranked_with_reasons, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let lukas = app.login("lukas@virel.com").await;
    let models = demo_models(&app, &admin).await;
    let mila = named(&models, "Mila")["id"].clone();
    let client = fixtures::client(&app, &admin).await;
    let day = london_day(12);
    let inq = app
        .ok(
            &lukas,
            "/inquiries",
            json!({
                "source": "web", "client_id": client["id"], "requested_start": london(day, 20, 0),
                "duration_minutes": 180, "location": "London W1", "model_id": mila,
                "budget": {"amount": 80000, "currency": "GBP"}, "preferences": {"languages": ["en"]}
            }),
            201,
        )
        .await;
    let url = format!("/inquiries/{}/match", inq["id"].as_str().unwrap());
    let (s, first) = app.post(Some(&lukas), &url, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let cands = first["candidates"].as_array().unwrap().clone();
    assert_eq!(cands.len(), 4, "the four demo models are free: {first}");
    assert_eq!(first["excluded"].as_array().unwrap().len(), 0, "{first}");
    let scores: Vec<f64> = cands.iter().map(|c| c["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "best first: {scores:?}");
    assert_eq!(cands[0]["model_id"], mila, "the wanted model, in W1, speaking en, within budget: {first}");
    for c in &cands {
        let reasons: Vec<&str> = c["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        assert_eq!(reasons[0], "free 20:00–23:00", "{c}");
        assert!(reasons.contains(&"speaks en"), "{c}");
        assert!(reasons.iter().any(|r| r.starts_with("rate £")), "{c}");
    }

    // Block Sofia over the evening, book Elena, deactivate Anna, add an unrestricted model.
    let sofia = named(&models, "Sofia")["id"].clone();
    let elena = named(&models, "Elena")["id"].clone();
    let anna = named(&models, "Anna")["id"].clone();
    let every_day: Vec<Value> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| json!({"day": d, "start": "10:00", "end": "04:00"}))
        .collect();
    let (s, b) = put_rules(
        &app,
        &admin,
        &sofia,
        json!({
            "time_zone": "Europe/London", "weekly": every_day,
            "blocks": [{"start_at": london(day, 19, 0), "end_at": london(day, 21, 0)}]
        }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    app.ok(
        &lukas,
        "/bookings",
        json!({
            "client_id": client["id"], "model_id": elena, "start_at": london(day, 17, 45), "duration_minutes": 120,
            "location": "London E1", "price": {"amount": 30000, "currency": "GBP"}, "status": "pending"
        }),
        201,
    )
    .await;
    let (s, _) = app.patch(&admin, &format!("/models/{}", anna.as_str().unwrap()), json!({"status": "inactive"})).await;
    assert_eq!(s, StatusCode::OK);
    let open = fixtures::model(&app, &admin).await;

    let (s, second) = app.post(Some(&lukas), &url, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{second}");
    let ids: Vec<&Value> = second["candidates"].as_array().unwrap().iter().map(|c| &c["model_id"]).collect();
    assert!(ids.contains(&&mila) && ids.contains(&&open["id"]), "{second}");
    assert!(!ids.contains(&&sofia) && !ids.contains(&&elena) && !ids.contains(&&anna), "{second}");
    let reason = |id: &Value| {
        second["excluded"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["model_id"] == *id)
            .map(|e| e["reason"].as_str().unwrap().to_string())
    };
    assert_eq!(reason(&sofia).as_deref(), Some("blocked 19:00–21:00"), "{second}");
    // Elena's booking ends 19:45; with the 30-minute travel buffer she is not free until 20:15.
    assert_eq!(reason(&elena).as_deref(), Some("booked 17:45–19:45 (travel buffer 30 min)"), "{second}");
    assert!(reason(&anna).unwrap().starts_with("inactive"), "{second}");
    let open_c = second["candidates"].as_array().unwrap().iter().find(|c| c["model_id"] == open["id"]).unwrap();
    assert!(
        open_c["reasons"].as_array().unwrap().iter().any(|r| r == "no availability set up (unrestricted)"),
        "{open_c}"
    );

    // An inquiry without a start cannot be matched; a missing one is 404.
    let bare = app.ok(&lukas, "/inquiries", json!({"source": "web", "client_id": client["id"]}), 201).await;
    let (s, e) = app.post(Some(&lukas), &format!("/inquiries/{}/match", bare["id"].as_str().unwrap()), json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["details"]["guard"], "inquiry_has_time", "{e}");
    let (s, _) = app.post(Some(&lukas), &format!("/inquiries/{}/match", uuid::Uuid::now_v7()), json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
});

both_engines!(the_scheduled_expansion_extends_the_horizon_once, async |app: TestApp| {
    let admin = app.login("admin@virel.com").await;
    let m = fixtures::model(&app, &admin).await;
    let (s, _) = put_rules(
        &app,
        &admin,
        &m["id"],
        json!({
            "time_zone": "Europe/London", "weekly": [{"day": "mon", "start": "10:00", "end": "18:00"}]
        }),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let id = uuid::Uuid::parse_str(m["id"].as_str().unwrap()).unwrap();
    // Nothing is due right after a change.
    let out = virel_domain::availability::expand_due(&app.db, None).await.unwrap();
    assert_eq!(out.models, 0, "{out:?}");
    #[derive(sqlx::FromRow)]
    struct N {
        n: i64,
    }
    let count = || async {
        let mut h = app.db.acquire().await.unwrap();
        virel_domain::q_one!(&mut h.conn(), N, "SELECT COUNT(*) AS n FROM availability_slots WHERE model_id = $1", id)
            .unwrap()
            .n
    };
    let full = count().await;
    assert!((8..=9).contains(&full), "eight weeks of Mondays: {full}");
    // Pretend the horizon was set three weeks ago: the job adds what is missing, once.
    let today = london_day(0);
    let through = (today + Duration::days(35)).format("%Y-%m-%d").to_string();
    let cut = london(today + Duration::days(36), 0, 0);
    {
        let mut h = app.db.acquire().await.unwrap();
        virel_domain::q_exec!(
            &mut h.conn(),
            "DELETE FROM availability_slots WHERE model_id = $1 AND start_at >= $2",
            id,
            cut
        )
        .unwrap();
        virel_domain::q_exec!(
            &mut h.conn(),
            "UPDATE availability_rules SET expanded_through = $1 WHERE model_id = $2",
            through,
            id
        )
        .unwrap();
    }
    assert!(count().await < full);
    let out = virel_domain::availability::expand_due(&app.db, None).await.unwrap();
    assert!(out.models >= 1, "{out:?}");
    assert_eq!(count().await, full);
    let again = virel_domain::availability::expand_due(&app.db, None).await.unwrap();
    assert_eq!(again.models, 0);
    assert_eq!(count().await, full, "no slot twice");
    // The job kind runs the same expansion, registered by name.
    assert!(
        virel_domain::jobs::kinds::registry()
            .label(&virel_domain::jobs::Job::new(&virel_domain::jobs::availability::AvailabilityExpand::default()))
            == "availability_expand"
    );
});
