//! The authorization matrix: every operation of the published OpenAPI document, called as
//! every role and without a token, against the permission the document states for it
//! (`x-permission`, from `virel_api::permissions::PERMISSIONS`) and the roles of
//! `virel_domain::policy` (SPEC §1).
//!
//! - A role without the permission is refused with 403 `forbidden`, the refusal is audited
//!   once (naming the caller and that permission), and nothing else changes.
//! - A role with it is never refused: any answer but 401 and 403 (a 2xx, or 404, 409, 422,
//!   502, 503 for reasons of state: payments are disabled, the process has no queues).
//! - Without a token every operation but the public ones is 401.
//! - No answer to a role without `clients:pii` shows a client's raw phone, email or Telegram.
//!
//! An operation of the document without a request recipe here fails the test, so a new
//! endpoint cannot go unchecked. On failure the whole matrix is printed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::SecondsFormat;
use futures_util::SinkExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};
use virel_api::permissions::PERMISSIONS;
use virel_domain::policy::{ALL_PERMISSIONS, Permission, Role};

use crate::action_center::next_json;
use crate::both_engines;
use crate::fixtures::{self, rand_n};
use crate::harness::TestApp;

/// The seeded client's contact details: raw for `clients:pii`, masked for everyone else.
const PHONE: &str = "+447700900654";
const PHONE_MASKED: &str = "+44 7*** ***654";
const EMAIL: &str = "anna.matrix@example.com";
const EMAIL_MASKED: &str = "a***@example.com";
const TELEGRAM: &str = "@annamatrix";

/// The demo users, one per role.
const ROLES: [(Role, &str); 5] = [
    (Role::Owner, "admin@virel.com"),
    (Role::OpsManager, "tommy@virel.com"),
    (Role::Operator, "lukas@virel.com"),
    (Role::ContentManager, "content@virel.com"),
    (Role::Finance, "finance@virel.com"),
];

struct Caller {
    role: Role,
    email: &'static str,
    token: String,
    id: String,
}

/// One operation of the document.
struct Operation {
    id: String,
    method: String,
    path: String,
    permission: Option<String>,
    public: bool,
}

/// One request of the matrix.
struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
}

fn get(path: impl Into<String>) -> Call {
    Call { method: Method::GET, path: path.into(), body: None }
}

fn post(path: impl Into<String>, body: Value) -> Call {
    Call { method: Method::POST, path: path.into(), body: Some(body) }
}

/// A POST whose operation takes no body.
fn post_empty(path: impl Into<String>) -> Call {
    Call { method: Method::POST, path: path.into(), body: None }
}

fn put(path: impl Into<String>, body: Value) -> Call {
    Call { method: Method::PUT, path: path.into(), body: Some(body) }
}

fn patch(path: impl Into<String>, body: Value) -> Call {
    Call { method: Method::PATCH, path: path.into(), body: Some(body) }
}

fn delete(path: impl Into<String>) -> Call {
    Call { method: Method::DELETE, path: path.into(), body: None }
}

fn has(role: Role, permission: &str) -> bool {
    role.permissions().iter().any(|p| p.as_str() == permission)
}

fn short(role: Role) -> &'static str {
    match role {
        Role::Owner => "OWNER",
        Role::OpsManager => "OPS",
        Role::Operator => "OPERATOR",
        Role::ContentManager => "CONTENT",
        Role::Finance => "FINANCE",
    }
}

/// What a caller with the permission may be answered: never 401 or 403, and nothing that
/// says the recipe itself is wrong (400) or the server broke (500).
fn allowed_status(s: u16) -> bool {
    (200..300).contains(&s) || matches!(s, 101 | 404 | 409 | 422 | 502 | 503)
}

/// The `error.code` of an answer's body (or of the live feed's `error` message).
fn error_code(text: &str) -> Option<String> {
    serde_json::from_str::<Value>(text).ok()?["error"]["code"].as_str().map(String::from)
}

/// Whether `concrete` (a recipe's path, query cut off) is an instance of the document's
/// `template` (`/bookings/{id}`).
fn path_matches(template: &str, concrete: &str) -> bool {
    let concrete = concrete.split('?').next().unwrap_or_default();
    let (t, c): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), concrete.split('/').collect());
    t.len() == c.len()
        && t.iter().zip(&c).all(|(t, c)| if t.starts_with('{') && t.ends_with('}') { !c.is_empty() } else { t == c })
}

/// Counts and version sums over every table a command writes: equal before and after a call
/// means the call changed nothing. `forbidden` is counted apart: a refusal adds one.
#[derive(sqlx::FromRow, Debug, PartialEq, Clone, Copy)]
struct Fingerprint {
    events: i64,
    audits: i64,
    forbidden: i64,
    versions: i64,
    n_rows: i64,
}

