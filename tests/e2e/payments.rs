//! Payments end to end against a local Stripe-compatible server (tests/e2e/fake_stripe.rs):
//! the deposit's PaymentIntent, the signed webhooks that confirm or escalate, forged and stale
//! webhooks refused, a refund made once however often its job runs, reconciliation, and no
//! secret in any answer.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fake_stripe::{self, FakeStripe, OLD_WEBHOOK_SECRET, WEBHOOK_SECRET, signature};
use crate::fixtures;
use crate::harness::{Engine, TestApp, WorkerOptions};

fn options(fake: &FakeStripe) -> WorkerOptions {
    WorkerOptions {
        retry: virel_workers::RetrySettings {
            attempts_default: 4,
            base: Duration::from_millis(200),
            ..Default::default()
        },
        scheduler: false,
        payments: fake.payments(),
        ..Default::default()
    }
}

async fn start(engine: Engine) -> (TestApp, FakeStripe) {
    let fake = FakeStripe::start().await;
    let app = TestApp::start_full(engine, options(&fake)).await;
    (app, fake)
}

/// Posts a raw webhook body with the given `Stripe-Signature` (None: no header).
async fn webhook(app: &TestApp, payload: &str, sig: Option<&str>) -> (StatusCode, Value) {
    let mut req = app
        .http
        .post(format!("{}/webhooks/stripe", app.base))
        .header("content-type", "application/json; charset=utf-8")
        .body(payload.to_string());
    if let Some(s) = sig {
        req = req.header("stripe-signature", s);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn signed(app: &TestApp, event: &Value) -> (StatusCode, Value) {
    let payload = event.to_string();
    webhook(app, &payload, Some(&signature(&[WEBHOOK_SECRET], fake_stripe::now(), &payload))).await
}

/// A pending booking with a 50.00 GBP deposit, and its deposit requested: (booking, deposit).
async fn deposit_requested(app: &TestApp, token: &str, fake: &FakeStripe) -> (Value, Value) {
    let c = fixtures::client(app, token).await;
    let m = fixtures::model(app, token).await;
    let b = fixtures::booking_for(app, token, &m["id"], &c["id"], 3 * 24 * 60, "pending").await;
    let before = fake.requests("POST", "/v1/payment_intents").len();
    let d = app.ok(token, &format!("/bookings/{}/deposit", b["id"].as_str().unwrap()), json!({}), 201).await;
    assert_eq!(fake.requests("POST", "/v1/payment_intents").len(), before + 1);
    (b, d)
}

async fn booking_status(app: &TestApp, token: &str, id: &str) -> String {
    let (_, b) = app.get(token, &format!("/bookings/{id}")).await;
    b["status"].as_str().unwrap_or_default().to_string()
}

async fn tasks_of(app: &TestApp, token: &str, kind: &str, booking: &str) -> Vec<Value> {
    let (_, t) = app.get(token, &format!("/tasks?type={kind}&subject_type=booking&subject_id={booking}")).await;
    t["items"].as_array().cloned().unwrap_or_default()
}

async fn exceptions_of(app: &TestApp, token: &str, kind: &str) -> Vec<Value> {
    let (_, e) = app.get(token, &format!("/exceptions?type={kind}&limit=200")).await;
    e["items"].as_array().cloned().unwrap_or_default()
}

fn no_secrets(what: &str, v: &Value) {
    let text = v.to_string();
    for secret in [fake_stripe::KEY, WEBHOOK_SECRET, OLD_WEBHOOK_SECRET, "sk_test", "whsec_"] {
        assert!(!text.contains(secret), "{what} shows a secret: {text}");
    }
}

async fn deposit_then_paid_webhook_confirms_the_booking(app: TestApp, fake: FakeStripe) {
    let admin = app.login("admin@virel.com").await;
    let (b, d) = deposit_requested(&app, &admin, &fake).await;
    let bid = b["id"].as_str().unwrap();
    let pid = d["payment"]["id"].as_str().unwrap();
    let pi = d["payment"]["provider_ref"].as_str().unwrap().to_string();
    assert_eq!(d["payment"]["status"], "pending", "{d}");
    assert_eq!(d["payment"]["type"], "deposit");
    assert_eq!(d["payment"]["amount"], json!({"amount": 5000, "currency": "GBP"}));
    assert_eq!(d["client_secret"], json!(format!("{pi}_secret_fake")));
    assert_eq!(booking_status(&app, &admin, bid).await, "deposit_required");
    no_secrets("the deposit", &d);

    // What Stripe received: a form-encoded create, an Idempotency-Key from Virel's ids, the
    // pinned version, the booking and payment in the metadata.
    let create = fake.requests("POST", "/v1/payment_intents").pop().unwrap();
    assert!(create.authorized);
    assert_eq!(create.stripe_version.as_deref(), Some(virel_workers::providers::stripe::STRIPE_VERSION));
    assert_eq!(create.idempotency_key.as_deref(), Some(format!("virel-deposit-{pid}").as_str()));
    assert_eq!(create.field("amount"), Some("5000"));
    assert_eq!(create.field("currency"), Some("gbp"));
    assert_eq!(create.field("metadata[booking_id]"), Some(bid));
    assert_eq!(create.field("metadata[payment_id]"), Some(pid));

    // Again: the same payment, no second PaymentIntent.
    let again = app.ok(&admin, &format!("/bookings/{bid}/deposit"), json!({}), 200).await;
    assert_eq!(again["payment"]["id"], d["payment"]["id"]);
    assert_eq!(again["client_secret"], d["client_secret"]);
    assert_eq!(fake.requests("POST", "/v1/payment_intents").len(), 1);

    // The customer pays; Stripe's signed webhook arrives and is acknowledged at once.
    let event = fake.pay(&pi, true);
    let t0 = std::time::Instant::now();
    let (s, body) = signed(&app, &event).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["replay"], false);
    assert!(t0.elapsed() < Duration::from_secs(2), "the webhook answered in {:?}", t0.elapsed());

    let confirmed = app
        .eventually(10, || async {
            let done = booking_status(&app, &admin, bid).await == "confirmed"
                && !tasks_of(&app, &admin, "notify_model", bid).await.is_empty();
            done.then_some(())
        })
        .await;
    assert!(confirmed.is_some(), "the booking was not confirmed with a notify_model task within 10 s");
    app.settle(&admin).await;
    let (_, payments) = app.get(&admin, &format!("/payments?booking_id={bid}")).await;
    assert_eq!(payments["items"].as_array().unwrap().len(), 1, "{payments}");
    assert_eq!(payments["items"][0]["status"], "succeeded");
    assert_eq!(payments["items"][0]["provider_ref"], json!(pi));
    let (_, booking) = app.get(&admin, &format!("/bookings/{bid}")).await;

    // The same webhook again: acknowledged, nothing changes.
    let (s, body) = signed(&app, &event).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["replay"], true);
    app.settle(&admin).await;
    let (_, after) = app.get(&admin, &format!("/bookings/{bid}")).await;
    assert_eq!(after["version"], booking["version"]);
    assert_eq!(tasks_of(&app, &admin, "notify_model", bid).await.len(), 1);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM domain_events WHERE type = 'payment.succeeded'").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM webhooks_in").await, 1);

    // Finance reads the payments; an operator may not.
    let finance = app.login("finance@virel.com").await;
    let (s, list) = app.get(&finance, "/payments?status=succeeded&type=deposit").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["items"][0]["id"], d["payment"]["id"]);
    let operator = app.login("lukas@virel.com").await;
    assert_eq!(app.get(&operator, "/payments").await.0, StatusCode::FORBIDDEN);

    // No key or webhook secret in any answer.
    let (_, health) = app.send(reqwest::Method::GET, None, "/health", None).await;
    assert_eq!(health["checks"]["payments"]["status"], "up", "{health}");
    let (_, events) = app.get(&admin, "/webhooks/stripe/events").await;
    assert_eq!(events["items"][0]["status"], "processed", "{events}");
    for (what, v) in [("health", &health), ("payments", &list), ("events", &events), ("booking", &after)] {
        no_secrets(what, v);
    }
}

