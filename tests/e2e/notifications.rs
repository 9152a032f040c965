//! Notifications against local servers (SPEC §10): a real SMTP server written here (it speaks
//! enough of the protocol for lettre to deliver), and Bot API-, Twilio- and Resend-compatible
//! servers on wiremock that check the tokens. Retries with growing delays, permanent refusals,
//! Telegram's `retry_after`, fallback to SMS, the Contact note only when a message went out,
//! strict templates, and no secret in any response.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use uuid::Uuid;
use virel_workers::notify::{Channels, ChannelsConfig};
use wiremock::matchers::{header, header_exists, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::both_engines_full;
use crate::fixtures;
use crate::harness::{Engine, TestApp, WorkerOptions};

const DIVA: &str = "1111:DIVA-bot-token-secret";
const KESHA: &str = "2222:KESHA-bot-token-secret";
const TWILIO_SID: &str = "AC0123456789";
const TWILIO_TOKEN: &str = "twilio-auth-token-secret";
const SMTP_PASSWORD: &str = "smtp-pass-hunter2";
const RESEND_KEY: &str = "re_resend-key-secret";

// ---------------------------------------------------------------------------------------------
// A tiny SMTP server: greets, takes EHLO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, Default)]
pub struct Mail {
    pub auth: Option<String>,
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

#[derive(Clone)]
pub struct Smtp {
    pub port: u16,
    pub mails: Arc<Mutex<Vec<Mail>>>,
}

/// Starts the server; `rcpt_reply` is its answer to RCPT TO (`250 ok`, or `550 ...` to refuse).
pub async fn smtp_server(rcpt_reply: &'static str) -> Smtp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
    let store = mails.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            let store = store.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                let _ = w.write_all(b"220 localhost ESMTP test\r\n").await;
                let mut mail = Mail::default();
                let mut auth = None;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.trim_end().to_string();
                    let upper = cmd.to_ascii_uppercase();
                    let reply: String = if upper.starts_with("EHLO") {
                        "250-localhost\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n".into()
                    } else if upper.starts_with("HELO") {
                        "250 localhost\r\n".into()
                    } else if upper.starts_with("AUTH PLAIN") {
                        auth = cmd.split_whitespace().nth(2).map(String::from);
                        "235 2.7.0 Authentication successful\r\n".into()
                    } else if upper.starts_with("MAIL FROM") {
                        mail = Mail { auth: auth.clone(), from: cmd[10..].trim().to_string(), ..Default::default() };
                        "250 ok\r\n".into()
                    } else if upper.starts_with("RCPT TO") {
                        mail.to.push(cmd[8..].trim().to_string());
                        format!("{rcpt_reply}\r\n")
                    } else if upper == "DATA" {
                        let _ = w.write_all(b"354 go ahead\r\n").await;
                        let mut data = String::new();
                        loop {
                            line.clear();
                            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == ".\r\n" || line == ".\n" {
                                break;
                            }
                            data.push_str(&line);
                        }
                        // Undo quoted-printable soft line breaks, so tests read the text.
                        mail.data = data.replace("=\r\n", "").replace("=3D", "=");
                        store.lock().unwrap().push(std::mem::take(&mut mail));
                        "250 2.0.0 queued\r\n".into()
                    } else if upper == "QUIT" {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        "250 ok\r\n".into()
                    };
                    if w.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Smtp { port, mails }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn sid(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_string()
}

/// Channels on the given local servers (None leaves a channel disabled).
fn channels(
    tg: Option<&MockServer>,
    smtp: Option<&Smtp>,
    twilio: Option<&MockServer>,
    resend: Option<&MockServer>,
) -> Channels {
    let cfg = ChannelsConfig {
        telegram_api_base: tg.map(|s| s.uri()),
        telegram_diva_token: tg.map(|_| DIVA.to_string()),
        telegram_kesha_token: tg.map(|_| KESHA.to_string()),
        smtp_url: smtp.map(|s| format!("smtp://virel:{SMTP_PASSWORD}@127.0.0.1:{}", s.port)),
        email_from: (smtp.is_some() || resend.is_some()).then(|| "Virel <ops@virel.test>".to_string()),
        resend_api_key: resend.map(|_| RESEND_KEY.to_string()),
        resend_api_base: resend.map(|s| s.uri()),
        twilio_account_sid: twilio.map(|_| TWILIO_SID.to_string()),
        twilio_auth_token: twilio.map(|_| TWILIO_TOKEN.to_string()),
        twilio_from: twilio.map(|_| "+447700900000".to_string()),
        twilio_messaging_service_sid: None,
        twilio_api_base: twilio.map(|s| s.uri()),
        twilio_status_callback: None,
    };
    Channels::from_config(&cfg).unwrap()
}

fn opts(ch: Channels) -> WorkerOptions {
    WorkerOptions {
        channels: Some(ch),
        scheduler: false,
        twilio: Some(virel_api::TwilioHook { auth_token: TWILIO_TOKEN.into(), url: None }),
        ..Default::default()
    }
}

fn tg_ok(message_id: i64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": {"message_id": message_id}}))
}

fn twilio_ok() -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({"sid": "SM0000000000000000000000000000abcd", "status": "queued"}))
}

/// A client with these contact fields, a booking for them and a contact_client task on it.
async fn booking_task_for(app: &TestApp, admin: &str, client: Value) -> (String, String, String) {
    let c = app.ok(admin, "/clients", client, 201).await;
    let m = fixtures::model(app, admin).await;
    let b = fixtures::booking_for(app, admin, &m["id"], &c["id"], 2 * 24 * 60, "draft").await;
    let t = app
        .ok(
            admin,
            "/tasks",
            json!({"type": "contact_client", "title": "Call the client", "subject_type": "booking", "subject_id": b["id"]}),
            201,
        )
        .await;
    (sid(&c), sid(&b), sid(&t))
}

async fn contact(app: &TestApp, token: &str, task: &str) -> Value {
    let (s, body) = app.post(Some(token), &format!("/action-center/task/{task}/contact"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "contact: {body}");
    body
}

/// The ledger's rows about a subject, oldest first.
async fn ledger(app: &TestApp, token: &str, subject: &str) -> Vec<Value> {
    let (s, b) = app.get(token, &format!("/notifications?subject_id={subject}&limit=200")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let mut v = b["items"].as_array().unwrap().clone();
    v.reverse();
    v
}

/// Waits until the subject's ledger holds no row still queued or sending, and returns it.
async fn settled(app: &TestApp, token: &str, subject: &str, secs: u64) -> Vec<Value> {
    app.eventually(secs, || async {
        let rows = ledger(app, token, subject).await;
        (!rows.is_empty() && rows.iter().all(|r| matches!(r["status"].as_str(), Some("sent" | "delivered" | "failed"))))
            .then_some(rows)
    })
    .await
    .unwrap_or_else(|| panic!("the notifications about {subject} did not settle"))
}

async fn notes_of(app: &TestApp, token: &str, booking: &str) -> Vec<String> {
    let (s, tl) = app.get(token, &format!("/bookings/{booking}/timeline")).await;
    assert_eq!(s, StatusCode::OK, "{tl}");
    tl["notes"].as_array().unwrap().iter().map(|n| n["text"].as_str().unwrap_or_default().to_string()).collect()
}

async fn exceptions_about(app: &TestApp, token: &str, kind: &str, subject: &str) -> Vec<Value> {
    let (s, b) = app.get(token, &format!("/exceptions?type={kind}&limit=200")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["items"].as_array().unwrap().iter().filter(|e| e["subject_id"] == subject).cloned().collect()
}

fn n() -> u128 {
    fixtures::rand_n()
}

/// A fresh UK mobile number (the seed's clients hold some).
fn phone() -> String {
    format!("+4477008{:05}", n() % 100_000)
}

/// Records when each request came (for the delays between attempts).
fn timed(
    times: Arc<Mutex<Vec<Instant>>>,
    reply: impl Fn(usize) -> ResponseTemplate + Send + Sync + 'static,
) -> impl Fn(&Request) -> ResponseTemplate + Send + Sync + 'static {
    move |_req: &Request| {
        let mut t = times.lock().unwrap();
        t.push(Instant::now());
        reply(t.len())
    }
}

// ---------------------------------------------------------------------------------------------
// Every provider receives its messages
// ---------------------------------------------------------------------------------------------

async fn all_providers_deliver(engine: Engine) {
    let tg = MockServer::start().await;
    let twilio = MockServer::start().await;
    let smtp = smtp_server("250 ok").await;
    Mock::given(method("POST")).and(path(format!("/bot{DIVA}/sendMessage"))).respond_with(tg_ok(7)).mount(&tg).await;
    Mock::given(method("POST")).and(path(format!("/bot{KESHA}/sendMessage"))).respond_with(tg_ok(8)).mount(&tg).await;
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{TWILIO_SID}:{TWILIO_TOKEN}"))
    );
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json")))
        .and(header("authorization", basic.as_str()))
        .respond_with(twilio_ok())
        .mount(&twilio)
        .await;
    let app = TestApp::start_full(engine, opts(channels(Some(&tg), Some(&smtp), Some(&twilio), None))).await;
    let admin = app.login("admin@virel.com").await;

    // Health: every channel up, with its provider; no setting's value.
    let (s, h) = app.send(reqwest::Method::GET, None, "/health", None).await;
    assert_eq!(s, StatusCode::OK, "{h}");
    for (ch, provider) in
        [("telegram_diva", "telegram"), ("telegram_kesha", "telegram"), ("email", "smtp"), ("sms", "twilio")]
    {
        assert_eq!(h["checks"]["channels"][ch]["status"], "up", "{ch}: {h}");
        assert_eq!(h["checks"]["channels"][ch]["provider"], provider, "{ch}: {h}");
    }

    // Email over SMTP, with the credentials of SMTP_URL: the rendered body arrives.
    let k = n();
    let (_, b_mail, t_mail) = booking_task_for(
        &app,
        &admin,
        json!({"name": format!("Emma {k}"), "email": format!("emma{k}@example.com"), "preferred_channel": "email"}),
    )
    .await;
    let out = contact(&app, &admin, &t_mail).await;
    assert_eq!(out["channel"], "email", "{out}");
    let rows = settled(&app, &admin, &b_mail, 20).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "sent", "{rows:?}");
    assert!(rows[0]["provider_id"].as_str().is_some_and(|p| p.contains('@')), "the Message-ID: {rows:?}");
    let mails = smtp.mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].to[0].contains(&format!("emma{k}@example.com")), "{mails:?}");
    assert!(mails[0].data.contains(&format!("Hello Emma {k}, we tried to reach you")), "{}", mails[0].data);
    assert!(mails[0].data.contains("Subject: About your booking"), "{}", mails[0].data);
    let auth =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, mails[0].auth.clone().unwrap()).unwrap();
    assert!(String::from_utf8_lossy(&auth).contains(SMTP_PASSWORD), "SMTP_URL's credentials are used");
    // The note comes once the message went out, and the message is on the booking's timeline.
    let notes = app
        .eventually(5, || async {
            let notes = notes_of(&app, &admin, &b_mail).await;
            notes.iter().any(|t| t.starts_with("Contacted the client by email")).then_some(notes)
        })
        .await
        .expect("a Contacted note once sent");
    assert_eq!(notes.iter().filter(|t| t.starts_with("Contacted")).count(), 1, "{notes:?}");
    let (_, tl) = app.get(&admin, &format!("/bookings/{b_mail}/timeline")).await;
    assert_eq!(tl["notifications"][0]["status"], "sent", "{tl}");

    // Telegram DIVA to a client.
    let (_, b_tg, t_tg) = booking_task_for(
        &app,
        &admin,
        json!({"name": format!("Tina {}", n()), "telegram": "@tina_client", "preferred_channel": "telegram"}),
    )
    .await;
    contact(&app, &admin, &t_tg).await;
    let rows = settled(&app, &admin, &b_tg, 20).await;
    assert_eq!(
        (rows[0]["channel"].as_str(), rows[0]["status"].as_str()),
        (Some("telegram_diva"), Some("sent")),
        "{rows:?}"
    );
    let got: Vec<Request> = tg.received_requests().await.unwrap();
    let diva: Vec<&Request> = got.iter().filter(|r| r.url.path().contains(DIVA)).collect();
    assert_eq!(diva.len(), 1);
    let body: Value = serde_json::from_slice(&diva[0].body).unwrap();
    assert_eq!(body["chat_id"], "@tina_client");
    assert!(body["text"].as_str().unwrap().starts_with("Hello Tina"), "{body}");

    // SMS through Twilio: the form with To, From and Body.
    let sam_phone = phone();
    let (_, b_sms, t_sms) = booking_task_for(
        &app,
        &admin,
        json!({"name": format!("Sam {}", n()), "phone": sam_phone, "preferred_channel": "sms"}),
    )
    .await;
    contact(&app, &admin, &t_sms).await;
    let rows = settled(&app, &admin, &b_sms, 20).await;
    assert_eq!((rows[0]["channel"].as_str(), rows[0]["status"].as_str()), (Some("sms"), Some("sent")), "{rows:?}");
    assert_eq!(rows[0]["provider_id"], "SM0000000000000000000000000000abcd");
    let got = twilio.received_requests().await.unwrap();
    assert_eq!(got.len(), 1);
    let form: BTreeMap<String, String> = url_form(&got[0].body);
    assert_eq!(form.get("To"), Some(&sam_phone));
    assert_eq!(form.get("From").map(String::as_str), Some("+447700900000"));
    assert!(form["Body"].starts_with("Hello Sam"), "{form:?}");

    // Twilio's status callback, signed: delivered. A wrong signature changes nothing.
    let hook = format!("{}/webhooks/twilio", app.base);
    let params: BTreeMap<String, String> =
        [("MessageSid", "SM0000000000000000000000000000abcd"), ("MessageStatus", "delivered")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let bad = app.http.post(&hook).header("x-twilio-signature", "AAAA").form(&params).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::FORBIDDEN);
    let signed = twilio_sign(TWILIO_TOKEN, &hook, &params);
    let ok = app.http.post(&hook).header("x-twilio-signature", signed).form(&params).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::NO_CONTENT);
    let rows = ledger(&app, &admin, &b_sms).await;
    assert_eq!(rows[0]["status"], "delivered", "{rows:?}");

    // KESHA speaks to staff: a message to a user id, on the user's Telegram.
    let lukas = app.user_id("lukas@virel.com").await;
    {
        let mut h = app.db.acquire().await.unwrap();
        virel_domain::q_exec!(
            &mut h.conn(),
            "UPDATE users SET telegram = '424242', preferred_channel = 'telegram' WHERE id = $1",
            Uuid::parse_str(&lukas).unwrap()
        )
        .unwrap();
    }
    let subject = Uuid::parse_str(&t_sms).unwrap();
    let mut tx = app.db.begin().await.unwrap();
    let queued = virel_domain::commands::notifications::queue(
        &mut tx,
        &virel_domain::Ctx::system(),
        virel_domain::commands::notifications::Message {
            channel: "preferred",
            to: &lukas,
            template: "sla_breach",
            vars: json!({"title": "Call the client", "level": 1}),
            subject: ("task".into(), subject),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(queued[0].channel, "telegram_kesha");
    assert_eq!(queued[0].recipient.as_deref(), Some("424242"), "the address, never the target's name");
    let rows = settled(&app, &admin, &t_sms, 20).await;
    assert_eq!(rows[0]["status"], "sent", "{rows:?}");
    let got = tg.received_requests().await.unwrap();
    let kesha: Vec<&Request> = got.iter().filter(|r| r.url.path().contains(KESHA)).collect();
    assert_eq!(kesha.len(), 1);
    let body: Value = serde_json::from_slice(&kesha[0].body).unwrap();
    assert_eq!(body["chat_id"], "424242");
    assert!(body["text"].as_str().unwrap().contains("Lukas Berg, \"Call the client\""), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_provider_receives_its_messages_sqlite() {
    all_providers_deliver(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_provider_receives_its_messages_postgres_redis() {
    all_providers_deliver(Engine::Postgres).await;
}

fn url_form(body: &[u8]) -> BTreeMap<String, String> {
    url_decode_pairs(&String::from_utf8_lossy(body))
}

fn url_decode_pairs(s: &str) -> BTreeMap<String, String> {
    fn dec(s: &str) -> String {
        let s = s.replace('+', " ");
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%'
                && i + 2 < b.len()
                && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    s.split('&').filter_map(|p| p.split_once('=')).map(|(k, v)| (dec(k), dec(v))).collect()
}

/// Twilio's scheme, computed independently of the server's code: HMAC-SHA1 over the URL and
/// the sorted parameters, base64.
fn twilio_sign(token: &str, url: &str, params: &BTreeMap<String, String>) -> String {
    use hmac::Mac;
    let mut data = url.to_string();
    for (k, v) in params {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, mac.finalize().into_bytes())
}

// ---------------------------------------------------------------------------------------------
// Retries, permanent refusals, rate limits
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_answering_500_is_tried_three_times_with_growing_delays_then_failed() {
    let tg = MockServer::start().await;
    let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
    Mock::given(method("POST"))
        .and(path(format!("/bot{DIVA}/sendMessage")))
        .respond_with(timed(times.clone(), |_| {
            ResponseTemplate::new(500)
                .set_body_json(json!({"ok": false, "error_code": 500, "description": "Internal Server Error"}))
        }))
        .mount(&tg)
        .await;
    let mut o = opts(channels(Some(&tg), None, None, None));
    o.retry = virel_workers::RetrySettings { base: Duration::from_secs(2), ..Default::default() };
    let app = TestApp::start_full(Engine::Sqlite, o).await;
    let admin = app.login("admin@virel.com").await;
    let (_, b, t) = booking_task_for(
        &app,
        &admin,
        json!({"name": format!("Tom {}", n()), "telegram": "@tom_client", "preferred_channel": "telegram"}),
    )
    .await;
    contact(&app, &admin, &t).await;
    let rows = settled(&app, &admin, &b, 40).await;
    assert_eq!(rows.len(), 1, "a transient failure does not fall back: {rows:?}");
    assert_eq!(rows[0]["status"], "failed");
    assert_eq!(rows[0]["attempts"], 3, "{rows:?}");
    assert!(rows[0]["last_error"].as_str().unwrap().contains("500"), "{rows:?}");
    let t = times.lock().unwrap().clone();
    assert_eq!(t.len(), 3, "three attempts");
    let (d1, d2) = (t[1] - t[0], t[2] - t[1]);
    // Backoff with jitter over the upper half: the first retry waits 1-2 s, the second 2-4 s.
    assert!(d1 >= Duration::from_millis(950), "first retry after {d1:?}");
    assert!(d2 >= Duration::from_millis(1950), "second retry after {d2:?}");
    let raised = app
        .eventually(5, || async {
            let e = exceptions_about(&app, &admin, "notification_failed", &b).await;
            (!e.is_empty()).then_some(e)
        })
        .await
        .expect("a notification_failed exception");
    assert!(raised[0]["title"].as_str().unwrap().contains("500"), "with the reason: {}", raised[0]);
    // Every channel failed: no "Contacted" note; a note says it failed.
    let notes = notes_of(&app, &admin, &b).await;
    assert!(!notes.iter().any(|t| t.starts_with("Contacted")), "{notes:?}");
    assert!(notes.iter().any(|t| t.starts_with("Could not contact the client")), "{notes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blocked_bot_fails_after_one_attempt_and_chat_not_found_too() {
    let tg = MockServer::start().await;
    let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
    Mock::given(method("POST"))
        .and(path(format!("/bot{DIVA}/sendMessage")))
        .respond_with(timed(times.clone(), |_| {
            ResponseTemplate::new(403).set_body_json(
                json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}),
            )
        }))
        .mount(&tg)
        .await;
    let app = TestApp::start_full(Engine::Sqlite, opts(channels(Some(&tg), None, None, None))).await;
    let admin = app.login("admin@virel.com").await;
    let (_, b, t) = booking_task_for(
        &app,
        &admin,
        json!({"name": format!("Bea {}", n()), "telegram": "@bea_client", "preferred_channel": "telegram"}),
    )
    .await;
    contact(&app, &admin, &t).await;
    let rows = settled(&app, &admin, &b, 20).await;
    assert_eq!(rows.len(), 1, "no other channel to fall back to: {rows:?}");
    assert_eq!(rows[0]["status"], "failed");
    assert_eq!(rows[0]["attempts"], 1);
    assert!(rows[0]["last_error"].as_str().unwrap().contains("bot was blocked"), "{rows:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(times.lock().unwrap().len(), 1, "one attempt, never retried");
    let raised = exceptions_about(&app, &admin, "notification_failed", &b).await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert!(raised[0]["title"].as_str().unwrap().contains("bot was blocked"), "{}", raised[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn telegram_retry_after_is_honoured() {
    let tg = MockServer::start().await;
    let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
    Mock::given(method("POST"))
        .and(path(format!("/bot{DIVA}/sendMessage")))
        .respond_with(timed(times.clone(), |n| {
            if n == 1 {
                ResponseTemplate::new(429).set_body_json(json!({"ok": false, "error_code": 429,
                    "description": "Too Many Requests: retry after 2", "parameters": {"retry_after": 2}}))
            } else {
                tg_ok(99)
            }
        }))
        .mount(&tg)
        .await;
    // A backoff far below the rate limit's wait: only retry_after can explain the delay.
    let mut o = opts(channels(Some(&tg), None, None, None));
    o.retry = virel_workers::RetrySettings { base: Duration::from_millis(50), ..Default::default() };
    let app = TestApp::start_full(Engine::Sqlite, o).await;
    let admin = app.login("admin@virel.com").await;
    let (_, b, t) = booking_task_for(
        &app,
        &admin,
        json!({"name": format!("Rita {}", n()), "telegram": "@rita_client", "preferred_channel": "telegram"}),
    )
    .await;
    contact(&app, &admin, &t).await;
    let rows = settled(&app, &admin, &b, 20).await;
    assert_eq!(rows[0]["status"], "sent", "{rows:?}");
    assert_eq!(rows[0]["attempts"], 2);
    let t = times.lock().unwrap().clone();
    assert_eq!(t.len(), 2);
    assert!(t[1] - t[0] >= Duration::from_secs(2), "retried after {:?}, before retry_after", t[1] - t[0]);
}

// ---------------------------------------------------------------------------------------------
// Fallback, Contact with every channel down
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_telegram_falls_back_to_sms_and_both_attempts_are_listed() {
    let tg = MockServer::start().await;
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{DIVA}/sendMessage")))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"ok": false, "error_code": 400, "description": "Bad Request: chat not found"})),
        )
        .mount(&tg)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json")))
        .respond_with(twilio_ok())
        .mount(&twilio)
        .await;
    let app = TestApp::start_full(Engine::Sqlite, opts(channels(Some(&tg), None, Some(&twilio), None))).await;
    let admin = app.login("admin@virel.com").await;
    let fay_phone = phone();
    let (_, b, t) = booking_task_for(
        &app,
        &admin,
        json!({"name": format!("Fay {}", n()), "telegram": "@fay_client", "phone": fay_phone,
               "preferred_channel": "telegram"}),
    )
    .await;
    let sends = |channel: &'static str, status: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            crate::metrics::series(
                app,
                admin,
                "virel_notification_sends_total",
                &[("channel", channel), ("status", status)],
            )
            .await
        }
    };
    let (fallback_before, sent_before) = (sends("telegram_diva", "fallback").await, sends("sms", "sent").await);
    let out = contact(&app, &admin, &t).await;
    assert_eq!(out["channel"], "telegram_diva", "the preferred channel first: {out}");
    let rows = settled(&app, &admin, &b, 20).await;
    assert_eq!(rows.len(), 2, "both attempts in the ledger: {rows:?}");
    assert!(sends("telegram_diva", "fallback").await - fallback_before >= 1.0, "the refusal counted, by channel");
    assert!(sends("sms", "sent").await - sent_before >= 1.0, "the send counted, by channel");
    assert_eq!((rows[0]["channel"].as_str(), rows[0]["status"].as_str()), (Some("telegram_diva"), Some("failed")));
    assert!(rows[0]["last_error"].as_str().unwrap().contains("chat not found"), "{rows:?}");
    assert_eq!((rows[1]["channel"].as_str(), rows[1]["status"].as_str()), (Some("sms"), Some("sent")));
    assert_eq!(rows[1]["fallback_of"], rows[0]["id"]);
    assert_eq!(twilio.received_requests().await.unwrap().len(), 1);
    assert!(exceptions_about(&app, &admin, "notification_failed", &b).await.is_empty(), "the client was reached");
    // Filters: by status and channel.
    let (_, f) = app.get(&admin, &format!("/notifications?subject_id={b}&status=failed&channel=telegram_diva")).await;
    assert_eq!(f["items"].as_array().unwrap().len(), 1, "{f}");
    let notes = app
        .eventually(5, || async {
            let notes = notes_of(&app, &admin, &b).await;
            notes.iter().any(|t| t.starts_with("Contacted the client by sms")).then_some(notes)
        })
        .await;
    assert!(notes.is_some(), "the note names the channel that reached the client");
    // Recipients are masked without clients:pii.
    let lukas = app.login("lukas@virel.com").await;
    let (s, masked) = app.get(&lukas, &format!("/notifications?subject_id={b}")).await;
    assert_eq!(s, StatusCode::OK, "{masked}");
    let sms = masked["items"].as_array().unwrap().iter().find(|r| r["channel"] == "sms").unwrap().clone();
    assert_ne!(sms["recipient"], fay_phone.as_str(), "{sms}");
    assert!(sms["recipient"].as_str().unwrap().ends_with(&fay_phone[fay_phone.len() - 3..]), "{sms}");
    let (_, full) = app.get(&admin, &format!("/notifications?subject_id={b}&channel=sms")).await;
    assert_eq!(full["items"][0]["recipient"], fay_phone.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contact_with_every_channel_down_leaves_no_contacted_note() {
    // No channel configured at all.
    let app = TestApp::start_full(Engine::Sqlite, opts(Channels::default())).await;
    let admin = app.login("admin@virel.com").await;
    let (s, h) = app.send(reqwest::Method::GET, None, "/health", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["checks"]["channels"]["sms"]["status"], "disabled", "{h}");
    assert!(h["checks"]["channels"]["telegram_diva"]["enable_with"][0] == "TELEGRAM_DIVA_TOKEN", "{h}");
    let (_, b, t) = booking_task_for(
        &app,
        &admin,
        json!({"name": format!("Dee {}", n()), "telegram": "@dee_client", "phone": phone(),
               "email": format!("dee{}@example.com", n()), "preferred_channel": "telegram"}),
    )
    .await;
    contact(&app, &admin, &t).await;
    let rows = settled(&app, &admin, &b, 20).await;
    let chans: Vec<&str> = rows.iter().map(|r| r["channel"].as_str().unwrap()).collect();
    assert_eq!(chans, ["telegram_diva", "sms", "email"], "each channel tried in the fallback order: {rows:?}");
    assert!(rows.iter().all(|r| r["status"] == "failed"), "{rows:?}");
    assert!(rows.iter().all(|r| r["last_error"].as_str().unwrap().contains("is disabled")), "{rows:?}");
    let notes = app
        .eventually(5, || async {
            let notes = notes_of(&app, &admin, &b).await;
            notes.iter().any(|t| t.starts_with("Could not contact")).then_some(notes)
        })
        .await
        .expect("a note says the contact failed");
    assert!(!notes.iter().any(|t| t.starts_with("Contacted")), "never a Contacted note: {notes:?}");
    assert_eq!(exceptions_about(&app, &admin, "notification_failed", &b).await.len(), 1, "one exception for the chain");
}

// ---------------------------------------------------------------------------------------------
// Templates, Resend, secrets, escalations
// ---------------------------------------------------------------------------------------------

both_engines_full!(
    templates_are_strict_and_values_are_never_rendered_again,
    WorkerOptions { scheduler: false, ..Default::default() },
    async |app: TestApp| {
        let admin = app.login("admin@virel.com").await;
        let lukas = app.login("lukas@virel.com").await;
        // An unknown variable: 422 naming it; nothing stored.
        let (s, b) = app
            .send(
                reqwest::Method::PUT,
                Some(&admin),
                "/notification-templates",
                Some(json!({"name": "contact_client", "body": "Hi {{ client_name }}, {{ secret }}"})),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert!(b.to_string().contains("secret"), "names the variable: {b}");
        let (s, b) = app
            .send(
                reqwest::Method::PUT,
                Some(&admin),
                "/notification-templates",
                Some(json!({"name": "contact_client", "body": "{% include 'other' %}"})),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        // automation:write is needed.
        let (s, _) = app
            .send(
                reqwest::Method::PUT,
                Some(&lukas),
                "/notification-templates",
                Some(json!({"name": "contact_client", "body": "Hi"})),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        // A stored template replaces the default; its variables are rendered once.
        let (s, saved) = app
            .send(
                reqwest::Method::PUT,
                Some(&admin),
                "/notification-templates",
                Some(
                    json!({"name": "contact_client", "channel": "sms", "body": "Dear {{ client_name }}, please call."}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{saved}");
        let (_, list) = app.get(&admin, "/notification-templates").await;
        let names: Vec<&str> = list["items"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        for d in
            ["booking_confirmed", "deposit_reminder", "contact_client", "sla_breach", "safety_check", "payment_failed"]
        {
            assert!(names.contains(&d), "{d} shipped: {names:?}");
        }
        let (_, b, t) = booking_task_for(
            &app,
            &admin,
            json!({"name": "{{ secret }} {% if true %}x{% endif %}", "phone": phone(), "preferred_channel": "sms"}),
        )
        .await;
        contact(&app, &admin, &t).await;
        let rows = ledger(&app, &admin, &b).await;
        assert_eq!(rows[0]["body"], "Dear {{ secret }} {% if true %}x{% endif %}, please call.", "{rows:?}");
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resend_is_used_when_its_key_is_set_and_no_secret_is_in_a_response() {
    let resend = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .and(header("authorization", format!("Bearer {RESEND_KEY}").as_str()))
        .and(header_exists("idempotency-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "re_msg_1"})))
        .mount(&resend)
        .await;
    let smtp = smtp_server("250 ok").await;
    let tg = MockServer::start().await;
    let twilio = MockServer::start().await;
    let app =
        TestApp::start_full(Engine::Sqlite, opts(channels(Some(&tg), Some(&smtp), Some(&twilio), Some(&resend)))).await;
    let admin = app.login("admin@virel.com").await;
    let k = n();
    let (_, b, t) = booking_task_for(
        &app,
        &admin,
        json!({"name": format!("Rae {k}"), "email": format!("rae{k}@example.com"), "preferred_channel": "email"}),
    )
    .await;
    contact(&app, &admin, &t).await;
    let rows = settled(&app, &admin, &b, 20).await;
    assert_eq!(
        (rows[0]["status"].as_str(), rows[0]["provider_id"].as_str()),
        (Some("sent"), Some("re_msg_1")),
        "{rows:?}"
    );
    let got = resend.received_requests().await.unwrap();
    assert_eq!(got.len(), 1);
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["to"][0], format!("rae{k}@example.com"));
    assert!(body["text"].as_str().unwrap().starts_with(&format!("Hello Rae {k}")), "{body}");
    let key = got[0].headers.get("idempotency-key").unwrap().to_str().unwrap().to_string();
    assert_eq!(key, format!("notification-{}", rows[0]["id"].as_str().unwrap()));
    assert!(smtp.mails.lock().unwrap().is_empty(), "Resend instead of SMTP");

    // No token, key or password in any response: health, the ledger, the templates, the docs.
    let mut seen = String::new();
    for p in ["/health", "/notifications?limit=200", "/notification-templates", "/system/queue", "/openapi.json"] {
        let (_, v) = app.get(&admin, p).await;
        seen.push_str(&v.to_string());
    }
    let (_, tl) = app.get(&admin, &format!("/bookings/{b}/timeline")).await;
    seen.push_str(&tl.to_string());
    for secret in [DIVA, KESHA, TWILIO_TOKEN, SMTP_PASSWORD, RESEND_KEY] {
        assert!(!seen.contains(secret), "{secret} appeared in a response");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sla_level_one_tells_the_assignee_level_three_the_owner_and_a_missed_safety_check_the_manager_on_duty() {
    let tg = MockServer::start().await;
    Mock::given(method("POST")).and(path(format!("/bot{KESHA}/sendMessage"))).respond_with(tg_ok(5)).mount(&tg).await;
    let smtp = smtp_server("250 ok").await;
    let mut o = opts(channels(Some(&tg), Some(&smtp), None, None));
    o.scheduler = true;
    o.sweep_secs = 1;
    let app = TestApp::start_full(Engine::Sqlite, o).await;
    let admin = app.login("admin@virel.com").await;
    let lukas = app.user_id("lukas@virel.com").await;
    // Lukas sets where he is reached; a bad number is refused.
    let lukas_token = app.login("lukas@virel.com").await;
    let path_ = format!("/users/{lukas}/contact");
    let (s, b) = app
        .send(reqwest::Method::PUT, Some(&lukas_token), &path_, Some(json!({"phone": "07700 900", "telegram": "777"})))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, b) = app
        .send(
            reqwest::Method::PUT,
            Some(&lukas_token),
            &path_,
            Some(json!({"telegram": "777", "preferred_channel": "telegram"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["email"], "lukas@virel.com");
    let sasha = app.user_id("sasha@virel.com").await;
    let (s, _) =
        app.send(reqwest::Method::PUT, Some(&lukas_token), &format!("/users/{sasha}/contact"), Some(json!({}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "not someone else's");
    // Overdue task assigned to Lukas: level 1 sends him a KESHA message.
    let task = app
        .ok(
            &admin,
            "/tasks",
            json!({"type": "follow_up", "title": "Ring back", "assignee_id": lukas,
                   "due_at": chrono::Utc::now() + chrono::Duration::seconds(1)}),
            201,
        )
        .await;
    let tid = sid(&task);
    let rows = settled(&app, &admin, &tid, 20).await;
    assert_eq!(rows[0]["channel"], "telegram_kesha", "{rows:?}");
    assert_eq!(rows[0]["recipient_id"], lukas.as_str(), "{rows:?}");
    assert_eq!(rows[0]["template"], "sla_breach");
    assert_eq!(rows[0]["status"], "sent");
    let got = tg.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["chat_id"], "777");
    assert!(body["text"].as_str().unwrap().contains("Ring back"), "{body}");

    // Level 3 tells the OWNER (by email: no Telegram or phone on file).
    let (_, policies) = app.get(&admin, "/sla-policies").await;
    let follow_up = policies
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "task" && p["item_type"] == "custom")
        .cloned()
        .or_else(|| {
            policies.as_array().unwrap().iter().find(|p| p["kind"] == "task" && p["item_type"] == "*").cloned()
        });
    let pid = follow_up.unwrap()["id"].as_str().unwrap().to_string();
    let (s, b) = app.patch(&admin, &format!("/sla-policies/{pid}"), json!({"escalation_secs": [0, 1, 2]})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let ladder = app
        .ok(
            &admin,
            "/tasks",
            json!({"type": "custom", "title": "Climbs the ladder", "assignee_id": lukas,
                   "due_at": chrono::Utc::now() - chrono::Duration::seconds(1)}),
            201,
        )
        .await;
    let owner_told = app
        .eventually(20, || async {
            let rows = ledger(&app, &admin, &sid(&ladder)).await;
            rows.iter().any(|r| r["channel"] == "email" && r["status"] == "sent").then_some(rows)
        })
        .await
        .expect("the OWNER is told at level 3");
    let owner = app.user_id("admin@virel.com").await;
    assert!(owner_told.iter().any(|r| r["recipient_id"] == owner.as_str()), "{owner_told:?}");
    assert!(owner_told.iter().all(|r| r["recipient"] != "OWNER" && r["recipient"] != "assignee"), "{owner_told:?}");

    // A missed safety check: the OPS_MANAGER on duty (Tommy, by email) at once.
    let b = fixtures::booking(&app, &admin, 3 * 24 * 60).await;
    let check = app
        .ok(
            &admin,
            "/tasks",
            json!({"type": "safety_check", "priority": "critical", "subject_type": "booking", "subject_id": b["id"],
                   "due_at": chrono::Utc::now() - chrono::Duration::seconds(1)}),
            201,
        )
        .await;
    let rows = settled(&app, &admin, &sid(&check), 20).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0]["template"].as_str(), rows[0]["status"].as_str()), (Some("safety_check"), Some("sent")));
    assert_eq!(rows[0]["recipient_kind"], "user");
    let mails = smtp.mails.lock().unwrap().clone();
    assert!(mails.iter().any(|m| m.to[0].contains("tommy@virel.com") && m.data.contains("URGENT")), "{mails:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_deposit_reminder_rule_delivers() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json")))
        .respond_with(twilio_ok())
        .mount(&twilio)
        .await;
    let mut o = opts(channels(None, None, Some(&twilio), None));
    o.scheduler = true;
    o.sweep_secs = 1;
    let app = TestApp::start_full(Engine::Sqlite, o).await;
    let admin = app.login("admin@virel.com").await;
    // The shipped rule: a deposit_required booking gets the reminder two hours later.
    let b = fixtures::booking(&app, &admin, 24 * 60).await;
    let id = sid(&b);
    app.ok(&admin, &format!("/bookings/{id}/status"), json!({"status": "pending"}), 200).await;
    app.ok(&admin, &format!("/bookings/{id}/status"), json!({"status": "deposit_required"}), 200).await;
    let scheduled = app
        .eventually(10, || async {
            (app.count("SELECT COUNT(*) AS n FROM automation_executions WHERE status = 'scheduled'").await >= 1)
                .then_some(())
        })
        .await;
    assert!(scheduled.is_some(), "the reminder is scheduled");
    // Bring the due time forward instead of waiting two hours.
    {
        let mut h = app.db.acquire().await.unwrap();
        virel_domain::q_exec!(
            &mut h.conn(),
            "UPDATE automation_executions SET run_at = $1 WHERE status = 'scheduled'",
            virel_domain::now()
        )
        .unwrap();
    }
    let rows = settled(&app, &admin, &id, 30).await;
    let reminder = rows.iter().find(|r| r["template"] == "deposit_reminder").expect("a deposit reminder").clone();
    assert_eq!((reminder["channel"].as_str(), reminder["status"].as_str()), (Some("sms"), Some("sent")), "{rows:?}");
    let got = twilio.received_requests().await.unwrap();
    let form = url_form(&got[0].body);
    assert!(form["Body"].contains("the deposit of 50.00 GBP"), "{form:?}");
    assert!(form["Body"].starts_with("Hello Client "), "{form:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_the_provider_already_accepted_is_never_sent_again() {
    let tg = MockServer::start().await;
    Mock::given(method("POST")).and(path(format!("/bot{DIVA}/sendMessage"))).respond_with(tg_ok(1)).mount(&tg).await;
    let ch = channels(Some(&tg), None, None, None);
    // No workers: the test plays the worker that crashed after the provider took the message.
    let app = TestApp::start(Engine::Sqlite).await;
    let admin = app.login("admin@virel.com").await;
    let (_, b, t) = booking_task_for(
        &app,
        &admin,
        json!({"name": format!("Ida {}", n()), "telegram": "@ida_client", "preferred_channel": "telegram"}),
    )
    .await;
    let out = contact(&app, &admin, &t).await;
    let id = Uuid::parse_str(out["notification_id"].as_str().unwrap()).unwrap();
    use virel_domain::commands::notifications as ledger_cmd;
    let ledger_cmd::Claim::Send(_) = ledger_cmd::claim(&app.db, id).await.unwrap() else { panic!("claimable") };
    ledger_cmd::record_provider_id(&app.db, id, "@ida_client:1").await.unwrap();
    // The retry finds the provider id and marks the row sent without a second request.
    ch.send_one(&app.db, id).await.unwrap();
    assert!(tg.received_requests().await.unwrap().is_empty(), "not sent twice");
    let rows = ledger(&app, &admin, &b).await;
    assert_eq!((rows[0]["status"].as_str(), rows[0]["provider_id"].as_str()), (Some("sent"), Some("@ida_client:1")));
    // And a duplicate job for a sent message does nothing.
    ch.send_one(&app.db, id).await.unwrap();
    assert!(tg.received_requests().await.unwrap().is_empty());
}