const FINGERPRINT: &str = "SELECT
    (SELECT COUNT(*) FROM domain_events) AS events,
    (SELECT COUNT(*) FROM audit_log WHERE action <> 'forbidden') AS audits,
    (SELECT COUNT(*) FROM audit_log WHERE action = 'forbidden') AS forbidden,
    CAST((SELECT COALESCE(SUM(version), 0) FROM users) + (SELECT COALESCE(SUM(version), 0) FROM clients)
        + (SELECT COALESCE(SUM(version), 0) FROM models) + (SELECT COALESCE(SUM(version), 0) FROM inquiries)
        + (SELECT COALESCE(SUM(version), 0) FROM bookings) + (SELECT COALESCE(SUM(version), 0) FROM payments)
        + (SELECT COALESCE(SUM(version), 0) FROM tasks) + (SELECT COALESCE(SUM(version), 0) FROM exceptions)
        + (SELECT COALESCE(SUM(version), 0) FROM automation_rules)
        + (SELECT COALESCE(SUM(version), 0) FROM sla_policies)
        + (SELECT COALESCE(SUM(version), 0) FROM availability_rules)
        + (SELECT COALESCE(SUM(version), 0) FROM webhook_subscriptions)
        + (SELECT COALESCE(SUM(version), 0) FROM notification_templates) AS BIGINT) AS versions,
    (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM clients) + (SELECT COUNT(*) FROM models)
        + (SELECT COUNT(*) FROM inquiries) + (SELECT COUNT(*) FROM bookings) + (SELECT COUNT(*) FROM payments)
        + (SELECT COUNT(*) FROM tasks) + (SELECT COUNT(*) FROM exceptions) + (SELECT COUNT(*) FROM notes)
        + (SELECT COUNT(*) FROM automation_rules) + (SELECT COUNT(*) FROM automation_executions)
        + (SELECT COUNT(*) FROM notifications) + (SELECT COUNT(*) FROM refresh_tokens)
        + (SELECT COUNT(*) FROM availability_rules) + (SELECT COUNT(*) FROM availability_slots)
        + (SELECT COUNT(*) FROM webhook_subscriptions) + (SELECT COUNT(*) FROM webhooks_out)
        + (SELECT COUNT(*) FROM notification_templates) + (SELECT COUNT(*) FROM dead_jobs)
        + (SELECT COUNT(*) FROM idempotency_keys) AS n_rows";

async fn fingerprint(app: &TestApp) -> Fingerprint {
    let mut h = app.db.acquire().await.unwrap();
    virel_domain::q_one!(&mut h.conn(), Fingerprint, FINGERPRINT).unwrap()
}

/// Logs in: (access token, refresh token, user id).
async fn session(app: &TestApp, email: &str) -> (String, String, String) {
    let (s, b) = app.post(None, "/auth/login", json!({"email": email, "password": "password123"})).await;
    assert_eq!(s, StatusCode::OK, "login {email}: {b}");
    let field = |v: &Value| v.as_str().unwrap().to_string();
    (field(&b["access_token"]), field(&b["refresh_token"]), field(&b["user"]["id"]))
}

/// The ids of what the matrix works on, made by the OWNER before it starts.
#[derive(Default)]
struct Seed {
    owner_id: String,
    /// The client whose contact details must never show unmasked without `clients:pii`.
    client: String,
    /// Refused writes that would be destructive aim here (never at `client`).
    spare_client: String,
    model: String,
    /// The model whose availability rules are edited (bookings use `model`, unrestricted).
    model_free: String,
    /// new
    inquiry: String,
    /// deposit_required, with a requested deposit `payment`.
    booking: String,
    payment: String,
    /// An unassigned open follow_up task and an unassigned open exception, on `booking`.
    task: String,
    exception: String,
    rule: String,
    subscription: String,
    /// The user whose contact fields are read and set; `spare_user` for refused updates.
    user: String,
    spare_user: String,
    sla_policy: String,
    template: String,
}

struct Matrix<'a> {
    app: &'a TestApp,
    admin: String,
    seed: Seed,
    /// Hands out booking slots four hours apart, so no two bookings of the model overlap.
    slots: AtomicI64,
}

fn money(amount: i64) -> Value {
    json!({"amount": amount, "currency": "GBP"})
}

fn rule_body(name: &str) -> Value {
    json!({
        "name": name,
        "enabled": false,
        "trigger": "inquiry.created",
        "conditions": [{"field": "source", "operator": "equals", "value": "phone"}],
        "actions": [{"type": "create_task", "params": {"type": "follow_up"}}]
    })
}

fn model_body(name: &str) -> Value {
    json!({"name": name, "base_location": "London", "languages": ["en"],
        "rates": [{"duration_minutes": 60, "amount": 25000, "currency": "GBP"}]})
}