async fn a_declined_card_escalates(app: TestApp, fake: FakeStripe) {
    let admin = app.login("admin@virel.com").await;
    let (b, d) = deposit_requested(&app, &admin, &fake).await;
    let bid = b["id"].as_str().unwrap();
    let pi = d["payment"]["provider_ref"].as_str().unwrap();
    let (s, _) = signed(&app, &fake.pay(pi, false)).await;
    assert_eq!(s, StatusCode::OK);
    let escalated = app
        .eventually(10, || async {
            let ex = exceptions_of(&app, &admin, "payment_failed").await;
            let task = tasks_of(&app, &admin, "contact_client", bid).await;
            (!ex.is_empty() && !task.is_empty()).then_some((ex, task))
        })
        .await;
    let (ex, task) = escalated.expect("no payment_failed exception and contact_client task within 10 s");
    assert_eq!(ex[0]["subject_id"], json!(bid));
    assert_eq!(ex[0]["severity"], "high");
    assert_eq!(task[0]["priority"], "critical");
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM domain_events WHERE type = 'payment.failed'").await, 1);
    let (_, p) = app.get(&admin, &format!("/payments/{}", d["payment"]["id"].as_str().unwrap())).await;
    assert_eq!(p["status"], "failed");
    assert_eq!(p["error"], "Your card has insufficient funds.");
    assert_eq!(booking_status(&app, &admin, bid).await, "deposit_required");

    // The customer tries again with another card: the same deposit, now paid.
    let again = app.ok(&admin, &format!("/bookings/{bid}/deposit"), json!({}), 200).await;
    assert_eq!(again["payment"]["id"], d["payment"]["id"]);
    let (s, _) = signed(&app, &fake.pay(pi, true)).await;
    assert_eq!(s, StatusCode::OK);
    let ok =
        app.eventually(10, || async { (booking_status(&app, &admin, bid).await == "confirmed").then_some(()) }).await;
    assert!(ok.is_some(), "a later success confirms the booking");
}

