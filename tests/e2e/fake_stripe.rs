//! A local Stripe-compatible server for the payment tests: PaymentIntents, refunds and the
//! event list over the same form-encoded API, honouring `Idempotency-Key` the way Stripe does
//! (the first result is kept and replayed), recording every request, and signing webhooks
//! exactly as Stripe does (`t=<unix>,v1=<hex HMAC-SHA256 of "t.payload">`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use poem::http::StatusCode;
use poem::{Request, Response};
use serde_json::{Value, json};

pub const KEY: &str = "sk_test_fake_4eC39HqLyjWDarjtT1zdp7dc";
pub const WEBHOOK_SECRET: &str = "whsec_current_0123456789";
pub const OLD_WEBHOOK_SECRET: &str = "whsec_previous_9876543210";

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub idempotency_key: Option<String>,
    pub stripe_version: Option<String>,
    pub authorized: bool,
    pub form: Vec<(String, String)>,
}

impl Recorded {
    pub fn field(&self, k: &str) -> Option<&str> {
        self.form.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
pub struct FakeState {
    pub requests: Vec<Recorded>,
    pub intents: HashMap<String, Value>,
    pub refunds: HashMap<String, Value>,
    idem: HashMap<String, (u16, Value)>,
    /// Refund creations to make and keep, but answer 503 as if the answer were lost.
    pub lose_refund_answers: usize,
    /// The next PaymentIntent creations answer this instead (status, body).
    pub refuse_intents: Option<(u16, Value)>,
    /// What `GET /v1/events` lists, newest first.
    pub events: Vec<Value>,
    n: u64,
}

pub struct FakeStripe {
    pub base: String,
    pub state: Arc<Mutex<FakeState>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let h = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn metadata(form: &[(String, String)]) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in form {
        if let Some(inner) = k.strip_prefix("metadata[").and_then(|k| k.strip_suffix(']')) {
            m.insert(inner.to_string(), json!(v));
        }
    }
    Value::Object(m)
}

fn json_response(status: u16, v: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .content_type("application/json")
        .body(v.to_string())
}

fn error(status: u16, kind: &str, message: &str) -> (u16, Value) {
    (status, json!({"error": {"type": kind, "message": message}}))
}

impl FakeState {
    fn next(&mut self, prefix: &str) -> String {
        self.n += 1;
        format!("{prefix}_fake{:04}", self.n)
    }

    fn handle(&mut self, method: &str, path: &str, form: &[(String, String)]) -> (u16, Value, bool) {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method, segs.as_slice()) {
            ("POST", ["v1", "payment_intents"]) => {
                if let Some((s, b)) = self.refuse_intents.clone() {
                    return (s, b, false);
                }
                let id = self.next("pi");
                let field = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
                let pi = json!({
                    "id": id, "object": "payment_intent", "status": "requires_payment_method",
                    "amount": field("amount").parse::<i64>().unwrap_or(0), "currency": field("currency"),
                    "client_secret": format!("{id}_secret_fake"), "metadata": metadata(form),
                    "livemode": false, "some_future_field": {"nested": true}
                });
                self.intents.insert(id, pi.clone());
                (200, pi, false)
            }
            ("GET", ["v1", "payment_intents", id]) => match self.intents.get(*id) {
                Some(pi) => (200, pi.clone(), false),
                None => {
                    let (s, b) = error(404, "invalid_request_error", "No such payment_intent");
                    (s, b, false)
                }
            },
            ("POST", ["v1", "payment_intents", id, "cancel"]) => match self.intents.get_mut(*id) {
                Some(pi) => {
                    pi["status"] = json!("canceled");
                    (200, pi.clone(), false)
                }
                None => {
                    let (s, b) = error(404, "invalid_request_error", "No such payment_intent");
                    (s, b, false)
                }
            },
            ("POST", ["v1", "refunds"]) => {
                let field = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
                let pi_id = field("payment_intent");
                let Some(pi) = self.intents.get(&pi_id).cloned() else {
                    let (s, b) = error(400, "invalid_request_error", "No such payment_intent");
                    return (s, b, false);
                };
                let id = self.next("re");
                let amount = field("amount").parse::<i64>().unwrap_or(pi["amount"].as_i64().unwrap_or(0));
                let r = json!({
                    "id": id, "object": "refund", "status": "succeeded", "amount": amount,
                    "currency": pi["currency"], "payment_intent": pi_id, "metadata": metadata(form)
                });
                self.refunds.insert(id, r.clone());
                let lose = self.lose_refund_answers > 0;
                if lose {
                    self.lose_refund_answers -= 1;
                }
                (200, r, lose)
            }
            ("GET", ["v1", "refunds", id]) => match self.refunds.get(*id) {
                Some(r) => (200, r.clone(), false),
                None => {
                    let (s, b) = error(404, "invalid_request_error", "No such refund");
                    (s, b, false)
                }
            },
            ("GET", ["v1", "events"]) => {
                (200, json!({"object": "list", "data": self.events.clone(), "has_more": false}), false)
            }
            _ => {
                let (s, b) = error(404, "invalid_request_error", "Unrecognized request URL");
                (s, b, false)
            }
        }
    }
}

impl FakeStripe {
    pub async fn start() -> FakeStripe {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let st = state.clone();
        let app = poem::endpoint::make(move |req: Request| {
            let st = st.clone();
            async move { Self::serve(st, req).await }
        });
        let acceptor =
            poem::listener::Listener::into_acceptor(poem::listener::TcpListener::bind("127.0.0.1:0")).await.unwrap();
        let addr = poem::listener::Acceptor::local_addr(&acceptor)[0].as_socket_addr().cloned().unwrap();
        let server = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
        });
        FakeStripe { base: format!("http://{addr}"), state, server }
    }

    async fn serve(st: Arc<Mutex<FakeState>>, mut req: Request) -> Response {
        let header = |req: &Request, k: &str| req.headers().get(k).and_then(|v| v.to_str().ok()).map(String::from);
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let idempotency_key = header(&req, "idempotency-key");
        let stripe_version = header(&req, "stripe-version");
        let authorized = header(&req, "authorization").as_deref() == Some(&format!("Bearer {KEY}"));
        let body = req.take_body().into_string().await.unwrap_or_default();
        let mut form = parse_form(&body);
        form.extend(parse_form(&query));
        let mut s = st.lock().unwrap();
        s.requests.push(Recorded {
            method: method.clone(),
            path: path.clone(),
            idempotency_key: idempotency_key.clone(),
            stripe_version,
            authorized,
            form: form.clone(),
        });
        if !authorized {
            let (c, b) = error(401, "invalid_request_error", "Invalid API Key provided");
            return json_response(c, &b);
        }
        if method == "POST"
            && let Some(k) = &idempotency_key
            && let Some((c, b)) = s.idem.get(k)
        {
            return json_response(*c, b);
        }
        let (code, body, lose) = s.handle(&method, &path, &form);
        // Stripe keeps the result of a request that ran; one refused before it ran (a
        // validation error, an outage) is not kept, so a retry runs it.
        if method == "POST"
            && code == 200
            && let Some(k) = idempotency_key
        {
            s.idem.insert(k, (code, body.clone()));
        }
        if lose {
            // Made and kept; the answer is "lost" on the way back.
            let (c, b) = error(503, "api_error", "the answer was lost");
            return json_response(c, &b);
        }
        json_response(code, &body)
    }

    /// The payments settings pointing at this server.
    pub fn payments(&self) -> virel_domain::payments::Payments {
        let client = virel_workers::providers::stripe::StripeClient::new(KEY, &self.base).unwrap();
        virel_domain::payments::Payments {
            provider: Some(Arc::new(client)),
            webhook: Some(virel_domain::payments::WebhookSecrets::new(WEBHOOK_SECRET, 300)),
        }
    }

    pub fn requests(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.iter().filter(|r| r.method == method && r.path == path).cloned().collect()
    }

    pub fn intent(&self, id: &str) -> Value {
        self.state.lock().unwrap().intents.get(id).cloned().unwrap()
    }

    /// An event as Stripe sends it, about `object`.
    pub fn event(&self, kind: &str, object: Value) -> Value {
        let id = self.state.lock().unwrap().next("evt");
        json!({
            "id": id, "object": "event", "api_version": virel_workers::providers::stripe::STRIPE_VERSION,
            "created": chrono::Utc::now().timestamp(), "type": kind, "livemode": false,
            "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null},
            "data": {"object": object}
        })
    }

    /// The customer pays (or fails to) at Stripe: the PaymentIntent changes and the event that
    /// Stripe would send is returned.
    pub fn pay(&self, pi: &str, succeed: bool) -> Value {
        let obj = {
            let mut s = self.state.lock().unwrap();
            let p = s.intents.get_mut(pi).unwrap();
            if succeed {
                p["status"] = json!("succeeded");
            } else {
                p["status"] = json!("requires_payment_method");
                p["last_payment_error"] = json!({
                    "type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
                    "message": "Your card has insufficient funds."
                });
            }
            p.clone()
        };
        self.event(if succeed { "payment_intent.succeeded" } else { "payment_intent.payment_failed" }, obj)
    }
}

/// `Stripe-Signature` for `payload` signed at `t` with each of `secrets`.
pub fn signature(secrets: &[&str], t: i64, payload: &str) -> String {
    let mut h = format!("t={t}");
    for s in secrets {
        h += &format!(",v1={}", virel_domain::payments::sign(s.as_bytes(), t, payload.as_bytes()));
    }
    h
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