fn template_body(name: &str) -> Value {
    json!({"name": name, "channel": "sms", "body": "Hello {{ client_name }}, see you soon."})
}

fn subscription_body() -> Value {
    json!({"url": "https://hooks.example.com/virel", "event_types": ["booking.created"]})
}

impl Matrix<'_> {
    fn slot(&self) -> String {
        let n = self.slots.fetch_add(1, Ordering::SeqCst);
        fixtures::at(30 * 24 * 60 + 240 * n).to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    /// Writes as the OWNER, insisting on success; the answer's `id`.
    async fn make(&self, method: Method, path: &str, body: Value) -> String {
        let (s, b) = self.app.send(method.clone(), Some(&self.admin), path, Some(body)).await;
        assert!(s.is_success(), "seeding {method} {path}: {s} {b}");
        b["id"].as_str().unwrap_or_else(|| panic!("seeding {path}: no id in {b}")).to_string()
    }

    async fn fresh_client(&self) -> String {
        let n = rand_n();
        self.make(
            Method::POST,
            "/clients",
            json!({"name": format!("Matrix {n}"), "phone": format!("+4477009{n:06}"), "preferred_channel": "sms"}),
        )
        .await
    }

    /// A new inquiry of the seeded client, moved through `path`.
    async fn fresh_inquiry(&self, path: &[&str]) -> String {
        let body = json!({
            "source": "phone",
            "client_id": self.seed.client,
            "requested_start": self.slot(),
            "duration_minutes": 120,
            "location": "London W1",
            "model_id": self.seed.model,
            "budget": money(40000)
        });
        let id = self.make(Method::POST, "/inquiries", body).await;
        for status in path {
            self.make(Method::POST, &format!("/inquiries/{id}/status"), json!({"status": status})).await;
        }
        id
    }

    /// A new booking of the seeded client and model, created in `status` (draft or pending).
    async fn fresh_booking(&self, status: &str) -> String {
        let body = json!({
            "client_id": self.seed.client,
            "model_id": self.seed.model,
            "start_at": self.slot(),
            "duration_minutes": 120,
            "location": "London W1",
            "price": money(30000),
            "deposit": money(5000),
            "status": status
        });
        self.make(Method::POST, "/bookings", body).await
    }

    /// A new unassigned open task of `kind` on `booking`.
    async fn fresh_task(&self, kind: &str, booking: &str) -> String {
        let body = json!({"type": kind, "title": format!("Matrix {kind}"), "priority": "normal",
            "subject_type": "booking", "subject_id": booking});
        self.make(Method::POST, "/tasks", body).await
    }

    async fn fresh_exception(&self) -> String {
        let body = json!({"type": "no_show_risk", "severity": "medium", "title": "Matrix exception",
            "subject_type": "booking", "subject_id": self.seed.booking});
        self.make(Method::POST, "/exceptions", body).await
    }

    async fn fresh_user(&self) -> String {
        let n = rand_n();
        let body = json!({"email": format!("matrix.user{n}@virel.com"), "name": format!("Matrix User {n}"),
            "role": "OPERATOR", "password": "password123"});
        self.make(Method::POST, "/users", body).await
    }

    async fn seed(app: &TestApp, admin: &str, owner_id: &str) -> Seed {
        let mut m = Matrix {
            app,
            admin: admin.to_string(),
            seed: Seed { owner_id: owner_id.to_string(), ..Default::default() },
            slots: AtomicI64::new(0),
        };
        let anna = json!({"name": "Anna Matrix", "phone": PHONE, "email": EMAIL, "telegram": TELEGRAM,
            "preferred_channel": "sms"});
        m.seed.client = m.make(Method::POST, "/clients", anna).await;
        m.seed.spare_client = m.fresh_client().await;
        m.seed.model = m.make(Method::POST, "/models", model_body("Matrix Model")).await;
        m.seed.model_free = m.make(Method::POST, "/models", model_body("Matrix Free Model")).await;
        m.seed.rule = m.make(Method::POST, "/automation/rules", rule_body("Matrix rule")).await;
        m.seed.subscription = m.make(Method::POST, "/webhooks/subscriptions", subscription_body()).await;
        m.seed.user = m.fresh_user().await;
        m.seed.spare_user = m.fresh_user().await;
        m.seed.template = m.make(Method::PUT, "/notification-templates", template_body("matrix_spare")).await;
        let (_, policies) = app.get(admin, "/sla-policies").await;
        m.seed.sla_policy = policies[0]["id"].as_str().expect("an SLA policy").to_string();
        m.seed.inquiry = m.fresh_inquiry(&[]).await;
        m.seed.booking = m.fresh_booking("pending").await;
        let to_deposit = format!("/bookings/{}/status", m.seed.booking);
        m.make(Method::POST, &to_deposit, json!({"status": "deposit_required"})).await;
        m.seed.payment = app.first_id(admin, &format!("/payments?booking_id={}", m.seed.booking)).await;
        m.seed.task = m.fresh_task("follow_up", &m.seed.booking).await;
        m.seed.exception = m.fresh_exception().await;
        m.seed
    }

    /// The request `op` makes as `who` (None: without a token). `fresh`: the call is expected
    /// to go through, so an operation that changes or removes its object gets one of its own;
    /// refused calls aim at the shared objects (they must change nothing anyway).
    async fn recipe(&self, op: &str, who: Option<&Caller>, fresh: bool) -> Option<Call> {
        let s = &self.seed;
        let me = who.map_or(s.owner_id.clone(), |c| c.id.clone());
        let email = who.map_or("admin@virel.com", |c| c.email);
        Some(match op {
            "login" => post("/auth/login", json!({"email": email, "password": "password123"})),
            "refreshToken" => {
                let (_, refresh, _) = session(self.app, email).await;
                post("/auth/refresh", json!({"refresh_token": refresh}))
            }
            "logout" => {
                // Ends a session of its own, not the one the matrix runs on.
                let (_, refresh, _) = session(self.app, email).await;
                post("/auth/logout", json!({"refresh_token": refresh}))
            }
            "getMe" => get("/me"),
            "getHealth" => get("/health"),

            "listInquiries" => get("/inquiries?limit=200"),
            "getInquiry" => get(format!("/inquiries/{}", s.inquiry)),
            "createInquiry" => post(
                "/inquiries",
                json!({"source": "phone", "client_id": s.client, "requested_start": self.slot(),
                    "duration_minutes": 120, "location": "London W1", "model_id": s.model, "budget": money(40000)}),
            ),
            "transitionInquiry" => {
                let id = if fresh { self.fresh_inquiry(&[]).await } else { s.inquiry.clone() };
                post(format!("/inquiries/{id}/status"), json!({"status": "qualified"}))
            }
            "convertInquiryToBooking" => {
                let id = if fresh {
                    self.fresh_inquiry(&["qualified", "awaiting_client", "awaiting_deposit"]).await
                } else {
                    s.inquiry.clone()
                };
                post(
                    format!("/inquiries/{id}/convert-to-booking"),
                    json!({"model_id": s.model, "price": money(30000), "deposit": money(5000),
                        "start_at": self.slot(), "duration_minutes": 120}),
                )
            }
            "matchInquiry" => post_empty(format!("/inquiries/{}/match", s.inquiry)),

            "listBookings" => get("/bookings?limit=200"),
            "getBooking" => get(format!("/bookings/{}", s.booking)),
            "getBookingTimeline" => get(format!("/bookings/{}/timeline", s.booking)),
            "createBooking" => post(
                "/bookings",
                json!({"client_id": s.client, "model_id": s.model, "start_at": self.slot(), "duration_minutes": 120,
                    "location": "London W1", "price": money(30000), "deposit": money(5000)}),
            ),
            "transitionBooking" => {
                let id = if fresh { self.fresh_booking("draft").await } else { s.booking.clone() };
                post(format!("/bookings/{id}/status"), json!({"status": "pending"}))
            }
            "markBookingClientConfirmed" => post_empty(format!("/bookings/{}/client-confirmed", s.booking)),
            "requestBookingDeposit" => post_empty(format!("/bookings/{}/deposit", s.booking)),

            "listPayments" => get("/payments?limit=200"),
            "getPayment" => get(format!("/payments/{}", s.payment)),
            "refundPayment" => post(format!("/payments/{}/refund", s.payment), json!({"reason": "Matrix refund"})),
            "listStripeEvents" => get("/webhooks/stripe/events"),

            "listTasks" => get("/tasks?limit=200"),
            "getTask" => get(format!("/tasks/{}", s.task)),
            "createTask" => post(
                "/tasks",
                json!({"type": "follow_up", "title": "Call back", "priority": "normal",
                    "subject_type": "booking", "subject_id": s.booking}),
            ),
            "transitionTask" => {
                let id = if fresh { self.fresh_task("follow_up", &s.booking).await } else { s.task.clone() };
                post(format!("/tasks/{id}/status"), json!({"status": "in_progress"}))
            }
            "assignTask" => {
                let id = if fresh { self.fresh_task("follow_up", &s.booking).await } else { s.task.clone() };
                post(format!("/tasks/{id}/assign"), json!({"assignee_id": me}))
            }

            "listExceptions" => get("/exceptions?limit=200"),
            "getException" => get(format!("/exceptions/{}", s.exception)),
            "createException" => post(
                "/exceptions",
                json!({"type": "no_show_risk", "severity": "medium", "title": "Client unsure",
                    "subject_type": "booking", "subject_id": s.booking}),
            ),
            "acknowledgeException" => {
                let id = if fresh { self.fresh_exception().await } else { s.exception.clone() };
                post(format!("/exceptions/{id}/acknowledge"), json!({}))
            }
            "resolveException" => {
                let id = if fresh {
                    let id = self.fresh_exception().await;
                    self.make(Method::POST, &format!("/exceptions/{id}/acknowledge"), json!({})).await;
                    id
                } else {
                    s.exception.clone()
                };
                post(format!("/exceptions/{id}/resolve"), json!({"resolution": "Client called back"}))
            }
            "transitionException" => {
                let id = if fresh { self.fresh_exception().await } else { s.exception.clone() };
                post(format!("/exceptions/{id}/status"), json!({"status": "dismissed", "resolution": "Not an issue"}))
            }
            "assignException" => {
                let id = if fresh { self.fresh_exception().await } else { s.exception.clone() };
                post(format!("/exceptions/{id}/assign"), json!({"assignee_id": me}))
            }
            "createNote" => post(
                "/notes",
                json!({"subject_type": "booking", "subject_id": s.booking, "text": "Client prefers a call"}),
            ),

            "listClients" => get("/clients?limit=200"),
            "getClient" => get(format!("/clients/{}", s.client)),
            "createClient" => {
                let n = rand_n();
                post(
                    "/clients",
                    json!({"name": format!("New Client {n}"), "phone": format!("+4477007{n:06}"),
                        "email": format!("new.client{n}@example.com"), "preferred_channel": "email"}),
                )
            }
            "updateClient" => patch(format!("/clients/{}", s.client), json!({"notes": "Prefers evenings"})),
            "blockClient" => {
                let id = if fresh { self.fresh_client().await } else { s.spare_client.clone() };
                post(format!("/clients/{id}/block"), json!({"reason": "Repeated no-shows"}))
            }

            "listModels" => get("/models?limit=200"),
            "getModel" => get(format!("/models/{}", s.model)),
            "createModel" => post("/models", model_body("Matrix New Model")),
            "updateModel" => patch(format!("/models/{}", s.model), json!({"profile_text": "Speaks three languages."})),
            "getModelContact" => get(format!("/models/{}/contact", s.model)),
            "setModelContact" => put(
                format!("/models/{}/contact", s.model),
                json!({"phone": "+447700900111", "preferred_channel": "sms"}),
            ),
            "getAvailabilityRules" => get(format!("/models/{}/availability-rules", s.model_free)),
            "replaceAvailabilityRules" => put(
                format!("/models/{}/availability-rules", s.model_free),
                json!({"time_zone": "Europe/London", "weekly": [{"day": "fri", "start": "18:00", "end": "02:00"}]}),
            ),
            "listFreeWindows" => {
                let (from, to) = (fixtures::at(0), fixtures::at(7 * 24 * 60));
                let f = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
                get(format!("/availability?from={}&to={}&model_id={}", f(from), f(to), s.model_free))
            }

            "listUsers" => get("/users?limit=200"),
            "createUser" => {
                let n = rand_n();
                post(
                    "/users",
                    json!({"email": format!("matrix.new{n}@virel.com"), "name": format!("New User {n}"),
                        "role": "OPERATOR", "password": "password123"}),
                )
            }
            "updateUser" => {
                // Deactivates a user of its own: never one the matrix runs as.
                let id = if fresh { self.fresh_user().await } else { s.spare_user.clone() };
                patch(format!("/users/{id}"), json!({"active": false}))
            }
            "getUserContact" => get(format!("/users/{}/contact", s.user)),
            "setUserContact" => {
                put(format!("/users/{}/contact", s.user), json!({"phone": "+447700900222", "preferred_channel": "sms"}))
            }
            "listAuditEntries" => get("/audit?limit=50"),

            "listAutomationRules" => get("/automation/rules"),
            "getAutomationRule" => get(format!("/automation/rules/{}", s.rule)),
            "createAutomationRule" => post("/automation/rules", rule_body("Matrix created rule")),
            "replaceAutomationRule" => put(format!("/automation/rules/{}", s.rule), rule_body("Matrix rule, edited")),
            "deleteAutomationRule" => {
                let id = if fresh {
                    self.make(Method::POST, "/automation/rules", rule_body("Matrix doomed rule")).await
                } else {
                    s.rule.clone()
                };
                delete(format!("/automation/rules/{id}"))
            }
            "testAutomationRule" => post(
                format!("/automation/rules/{}/test", s.rule),
                json!({"event": {"type": "inquiry.created", "payload": {"source": "phone"}}}),
            ),
            "listAutomationExecutions" => get("/automation/executions"),

            "listActionCenterItems" => get("/action-center"),
            "confirmActionCenterItem" => {
                // A confirm_booking task on a pending booking of its own: Confirm moves it on.
                let id = if fresh {
                    let booking = self.fresh_booking("pending").await;
                    self.fresh_task("confirm_booking", &booking).await
                } else {
                    s.task.clone()
                };
                post_empty(format!("/action-center/task/{id}/confirm"))
            }
            "contactActionCenterItem" => post(format!("/action-center/task/{}/contact", s.task), json!({})),
            "noteActionCenterItem" => {
                post(format!("/action-center/task/{}/note", s.task), json!({"text": "Left a voicemail"}))
            }
            "assignActionCenterItem" => {
                let id = if fresh { self.fresh_task("follow_up", &s.booking).await } else { s.task.clone() };
                post(format!("/action-center/task/{id}/assign"), json!({"assignee_id": me}))
            }
            "acknowledgeActionCenterItem" => {
                let id = if fresh { self.fresh_task("follow_up", &s.booking).await } else { s.task.clone() };
                post_empty(format!("/action-center/task/{id}/acknowledge"))
            }
            "listSlaPolicies" => get("/sla-policies"),
            "updateSlaPolicy" => patch(format!("/sla-policies/{}", s.sla_policy), json!({"at_risk_percent": 25})),

            "listNotifications" => get("/notifications?limit=200"),
            "listNotificationTemplates" => get("/notification-templates"),
            "saveNotificationTemplate" => put("/notification-templates", template_body("matrix_saved")),
            "createNotificationTemplate" => post("/notification-templates", template_body("matrix_created")),
            "deleteNotificationTemplate" => {
                let id = if fresh {
                    self.make(
                        Method::PUT,
                        "/notification-templates",
                        template_body(&format!("matrix_doomed_{}", rand_n())),
                    )
                    .await
                } else {
                    s.template.clone()
                };
                delete(format!("/notification-templates/{id}"))
            }

            "listWebhookSubscriptions" => get("/webhooks/subscriptions"),
            "createWebhookSubscription" => post("/webhooks/subscriptions", subscription_body()),
            "getWebhookSubscription" => get(format!("/webhooks/subscriptions/{}", s.subscription)),
            "replaceWebhookSubscription" => put(
                format!("/webhooks/subscriptions/{}", s.subscription),
                json!({"url": "https://hooks.example.com/virel/v2", "event_types": ["booking.created"], "enabled": false}),
            ),
            "deleteWebhookSubscription" => {
                let id = if fresh {
                    self.make(Method::POST, "/webhooks/subscriptions", subscription_body()).await
                } else {
                    s.subscription.clone()
                };
                delete(format!("/webhooks/subscriptions/{id}"))
            }
            "listWebhookDeliveries" => get("/webhooks/deliveries"),

            "getQueueOverview" => get("/system/queue"),
            "getMetrics" => get("/system/metrics"),
            // No such dead job (and no queues in this process): 404 or 503 once allowed.
            "retryDeadJob" => post_empty(format!("/system/queue/ops/jobs/{}/retry", uuid::Uuid::now_v7())),
            _ => return None,
        })
    }
}