async fn forged_and_stale_webhooks_are_refused(app: TestApp, fake: FakeStripe) {
    let admin = app.login("admin@virel.com").await;
    let (b, d) = deposit_requested(&app, &admin, &fake).await;
    let bid = b["id"].as_str().unwrap();
    let pi = d["payment"]["provider_ref"].as_str().unwrap();
    let event = fake.pay(pi, true);
    let payload = event.to_string();
    let now = fake_stripe::now();
    let tampered = payload.replace("\"succeeded\"", "\"succeeded\" ");
    let good = signature(&[WEBHOOK_SECRET], now, &payload);
    let v1 = good.split_once(",v1=").unwrap().1.to_string();
    let cases: Vec<(&str, String, Option<String>)> = vec![
        ("tampered", tampered, Some(good.clone())),
        ("ten minutes old", payload.clone(), Some(signature(&[WEBHOOK_SECRET], now - 600, &payload))),
        ("v0 only", payload.clone(), Some(format!("t={now},v0={v1}"))),
        ("wrong secret", payload.clone(), Some(signature(&["whsec_someone_else"], now, &payload))),
        ("no header", payload.clone(), None),
    ];
    let refused = || crate::metrics::series(&app, &admin, "virel_stripe_webhooks_total", &[("outcome", "rejected")]);
    let accepted = || crate::metrics::series(&app, &admin, "virel_stripe_webhooks_total", &[("outcome", "accepted")]);
    let (rejected_before, accepted_before) = (refused().await, accepted().await);
    for (what, body, sig) in &cases {
        let (s, e) = webhook(&app, body, sig.as_deref()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {e}");
        assert_eq!(e["error"]["code"], "bad_signature", "{what}: {e}");
    }
    app.settle(&admin).await;
    assert_eq!(booking_status(&app, &admin, bid).await, "deposit_required");
    let (_, p) = app.get(&admin, &format!("/payments/{}", d["payment"]["id"].as_str().unwrap())).await;
    assert_eq!(p["status"], "pending");
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM domain_events WHERE type = 'payment.succeeded'").await, 0);
    // Kept as rejected, trusting nothing (no event id); repeated refusals raise one exception.
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM webhooks_in WHERE status = 'rejected' AND event_id IS NULL").await,
        5
    );
    let (_, rejected) = app.get(&admin, "/webhooks/stripe/events?status=rejected").await;
    assert_eq!(rejected["items"].as_array().unwrap().len(), 5);
    assert_eq!(exceptions_of(&app, &admin, "webhook_rejected").await.len(), 1);

    // While the secret rolls, Stripe signs with the old and the new one: accepted.
    let t = fake_stripe::now();
    let (s, body) = webhook(&app, &payload, Some(&signature(&[OLD_WEBHOOK_SECRET, WEBHOOK_SECRET], t, &payload))).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let ok =
        app.eventually(10, || async { (booking_status(&app, &admin, bid).await == "confirmed").then_some(()) }).await;
    assert!(ok.is_some(), "the genuine webhook confirms the booking");
    // The metrics count each call by outcome (the recorder is shared by the tests of this
    // process, so at least this test's own).
    assert!(refused().await - rejected_before >= 5.0, "the five refusals counted as rejected");
    assert!(accepted().await - accepted_before >= 1.0, "the genuine webhook counted as accepted");
}

