//! The operator pages: the cookie session (login, refresh, logout), the API accepting the
//! session cookie, the page guard (login redirect, 403 audited), and the queue dashboard with
//! its dead-job Retry, over HTTP like a browser without JavaScript.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Engine, TestApp, WorkerOptions};
use crate::{both_engines, both_engines_full};

/// One answer, with what a browser would look at.
struct Page {
    status: StatusCode,
    location: Option<String>,
    set_cookies: Vec<String>,
    content_type: String,
    csp: Option<String>,
    body: String,
}

impl Page {
    /// The full `Set-Cookie` line for `name`.
    fn set_cookie(&self, name: &str) -> Option<&str> {
        self.set_cookies.iter().map(String::as_str).find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The value `name` is set to.
    fn cookie(&self, name: &str) -> Option<String> {
        let line = self.set_cookie(name)?;
        Some(line[name.len() + 1..].split(';').next().unwrap_or("").to_string())
    }
}

/// The two cookies of a signed-in browser.
#[derive(Clone, Debug)]
struct Session {
    access: String,
    refresh: String,
}

impl Session {
    fn header(&self) -> String {
        format!("virel_session={}; virel_refresh={}", self.access, self.refresh)
    }

    fn from(p: &Page) -> Session {
        Session {
            access: p.cookie("virel_session").expect("a session cookie"),
            refresh: p.cookie("virel_refresh").expect("a refresh cookie"),
        }
    }
}

fn root(app: &TestApp) -> String {
    app.base.trim_end_matches("/api/v1").to_string()
}

/// Like a browser, but redirects are not followed and cookies are handled by hand.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn fetch(
    app: &TestApp,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    form: Option<&[(&str, &str)]>,
    headers: &[(&str, &str)],
) -> Page {
    let mut req = browser().request(method, format!("{}{}", root(app), path));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if let Some(f) = form {
        req = req.form(f);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let h = resp.headers().clone();
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(String::from);
    Page {
        status: resp.status(),
        location: text("location"),
        set_cookies: h.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(String::from).collect(),
        content_type: text("content-type").unwrap_or_default(),
        csp: text("content-security-policy"),
        body: resp.text().await.unwrap(),
    }
}

async fn get(app: &TestApp, path: &str, cookie: Option<&str>) -> Page {
    fetch(app, Method::GET, path, cookie, None, &[]).await
}

async fn post_form(app: &TestApp, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Page {
    fetch(app, Method::POST, path, cookie, Some(form), &[]).await
}

async fn sign_in(app: &TestApp, email: &str, next: Option<&str>) -> Page {
    let mut form = vec![("email", email), ("password", "password123")];
    if let Some(n) = next {
        form.push(("next", n));
    }
    post_form(app, "/admin/login", None, &form).await
}

async fn session(app: &TestApp, email: &str) -> Session {
    let p = sign_in(app, email, None).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    Session::from(&p)
}

/// `GET /api/v1/me` with only the given headers: the caller's email, or the status.
async fn me(app: &TestApp, headers: &[(&str, &str)]) -> Result<String, StatusCode> {
    let mut req = browser().get(format!("{}/me", app.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    if resp.status() != StatusCode::OK {
        return Err(resp.status());
    }
    let v: serde_json::Value = resp.json().await.unwrap();
    Ok(v["email"].as_str().unwrap().to_string())
}

async fn refresh_status(app: &TestApp, token: &str) -> StatusCode {
    app.post(None, "/auth/refresh", json!({"refresh_token": token})).await.0
}

both_engines_full!(
    pages_need_a_session_and_the_permission,
    WorkerOptions { scheduler: false, ..Default::default() },
    async |app: TestApp| {
        // No session: to the login page, which will come back here.
        let p = get(&app, "/admin/queues", None).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER);
        assert_eq!(p.location.as_deref(), Some("/admin/login?next=%2Fadmin%2Fqueues"));
        assert!(p.set_cookies.is_empty());
        let p = get(&app, "/admin", None).await;
        assert_eq!((p.status, p.location.as_deref()), (StatusCode::SEE_OTHER, Some("/admin/action-center")));

        let p = get(&app, "/admin/login?next=%2Fadmin%2Fqueues", None).await;
        assert_eq!(p.status, StatusCode::OK);
        assert!(p.content_type.starts_with("text/html"), "{}", p.content_type);
        assert!(p.body.contains("<form method=\"post\" action=\"/admin/login\">"), "{}", p.body);
        assert!(p.body.contains("name=\"next\" value=\"/admin/queues\""), "{}", p.body);
        assert!(!p.body.contains("<script"), "no JavaScript");
        let p = get(&app, "/admin/login?next=%22%3E%3Cscript%3Ex%3C%2Fscript%3E", None).await;
        assert!(p.body.contains("value=\"&quot;&gt;&lt;script&gt;x&lt;/script&gt;\""), "next is escaped: {}", p.body);

        // A wrong password: the form again, 401, no cookie.
        let p = post_form(
            &app,
            "/admin/login",
            None,
            &[("email", "admin@virel.com"), ("password", "wrong"), ("next", "/admin/queues")],
        )
        .await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED);
        assert!(p.set_cookies.is_empty(), "{:?}", p.set_cookies);
        assert!(p.body.contains("Wrong email or password."), "{}", p.body);
        assert!(p.body.contains("value=\"admin@virel.com\""), "the email is kept");

        // An operator signs in and is sent where the login was asked to go.
        let p = sign_in(&app, "lukas@virel.com", Some("/admin/queues")).await;
        assert_eq!((p.status, p.location.as_deref()), (StatusCode::SEE_OTHER, Some("/admin/queues")), "{}", p.body);
        let sc = p.set_cookie("virel_session").unwrap();
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/;", "Max-Age=900"] {
            assert!(sc.contains(attr), "{sc} has {attr}");
        }
        let rc = p.set_cookie("virel_refresh").unwrap();
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/admin;", "Max-Age=2592000"] {
            assert!(rc.contains(attr), "{rc} has {attr}");
        }
        assert!(!sc.contains("Secure") && !rc.contains("Secure"), "plain http: no Secure");
        let lukas = Session::from(&p);

        // ...but the queue page needs system:read: a 403 page, audited like the API's.
        let forbidden =
            || app.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'forbidden' AND entity_type = 'system'");
        let before = forbidden().await;
        let p = get(&app, "/admin/queues", Some(&lukas.header())).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
        assert!(p.content_type.starts_with("text/html"));
        assert!(p.body.contains("system:read"), "{}", p.body);
        assert!(p.body.contains("Log out"), "the layout is there: {}", p.body);
        assert_eq!(forbidden().await, before + 1, "the refusal is audited");

        // next must be a page of this site under /admin/.
        for bad in ["https://evil.example/admin/", "//evil.example/x", "/api/v1/me", "/admin/../docs"] {
            let p = sign_in(&app, "admin@virel.com", Some(bad)).await;
            assert_eq!(p.location.as_deref(), Some("/admin/action-center"), "next={bad}");
        }

        // The owner sees the dashboard.
        let admin = session(&app, "admin@virel.com").await;
        let p = get(&app, "/admin/queues", Some(&admin.header())).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        for q in ["critical", "ops", "heavy"] {
            assert!(p.body.contains(&format!("id=\"queue-{q}\"><h2>{q}</h2>")), "queue {q}: {}", p.body);
        }
        let backend = if app.engine == Engine::Sqlite { "sqlite" } else { "redis" };
        assert!(p.body.contains(&format!("<strong id=\"backend\">{backend}</strong>")), "{}", p.body);
        assert!(p.body.contains("<meta http-equiv=\"refresh\" content=\"5"), "auto-refresh");
        for part in ["Live workers", "Oldest pending", "Jobs/min (5 m)", "id=\"outbox\"", "No dead jobs."] {
            assert!(p.body.contains(part), "{part}: {}", p.body);
        }
        assert!(
            p.body.contains("Alex Admin<span class=\"role\">OWNER</span>"),
            "the header shows the user: {}",
            p.body
        );
        assert!(p.body.contains("href=\"/admin/action-center\"") && p.body.contains("action=\"/admin/logout\""));
        assert!(
            !p.body.contains("<script") && !p.body.contains("http://") && !p.body.contains("https://"),
            "no assets"
        );
        assert!(p.csp.unwrap_or_default().contains("default-src 'none'"));
        assert!(p.set_cookies.is_empty(), "a valid session is not rotated");

        // Signed in already: the login page moves on.
        let p = get(&app, "/admin/login?next=%2Fadmin%2Fqueues", Some(&admin.header())).await;
        assert_eq!(p.location.as_deref(), Some("/admin/queues"));

        // The API takes the session cookie; an explicit Authorization header wins over it.
        let cookie = format!("virel_session={}", admin.access);
        assert_eq!(me(&app, &[("cookie", &cookie)]).await, Ok("admin@virel.com".to_string()));
        let bearer = format!("Bearer {}", lukas.access);
        assert_eq!(
            me(&app, &[("cookie", &cookie), ("authorization", &bearer)]).await,
            Ok("lukas@virel.com".to_string())
        );
        assert_eq!(me(&app, &[("cookie", "virel_session=garbage")]).await, Err(StatusCode::UNAUTHORIZED));
        assert_eq!(me(&app, &[]).await, Err(StatusCode::UNAUTHORIZED));
        // The refresh cookie is no API credential.
        let only_refresh = format!("virel_refresh={}", admin.refresh);
        assert_eq!(me(&app, &[("cookie", &only_refresh)]).await, Err(StatusCode::UNAUTHORIZED));

        // X-Forwarded-Proto is believed only behind a trusted proxy (VIREL_TRUST_PROXY=1).
        let p = fetch(
            &app,
            Method::POST,
            "/admin/login",
            None,
            Some(&[("email", "admin@virel.com"), ("password", "password123")]),
            &[("x-forwarded-proto", "https")],
        )
        .await;
        assert_eq!(p.status, StatusCode::SEE_OTHER);
        assert!(!p.set_cookie("virel_session").unwrap().contains("Secure"));

        // A form another site started is refused.
        let p = fetch(
            &app,
            Method::POST,
            "/admin/login",
            None,
            Some(&[("email", "admin@virel.com"), ("password", "password123")]),
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
        assert_eq!(p.status, StatusCode::FORBIDDEN);
        assert!(p.set_cookies.is_empty());

        // Missing fields: the form again, 400.
        let p = post_form(&app, "/admin/login", None, &[("email", "admin@virel.com")]).await;
        assert_eq!(p.status, StatusCode::BAD_REQUEST);
        assert!(p.body.contains("Enter your email and password."));

        // Guessing: slowed down, then 429 with the form and a clear message.
        let mut last = StatusCode::OK;
        for _ in 0..8 {
            let p = post_form(&app, "/admin/login", None, &[("email", "tommy@virel.com"), ("password", "guess")]).await;
            assert!(p.set_cookies.is_empty());
            last = p.status;
            if last == StatusCode::TOO_MANY_REQUESTS {
                assert!(p.body.contains("Too many failed sign-in attempts"), "{}", p.body);
                break;
            }
            assert_eq!(p.status, StatusCode::UNAUTHORIZED);
        }
        assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    }
);

both_engines_full!(
    an_expired_session_is_renewed_from_the_refresh_cookie_and_logout_ends_it,
    WorkerOptions { scheduler: false, ..Default::default() },
    async |app: TestApp| {
        let s1 = session(&app, "admin@virel.com").await;

        // A garbage (or expired) access cookie with a valid refresh cookie: the page is served
        // and both cookies are replaced.
        let p = get(&app, "/admin/queues", Some(&format!("virel_session=garbage; virel_refresh={}", s1.refresh))).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        let s2 = Session::from(&p);
        assert_ne!(s2.refresh, s1.refresh, "the refresh token is rotated");
        assert!(p.set_cookie("virel_refresh").unwrap().contains("Path=/admin;"));
        assert!(p.set_cookie("virel_session").unwrap().contains("Max-Age=900"));
        assert_eq!(
            me(&app, &[("cookie", &format!("virel_session={}", s2.access))]).await,
            Ok("admin@virel.com".into())
        );
        let p = get(&app, "/admin/queues", Some(&s2.header())).await;
        assert_eq!(p.status, StatusCode::OK);
        assert!(p.set_cookies.is_empty());

        // No access cookie at all (the browser dropped it after 15 minutes): the same.
        let p = get(&app, "/admin/queues", Some(&format!("virel_refresh={}", s2.refresh))).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        let s3 = Session::from(&p);

        // A refresh cookie the server does not know: to the login, and the stale cookies go.
        let p = get(&app, "/admin/queues", Some("virel_session=garbage; virel_refresh=garbage")).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER);
        assert_eq!(p.location.as_deref(), Some("/admin/login?next=%2Fadmin%2Fqueues"));
        assert!(p.set_cookie("virel_session").unwrap().contains("Max-Age=0"));

        // Log out: both cookies cleared, the refresh token is dead.
        let logouts = || app.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'auth.logout'");
        let before = logouts().await;
        let p = fetch(&app, Method::POST, "/admin/logout", Some(&s3.header()), None, &[]).await;
        assert_eq!((p.status, p.location.as_deref()), (StatusCode::SEE_OTHER, Some("/admin/login")));
        let sc = p.set_cookie("virel_session").unwrap();
        let rc = p.set_cookie("virel_refresh").unwrap();
        assert!(sc.starts_with("virel_session=;") && sc.contains("Max-Age=0") && sc.contains("Path=/;"), "{sc}");
        assert!(rc.starts_with("virel_refresh=;") && rc.contains("Max-Age=0") && rc.contains("Path=/admin;"), "{rc}");
        assert_eq!(logouts().await, before + 1, "audited");
        assert_eq!(
            refresh_status(&app, &s3.refresh).await,
            StatusCode::UNAUTHORIZED,
            "the old refresh token is revoked"
        );
        let p = get(&app, "/admin/queues", Some(&format!("virel_refresh={}", s3.refresh))).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "no more pages with it");

        // Logging out with only the refresh cookie (the access cookie expired) ends it too.
        let s4 = session(&app, "tommy@virel.com").await;
        let p =
            fetch(&app, Method::POST, "/admin/logout", Some(&format!("virel_refresh={}", s4.refresh)), None, &[]).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER);
        assert_eq!(logouts().await, before + 2);
        let p = get(&app, "/admin/queues", Some(&format!("virel_refresh={}", s4.refresh))).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER);
        // And with no session at all it just clears the cookies.
        let p = fetch(&app, Method::POST, "/admin/logout", None, None, &[]).await;
        assert_eq!((p.status, p.location.as_deref()), (StatusCode::SEE_OTHER, Some("/admin/login")));
    }
);