/// The live feed, as `token` (None: no credential). `first_message`: the token goes in the
/// first message instead of the `Authorization` header. The answer as a status and the text
/// received: the handshake's refusal (403, 401); 101 when it connected and sent a snapshot;
/// 401 or 403 for an `error` message with that code when the token came in the first message
/// (or there was none); 0 for anything else (an upgrade with a header credential that gets an
/// error instead of a snapshot was let in when it should have been refused).
async fn live_feed(app: &TestApp, token: Option<&str>, first_message: bool) -> (u16, String) {
    let url = format!("{}/ws", app.base.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().unwrap();
    if let (Some(t), false) = (token, first_message) {
        req.headers_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let mut ws = match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => ws,
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp.body().as_ref().map(|b| String::from_utf8_lossy(b).to_string()).unwrap_or_default();
            return (resp.status().as_u16(), body);
        }
        Err(e) => return (0, format!("handshake failed: {e}")),
    };
    if first_message || token.is_none() {
        // Without a credential the first message must carry the token.
        let hello = match token {
            Some(t) if first_message => json!({"token": t}),
            _ => json!({"type": "resync"}),
        };
        ws.send(Message::Text(hello.to_string().into())).await.unwrap();
    }
    let first = next_json(&mut ws, Duration::from_secs(5)).await;
    let _ = ws.close(None).await;
    let Some(first) = first else { return (0, "no message".into()) };
    // A credential in the header is judged before the upgrade: once upgraded, only a snapshot
    // will do. Without one, the first message's answer says how it was judged.
    let judged_after_upgrade = first_message || token.is_none();
    let status = match (first["type"].as_str(), first["error"]["code"].as_str()) {
        (Some("snapshot"), _) => 101,
        (_, Some("forbidden")) if judged_after_upgrade => 403,
        (_, Some("unauthorized")) if judged_after_upgrade => 401,
        _ => 0,
    };
    (status, first.to_string())
}