async fn a_refund_reaches_stripe_once(app: TestApp, fake: FakeStripe) {
    let admin = app.login("admin@virel.com").await;
    let (b, d) = deposit_requested(&app, &admin, &fake).await;
    let bid = b["id"].as_str().unwrap().to_string();
    let pid = d["payment"]["id"].as_str().unwrap().to_string();
    let (s, _) = signed(&app, &fake.pay(d["payment"]["provider_ref"].as_str().unwrap(), true)).await;
    assert_eq!(s, StatusCode::OK);
    let ok =
        app.eventually(10, || async { (booking_status(&app, &admin, &bid).await == "confirmed").then_some(()) }).await;
    assert!(ok.is_some());

    let finance = app.login("finance@virel.com").await;
    let operator = app.login("lukas@virel.com").await;
    assert_eq!(app.post(Some(&operator), &format!("/payments/{pid}/refund"), json!({"reason": "x"})).await.0, 403);
    let (s, e) = app.post(Some(&finance), &format!("/payments/{pid}/refund"), json!({})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "reason is required: {e}");
    let (s, e) =
        app.post(Some(&finance), &format!("/payments/{pid}/refund"), json!({"amount": 6000, "reason": "x"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "more than was paid: {e}");

    // Stripe makes the refund but its answer is lost: the job is retried with the same key.
    fake.state.lock().unwrap().lose_refund_answers = 1;
    let r = app.ok(&finance, &format!("/payments/{pid}/refund"), json!({"reason": "client cancelled"}), 202).await;
    assert_eq!(r["type"], "refund");
    assert_eq!(r["status"], "requested");
    assert_eq!(r["amount"]["amount"], 5000);
    let rid = r["id"].as_str().unwrap().to_string();
    let done = app
        .eventually(15, || async {
            let (_, p) = app.get(&finance, &format!("/payments/{rid}")).await;
            (p["status"] == "succeeded").then_some(p)
        })
        .await
        .expect("the refund did not succeed within 15 s");
    let posts = fake.requests("POST", "/v1/refunds");
    assert_eq!(posts.len(), 2, "the lost answer made the job retry");
    assert!(posts.iter().all(|p| p.idempotency_key.as_deref() == Some(format!("virel-refund-{rid}").as_str())));
    assert_eq!(fake.state.lock().unwrap().refunds.len(), 1, "Stripe made exactly one refund");
    let re = fake.state.lock().unwrap().refunds.keys().next().cloned().unwrap();
    assert_eq!(done["provider_ref"], json!(re));
    assert_eq!(done["refund_of"], json!(pid));
    let (_, original) = app.get(&finance, &format!("/payments/{pid}")).await;
    assert_eq!(original["status"], "refunded");

    // Stripe's own refund webhooks afterwards change nothing more.
    let refund_obj = fake.state.lock().unwrap().refunds[&re].clone();
    let (s, _) = signed(&app, &fake.event("refund.updated", refund_obj)).await;
    assert_eq!(s, StatusCode::OK);
    app.settle(&admin).await;
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM domain_events WHERE type = 'payment.refunded'").await, 1);
    let (s, _) = app.post(Some(&finance), &format!("/payments/{pid}/refund"), json!({"reason": "again"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "nothing is left to refund");
    let (_, refunds) = app.get(&finance, &format!("/payments?booking_id={bid}&type=refund")).await;
    assert_eq!(refunds["items"].as_array().unwrap().len(), 1);
}

async fn stripe_errors_change_nothing(app: TestApp, fake: FakeStripe) {
    let admin = app.login("admin@virel.com").await;
    let c = fixtures::client(&app, &admin).await;
    let m = fixtures::model(&app, &admin).await;
    let b = fixtures::booking_for(&app, &admin, &m["id"], &c["id"], 3 * 24 * 60, "pending").await;
    let path = format!("/bookings/{}/deposit", b["id"].as_str().unwrap());
    let refusal = json!({"error": {"type": "invalid_request_error", "code": "amount_too_small", "message": "Amount must be at least 30 pence"}});
    for (status, expect, code) in [(400, 502, "payment_provider_error"), (500, 503, "service_unavailable")] {
        fake.state.lock().unwrap().refuse_intents = Some((status, refusal.clone()));
        let (s, e) = app.post(Some(&admin), &path, json!({})).await;
        assert_eq!(s.as_u16(), expect, "{e}");
        assert_eq!(e["error"]["code"], code, "{e}");
        no_secrets("the error", &e);
    }
    assert_eq!(booking_status(&app, &admin, b["id"].as_str().unwrap()).await, "pending");
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM payments").await, 0);
    // Stripe answers again: the deposit goes through.
    fake.state.lock().unwrap().refuse_intents = None;
    app.ok(&admin, &path, json!({}), 201).await;
    assert_eq!(booking_status(&app, &admin, b["id"].as_str().unwrap()).await, "deposit_required");

    // A deposit first requested by the plain status change is the one the PaymentIntent pays.
    let b2 = fixtures::booking_for(&app, &admin, &m["id"], &c["id"], 6 * 24 * 60, "pending").await;
    let b2id = b2["id"].as_str().unwrap();
    app.ok(&admin, &format!("/bookings/{b2id}/status"), json!({"status": "deposit_required"}), 200).await;
    let (_, before) = app.get(&admin, &format!("/payments?booking_id={b2id}")).await;
    assert_eq!(before["items"][0]["status"], "requested", "{before}");
    let d = app.ok(&admin, &format!("/bookings/{b2id}/deposit"), json!({}), 201).await;
    assert_eq!(d["payment"]["id"], before["items"][0]["id"]);
    assert_eq!(d["payment"]["status"], "pending");
    let (_, after) = app.get(&admin, &format!("/payments?booking_id={b2id}")).await;
    assert_eq!(after["items"].as_array().unwrap().len(), 1, "{after}");
}

async fn unknown_intents_disputes_and_missed_events(app: TestApp, fake: FakeStripe) {
    let admin = app.login("admin@virel.com").await;
    // An event for a PaymentIntent Virel never made: kept, visible, not an error loop.
    let stranger = fake.event(
        "payment_intent.succeeded",
        json!({"id": "pi_not_ours", "object": "payment_intent", "status": "succeeded"}),
    );
    assert_eq!(signed(&app, &stranger).await.0, StatusCode::OK);
    let kept = app
        .eventually(10, || async {
            let (_, l) = app.get(&admin, "/webhooks/stripe/events?status=unmatched").await;
            (l["items"].as_array().map(|a| a.len()) == Some(1)).then_some(l)
        })
        .await
        .expect("the unknown PaymentIntent's event is kept as unmatched");
    assert_eq!(kept["items"][0]["event_type"], "payment_intent.succeeded");
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM dead_jobs").await, 0);

    // A dispute: a high payment_failed exception about the payment.
    let (_, d) = deposit_requested(&app, &admin, &fake).await;
    let pi = d["payment"]["provider_ref"].as_str().unwrap();
    let dispute = fake.event(
        "charge.dispute.created",
        json!({"id": "dp_1", "object": "dispute", "amount": 5000, "currency": "gbp", "reason": "fraudulent", "payment_intent": pi}),
    );
    assert_eq!(signed(&app, &dispute).await.0, StatusCode::OK);
    let ex = app
        .eventually(10, || async {
            let ex = exceptions_of(&app, &admin, "payment_failed").await;
            ex.into_iter().find(|e| e["subject_id"] == d["payment"]["id"])
        })
        .await
        .expect("a dispute raises a payment_failed exception");
    assert_eq!(ex["severity"], "high");
    assert!(ex["title"].as_str().unwrap().contains("fraudulent"), "{ex}");

    // A payment whose webhook never came: the reconciliation finds it in Stripe's event list.
    let (b2, d2) = deposit_requested(&app, &admin, &fake).await;
    let missed = fake.pay(d2["payment"]["provider_ref"].as_str().unwrap(), true);
    fake.state.lock().unwrap().events = vec![missed, stranger];
    let job = virel_workers::Job::new(&virel_domain::jobs::payments::StripeReconcile {});
    virel_domain::jobs::QueueBackend::push(app.queues.as_ref().unwrap(), job, None).await.unwrap();
    let bid = b2["id"].as_str().unwrap();
    let ok =
        app.eventually(10, || async { (booking_status(&app, &admin, bid).await == "confirmed").then_some(()) }).await;
    assert!(ok.is_some(), "the reconciliation processed the missed event");
    let list = fake.requests("GET", "/v1/events");
    assert!(list[0].field("created[gte]").is_some());
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM webhooks_in WHERE source = 'reconciliation'").await, 1);
}

macro_rules! payments_test {
    ($name:ident) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let (app, fake) = start(Engine::Sqlite).await;
                super::$name(app, fake).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres_redis() {
                let (app, fake) = start(Engine::Postgres).await;
                super::$name(app, fake).await;
            }
        }
    };
}

payments_test!(deposit_then_paid_webhook_confirms_the_booking);
payments_test!(a_declined_card_escalates);
payments_test!(forged_and_stale_webhooks_are_refused);
payments_test!(a_refund_reaches_stripe_once);
payments_test!(stripe_errors_change_nothing);
payments_test!(unknown_intents_disputes_and_missed_events);

crate::both_engines!(payments_disabled_without_a_key, |app: TestApp| async move {
    let admin = app.login("admin@virel.com").await;
    let b = fixtures::booking(&app, &admin, 3 * 24 * 60).await;
    app.ok(&admin, &format!("/bookings/{}/status", b["id"].as_str().unwrap()), json!({"status": "pending"}), 200).await;
    let (s, e) = app.post(Some(&admin), &format!("/bookings/{}/deposit", b["id"].as_str().unwrap()), json!({})).await;
    // Disabled is not an outage: 409 naming the guard, not a 503 inviting retries.
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "guard_failed");
    assert_eq!(e["error"]["details"]["guard"], "payments_enabled");
    assert_eq!(booking_status(&app, &admin, b["id"].as_str().unwrap()).await, "pending");
    let (_, health) = app.send(reqwest::Method::GET, None, "/health", None).await;
    assert_eq!(health["checks"]["payments"]["status"], "disabled", "{health}");
    let (s, e) = webhook(&app, "{}", Some("t=1,v1=00")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM webhooks_in").await, 0);
});