const HOSTILE_ERROR: &str = "<script>alert(\"boom\")</script> & 'it' failed";

fn failing_once(calls: Arc<Mutex<usize>>) -> WorkerOptions {
    let handler: virel_workers::CustomHandler = Arc::new(move |_payload| {
        let calls = calls.clone();
        Box::pin(async move {
            *calls.lock().unwrap() += 1;
            Err(HOSTILE_ERROR.to_string())
        })
    });
    WorkerOptions {
        retry: virel_workers::RetrySettings {
            attempts_default: 1,
            base: Duration::from_millis(100),
            ..Default::default()
        },
        handlers: vec![("page_always_fails".into(), handler)],
        scheduler: false,
        ..Default::default()
    }
}

/// The id of the first dead job with a Retry form on the page.
fn retry_target(body: &str) -> Option<String> {
    let start = body.find("action=\"/admin/queues/ops/jobs/")? + "action=\"/admin/queues/ops/jobs/".len();
    let end = body[start..].find("/retry\"")?;
    Some(body[start..start + end].to_string())
}

mod a_dead_job_shows_escaped_and_the_retry_button_requeues_it_once {
    use super::*;

    async fn body(app: TestApp, calls: Arc<Mutex<usize>>) {
        let admin = session(&app, "admin@virel.com").await;
        let job = virel_workers::Job::new(&virel_domain::jobs::kinds::Custom {
            name: "page_always_fails".into(),
            payload: json!({"note": "<img src=x onerror=alert(1)>"}),
        });
        app.queues.as_ref().unwrap().push(job, None).await.unwrap();

        let page = app
            .eventually(30, || async {
                let p = get(&app, "/admin/queues", Some(&admin.header())).await;
                (p.status == StatusCode::OK && p.body.contains("page_always_fails")).then_some(p)
            })
            .await
            .expect("the dead job shows on the page");
        assert_eq!(*calls.lock().unwrap(), 1, "one attempt");
        let b = &page.body;
        assert!(
            b.contains("&lt;script&gt;alert(&quot;boom&quot;)&lt;/script&gt; &amp; &#39;it&#39; failed"),
            "the error is escaped: {b}"
        );
        assert!(!b.contains("<script") && !b.contains("<img"), "nothing of the job is markup: {b}");
        assert!(b.contains("&lt;img src=x onerror=alert(1)&gt;"), "the payload is shown, escaped: {b}");
        let id = retry_target(b).expect("a Retry form");
        assert!(
            b.contains(&format!("<tr id=\"dead-{id}\"><td>ops</td><td>page_always_fails</td><td class=\"n\">1</td>")),
            "{b}"
        );
        let retry_path = format!("/admin/queues/ops/jobs/{id}/retry");

        // An operator cannot press it (and could not see the page anyway).
        let lukas = session(&app, "lukas@virel.com").await;
        let p = fetch(&app, Method::POST, &retry_path, Some(&lukas.header()), None, &[]).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN);
        // Without a session, to the login.
        let p = fetch(&app, Method::POST, &retry_path, None, None, &[]).await;
        assert_eq!((p.status, p.location.as_deref()), (StatusCode::SEE_OTHER, Some("/admin/login")));
        // A form another site started does nothing.
        let p =
            fetch(&app, Method::POST, &retry_path, Some(&admin.header()), None, &[("sec-fetch-site", "cross-site")])
                .await;
        assert_eq!(p.status, StatusCode::FORBIDDEN);
        assert_eq!(*calls.lock().unwrap(), 1);