/// The document's operations, checked against `PERMISSIONS`.
fn operations(doc: &Value) -> Vec<Operation> {
    let table: BTreeMap<&str, Option<&str>> = PERMISSIONS.iter().copied().collect();
    assert_eq!(table.len(), PERMISSIONS.len(), "an operationId listed twice in PERMISSIONS");
    let known: Vec<&str> = ALL_PERMISSIONS.iter().map(|p| p.as_str()).collect();
    let mut ops = Vec::new();
    let mut problems = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            assert!(
                matches!(method.as_str(), "get" | "post" | "put" | "patch" | "delete"),
                "{method} {path}: a method the matrix cannot call"
            );
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            let permission = op.get("x-permission").map(|p| p.as_str().expect("x-permission is a string").to_string());
            let public = op["security"].as_array().is_some_and(|s| s.is_empty());
            match table.get(id) {
                None => problems.push(format!("{id} ({method} {path}) is not in PERMISSIONS")),
                Some(listed) if *listed != permission.as_deref() => problems
                    .push(format!("{id}: the document says x-permission {permission:?}, PERMISSIONS says {listed:?}")),
                Some(_) => {}
            }
            if let Some(p) = &permission
                && !known.contains(&p.as_str())
            {
                problems.push(format!("{id}: x-permission {p} is no permission of domain/src/policy.rs"));
            }
            if public && permission.is_some() {
                problems.push(format!("{id} is public but names the permission {permission:?}"));
            }
            if ops.iter().any(|o: &Operation| o.id == id) {
                problems.push(format!("operationId {id} used twice"));
            }
            ops.push(Operation {
                id: id.to_string(),
                method: method.to_uppercase(),
                path: path.clone(),
                permission,
                public,
            });
        }
    }
    for (id, _) in PERMISSIONS {
        if !ops.iter().any(|o| o.id == *id) {
            problems.push(format!("PERMISSIONS lists {id}, which the document does not have"));
        }
    }
    assert!(problems.is_empty(), "the document and PERMISSIONS disagree:\n{}", problems.join("\n"));
    ops
}