        // The owner presses Retry: back to the dashboard with a message, and the job runs again.
        let p =
            fetch(&app, Method::POST, &retry_path, Some(&admin.header()), None, &[("sec-fetch-site", "same-origin")])
                .await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
        let back = p.location.unwrap();
        assert_eq!(back, format!("/admin/queues?flash=retried&job={id}"));
        let again = app.eventually(15, || async { (*calls.lock().unwrap() >= 2).then_some(()) }).await;
        assert!(again.is_some(), "the retried job ran again");
        let p = get(&app, &back, Some(&admin.header())).await;
        assert!(p.body.contains(&format!("Dead job {id} was put back on its queue.")), "{}", p.body);
        assert!(p.body.contains("content=\"5; url=/admin/queues\""), "the refresh drops the message");
        assert!(!p.body.contains(&format!("action=\"{retry_path}\"")), "no Retry button on a retried job");
        assert_eq!(app.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'job.retried'").await, 1);

        // Twice is refused.
        let p = fetch(&app, Method::POST, &retry_path, Some(&admin.header()), None, &[]).await;
        assert_eq!(p.location.as_deref(), Some("/admin/queues?flash=already_retried"));
        let p = get(&app, "/admin/queues?flash=already_retried", Some(&admin.header())).await;
        assert!(p.body.contains("That dead job was already retried"), "{}", p.body);
        assert_eq!(app.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'job.retried'").await, 1);

        // Unknown jobs and queues, and made-up flash text.
        let p = fetch(&app, Method::POST, "/admin/queues/ops/jobs/not-a-uuid/retry", Some(&admin.header()), None, &[])
            .await;
        assert_eq!(p.location.as_deref(), Some("/admin/queues?flash=not_found"));
        let p =
            fetch(&app, Method::POST, &format!("/admin/queues/nope/jobs/{id}/retry"), Some(&admin.header()), None, &[])
                .await;
        assert_eq!(p.location.as_deref(), Some("/admin/queues?flash=not_found"));
        let p = get(&app, "/admin/queues?flash=%3Cb%3Eyou%20won%3C%2Fb%3E", Some(&admin.header())).await;
        assert_eq!(p.status, StatusCode::OK);
        assert!(!p.body.contains("you won"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        let calls = Arc::new(Mutex::new(0));
        let app = TestApp::start_full(Engine::Sqlite, failing_once(calls.clone())).await;
        body(app, calls).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_redis() {
        let calls = Arc::new(Mutex::new(0));
        let app = TestApp::start_full(Engine::Postgres, failing_once(calls.clone())).await;
        body(app, calls).await;
    }
}

both_engines!(without_a_queue_connection_the_page_says_so, async |app: TestApp| {
    let admin = session(&app, "admin@virel.com").await;
    let p = get(&app, "/admin/queues", Some(&admin.header())).await;
    assert_eq!(p.status, StatusCode::SERVICE_UNAVAILABLE, "{}", p.body);
    assert!(p.body.contains("no queue connection"), "{}", p.body);
    assert!(p.body.contains("Log out"), "still the layout");
});