/// Every raw contact detail of every client, as the OWNER sees them.
async fn raw_contacts(app: &TestApp, admin: &str) -> Vec<String> {
    let (s, b) = app.get(admin, "/clients?limit=200").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let mut out = Vec::new();
    for c in b["items"].as_array().unwrap() {
        for f in ["phone", "email", "telegram"] {
            if let Some(v) = c[f].as_str().filter(|v| v.len() > 3) {
                out.push(v.to_string());
                if f == "phone" {
                    out.push(v.trim_start_matches('+').to_string());
                }
            }
        }
    }
    for raw in [PHONE, EMAIL, TELEGRAM] {
        assert!(out.iter().any(|v| v == raw), "the OWNER sees {raw} unmasked: {out:?}");
    }
    out
}

/// One cell of the printed matrix.
struct Cell {
    status: u16,
    ok: bool,
}

fn print_matrix(rows: &[(String, String, Vec<Cell>)]) -> String {
    let mut out = format!("{:<40} {:<22}", "operation", "x-permission");
    for (role, _) in ROLES {
        out.push_str(&format!(" {:>9}", short(role)));
    }
    out.push_str(&format!(" {:>9}\n", "no token"));
    for (op, permission, cells) in rows {
        out.push_str(&format!("{op:<40} {permission:<22}"));
        for c in cells {
            let mark = if c.ok { " " } else { "!" };
            out.push_str(&format!(" {:>8}{mark}", c.status));
        }
        out.push('\n');
    }
    out.push_str("(! marks an answer the table does not allow)\n");
    out
}

both_engines!(every_operation_as_every_role, async |app: TestApp| {
    let started = std::time::Instant::now();
    let (_, doc) = app.send(Method::GET, None, "/openapi.json", None).await;
    let ops = operations(&doc);
    assert!(ops.iter().any(|o| o.id == "connectLiveFeed" && o.method == "GET" && o.path == "/ws"), "the live feed");

    let mut callers = Vec::new();
    for (role, email) in ROLES {
        let (token, _, id) = session(&app, email).await;
        callers.push(Caller { role, email, token, id });
    }
    let admin = callers[0].token.clone();
    let seed = Matrix::seed(&app, &admin, &callers[0].id).await;
    // The seeding used the first slots.
    let m = Matrix { app: &app, admin: admin.clone(), seed, slots: AtomicI64::new(1000) };
    let raw = raw_contacts(&app, &admin).await;

    let mut rows: Vec<(String, String, Vec<Cell>)> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    // The answers to getClient, by role, for the PII checks after the matrix.
    let mut client_reads: Vec<(Role, u16, String)> = Vec::new();

    for op in &ops {
        let permission = op.permission.clone();
        let label = permission.clone().unwrap_or_else(|| if op.public { "(public)" } else { "(signed in)" }.into());
        let variants: &[bool] = if op.id == "connectLiveFeed" { &[false, true] } else { &[false] };
        for &first_message in variants {
            let name = if first_message { format!("{} (token in 1st message)", op.id) } else { op.id.clone() };
            let mut cells = Vec::new();
            for caller in callers.iter().map(Some).chain([None]) {
                let allowed = match caller {
                    Some(c) => permission.as_deref().is_none_or(|p| has(c.role, p)),
                    None => op.public,
                };
                let who = caller.map_or("no token".to_string(), |c| short(c.role).to_string());
                let (status, text, before) = if op.id == "connectLiveFeed" {
                    let before = fingerprint(&app).await;
                    let (status, text) = live_feed(&app, caller.map(|c| c.token.as_str()), first_message).await;
                    (status, text, before)
                } else {
                    let Some(call) = m.recipe(&op.id, caller, allowed).await else {
                        failures
                            .push(format!("{} ({} {}): no request recipe in the matrix", op.id, op.method, op.path));
                        cells.push(Cell { status: 0, ok: false });
                        continue;
                    };
                    if call.method.as_str() != op.method || !path_matches(&op.path, &call.path) {
                        failures.push(format!(
                            "{}: the recipe calls {} {}, the document says {} {}",
                            op.id, call.method, call.path, op.method, op.path
                        ));
                    }
                    // After the recipe: it may have made the call's own objects.
                    let before = fingerprint(&app).await;
                    let (s, b) = app.send(call.method, caller.map(|c| c.token.as_str()), &call.path, call.body).await;
                    (s.as_u16(), b.to_string(), before)
                };
                let after = fingerprint(&app).await;
                let mut ok = true;
                let mut fail = |why: String| {
                    ok = false;
                    failures.push(format!("{name} as {who}: {why}"));
                };
                match (caller, allowed) {
                    (_, true) => {
                        if !allowed_status(status) {
                            fail(format!("expected to be let through, got {status}: {text:.300}"));
                        }
                    }
                    (Some(c), false) => {
                        if status != 403 {
                            fail(format!("lacks {label}: expected 403, got {status}: {text:.300}"));
                        } else if error_code(&text) != Some("forbidden".into()) {
                            fail(format!("403 without the error code forbidden: {text:.300}"));
                        }
                        let expected = Fingerprint { forbidden: before.forbidden + 1, ..before };
                        if after != expected {
                            fail(format!("a refused call changed something: before {before:?}, after {after:?}"));
                        } else if status == 403 {
                            let (_, audit) = app.get(&admin, "/audit?action=forbidden&limit=1").await;
                            let entry = &audit["items"][0];
                            if entry["actor"] != c.id.as_str() || entry["after"]["permission"] != label.as_str() {
                                fail(format!("the refusal's audit entry names another caller or permission: {entry}"));
                            }
                        }
                    }
                    (None, false) => {
                        if status != 401 || error_code(&text) != Some("unauthorized".into()) {
                            fail(format!("expected 401 unauthorized without a token, got {status}: {text:.300}"));
                        }
                        if after != before {
                            fail(format!("a call without a token changed something: {before:?} → {after:?}"));
                        }
                    }
                }
                if let Some(c) = caller
                    && !c.role.can(Permission::ClientsPii)
                {
                    let leaked: Vec<&str> = raw.iter().map(String::as_str).filter(|r| text.contains(r)).collect();
                    if !leaked.is_empty() {
                        fail(format!("shows raw contact details {leaked:?} without clients:pii: {text:.300}"));
                    }
                }
                if op.id == "getClient"
                    && let Some(c) = caller
                {
                    client_reads.push((c.role, status, text.clone()));
                }
                cells.push(Cell { status, ok });
            }
            rows.push((name, label.clone(), cells));
        }
    }

    // The masking is really there to see: raw for clients:pii, masked for the others.
    for (role, status, text) in &client_reads {
        if !has(*role, "clients:read") {
            continue;
        }
        let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let (phone, email) =
            if role.can(Permission::ClientsPii) { (PHONE, EMAIL) } else { (PHONE_MASKED, EMAIL_MASKED) };
        if *status != 200 || body["phone"] != phone || body["email"] != email {
            failures
                .push(format!("getClient as {}: expected {phone} and {email}, got {status} {text:.300}", short(*role)));
        }
    }

    let took = started.elapsed();
    if !failures.is_empty() {
        panic!(
            "the authorization matrix ({} operations, {took:?}):\n{}\n{} failure(s):\n{}",
            ops.len(),
            print_matrix(&rows),
            failures.len(),
            failures.join("\n")
        );
    }
    println!("{}", print_matrix(&rows));
    println!("{} operations × {} callers in {took:?}", ops.len(), ROLES.len() + 1);
});
