//! The Action Center page (`/admin/action-center`) in a real headless Chromium: an operator
//! signs in, sees their list, watches items arrive and leave live over the WebSocket, and
//! works them with the quick actions; and the page's guard (login, permission).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, Locator};
use reqwest::StatusCode;
use serde_json::json;

use crate::browser::{Browser, server_url, wait_js, where_is};
use crate::fixtures;
use crate::harness::{Engine, TestApp, WorkerOptions};

/// How long a change may take to show in the browser (commit → relay → hub → socket → DOM).
const LIVE: Duration = Duration::from_secs(5);

/// How long [`el`] waits for an element that is not there (yet).
const FIND: Duration = Duration::from_secs(10);

fn row(id: &str) -> String {
    format!("#ac-rows tr[data-id=\"{id}\"]")
}

/// The first element matching `css`, waiting up to `timeout`; panics (saying where the
/// browser is) if none shows.
async fn el_within(b: &Client, css: &str, timeout: Duration) -> Element {
    match b.wait().at_most(timeout).for_element(Locator::Css(css)).await {
        Ok(e) => e,
        Err(e) => panic!("no element {css:?} after {timeout:?} ({e})\n{}", where_is(b).await),
    }
}

async fn el(b: &Client, css: &str) -> Element {
    el_within(b, css, FIND).await
}

/// Whether an element matches `css` now.
async fn present(b: &Client, css: &str) -> bool {
    match b.find(Locator::Css(css)).await {
        Ok(_) => true,
        Err(e) if e.is_no_such_element() => false,
        Err(e) => panic!("finding {css:?}: {e}"),
    }
}

/// The ids of the rows on the page, top to bottom.
async fn page_ids(b: &Client) -> Vec<String> {
    let v = b
        .execute("return [...document.querySelectorAll('#ac-rows tr[data-id]')].map(r => r.dataset.id);", vec![])
        .await
        .unwrap();
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

/// The button `action` of the row of item `id`.
async fn action(b: &Client, id: &str, action: &str) -> Element {
    el(b, &format!("{} button[data-action=\"{action}\"]", row(id))).await
}

/// Waits for a message in the message area containing `text` (`error`: an error message).
async fn wait_message(b: &Client, text: &str, error: bool) {
    let class = if error { ".flash.error" } else { ".flash:not(.error)" };
    let js = format!(
        "[...document.querySelectorAll('#ac-msg {class}')].some(m => m.textContent.includes({}))",
        serde_json::to_string(text).unwrap()
    );
    wait_js(b, &js, LIVE).await;
}

async fn gone(b: &Client, id: &str) {
    wait_js(b, &format!("!document.querySelector('{}')", row(id).replace('\'', "\\'")), LIVE).await;
}

async fn has_cookie(b: &Client, name: &str) -> bool {
    match b.get_named_cookie(name).await {
        Ok(_) => true,
        Err(e) if e.is_no_such_cookie() => false,
        Err(e) => panic!("cookie {name}: {e}"),
    }
}

async fn url(b: &Client) -> String {
    b.current_url().await.unwrap().to_string()
}

/// The judged scenario: sign in as an operator, see the list, a new unassigned task shows up
/// live, the operator takes it, notes and acknowledges it, confirms a booking from its task;
/// a task assigned to another operator never shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_works_the_action_center_live_in_a_browser() {
    let app = TestApp::start_full(Engine::Sqlite, WorkerOptions::default()).await;
    let server = server_url(&app);
    let admin = app.login("admin@virel.com").await;
    let lukas = app.login("lukas@virel.com").await;
    let lukas_id = app.user_id("lukas@virel.com").await;
    let sasha_id = app.user_id("sasha@virel.com").await;
    let browser = Browser::start().await;
    let b: &Client = &browser;

    // Without a session the page sends the browser to the login, which comes back to it.
    b.goto(&format!("{server}/admin/action-center")).await.unwrap();
    wait_js(b, "location.pathname === '/admin/login'", Duration::from_secs(10)).await;
    assert!(url(b).await.ends_with("/admin/login?next=%2Fadmin%2Faction-center"));
    el(b, "input[name=email]").await.send_keys("lukas@virel.com").await.unwrap();
    el(b, "input[name=password]").await.send_keys("password123").await.unwrap();
    el(b, "form button[type=submit]").await.click().await.unwrap();
    wait_js(b, "location.pathname === '/admin/action-center'", Duration::from_secs(15)).await;

    // The page: the operator in the header, the list in the API's order, live.
    let root = el(b, "#ac").await;
    assert_eq!(root.attr("data-user-id").await.unwrap().as_deref(), Some(lukas_id.as_str()));
    assert!(el(b, "header .who").await.text().await.unwrap().contains("Lukas Berg"));
    wait_js(b, "document.getElementById('ac-live').dataset.state === 'live'", LIVE).await;
    let (s, list) = app.get(&lukas, "/action-center").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let api_ids: Vec<String> =
        list["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect();
    assert!(api_ids.len() >= 3, "the seed gives lukas items: {list}");
    wait_js(b, &format!("document.querySelectorAll('#ac-rows tr[data-id]').length === {}", api_ids.len()), LIVE).await;
    assert_eq!(page_ids(b).await, api_ids, "rows in the API's order");
    let total = el(b, "#count-total").await.text().await.unwrap();
    assert_eq!(total, api_ids.len().to_string());
    for it in list["items"].as_array().unwrap() {
        let r = el(b, &row(it["id"].as_str().unwrap())).await;
        assert_eq!(r.attr("data-kind").await.unwrap().as_deref(), it["kind"].as_str());
        assert!(r.attr("data-sla-state").await.unwrap().is_some());
        assert!(r.text().await.unwrap().contains(it["title"].as_str().unwrap()));
    }
    // A marker that a reload would wipe out.
    b.execute("window.__sameDocument = 42; return true;", vec![]).await.unwrap();

    // The admin gives sasha a task, then creates an unassigned one: the second shows up
    // without a reload; sasha's, committed before it, never does.
    let theirs = app
        .ok(&admin, "/tasks", json!({"type": "follow_up", "title": "Sasha's own call", "assignee_id": sasha_id}), 201)
        .await;
    let theirs = theirs["id"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    let task = app.ok(&admin, "/tasks", json!({"type": "follow_up", "title": "Call Mr Smith back"}), 201).await;
    let id = task["id"].as_str().unwrap().to_string();
    let r = el_within(b, &row(&id), LIVE).await;
    eprintln!("action center page: the new task showed after {:?}", t0.elapsed());
    assert!(!present(b, &row(&theirs)).await, "another operator's task is not shown");
    let text = r.text().await.unwrap();
    for part in ["Call Mr Smith back", "follow_up", "Unassigned", "task", "open"] {
        assert!(text.contains(part), "{part} in {text:?}");
    }
    assert_eq!(r.attr("data-sla-state").await.unwrap().as_deref(), Some("ok"));
    assert!(!present(b, &format!("{} button[data-action=confirm]", row(&id))).await, "no Confirm");
    // The countdown ticks (15 minutes for a first response).
    let first = el(b, &format!("{} td.sla", row(&id))).await.text().await.unwrap();
    assert!(first.starts_with("14:") || first.starts_with("15:"), "countdown {first:?}");
    wait_js(
        b,
        &format!("document.querySelector('{} td.sla').textContent !== {first:?}", row(&id).replace('\'', "\\'")),
        Duration::from_secs(3),
    )
    .await;

    // Assign to me: the row says so, and so does the API.
    action(b, &id, "assign-me").await.click().await.unwrap();
    wait_message(b, "to you", false).await;
    wait_js(
        b,
        &format!("document.querySelector('{}').dataset.assignee === '{lukas_id}'", row(&id).replace('\'', "\\'")),
        LIVE,
    )
    .await;
    assert!(el(b, &format!("{} td.assignee", row(&id))).await.text().await.unwrap().contains("Lukas Berg"));
    let (_, t) = app.get(&admin, &format!("/tasks/{id}")).await;
    assert_eq!(t["assignee_id"], lukas_id.as_str(), "{t}");

    // Mine: the list reloads from the API with the filter; All brings the rest back.
    let all_now = api_ids.len() + 1;
    el(b, "#ac-filters input[name=scope][value=mine]").await.click().await.unwrap();
    let (_, mine) = app.get(&lukas, "/action-center?mine=true").await;
    let mine_ids: Vec<String> =
        mine["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect();
    assert!(mine_ids.contains(&id) && mine_ids.len() < all_now, "{mine}");
    wait_js(b, &format!("document.querySelectorAll('#ac-rows tr[data-id]').length === {}", mine_ids.len()), LIVE).await;
    assert_eq!(page_ids(b).await, mine_ids);
    assert!(url(b).await.ends_with("/admin/action-center?mine=true"), "the filter is in the address");
    el(b, "#f-kind option[value=exception]").await.click().await.unwrap();
    wait_js(b, "document.querySelectorAll('#ac-rows tr[data-kind=task]').length === 0", LIVE).await;
    el(b, "#f-kind option[value='']").await.click().await.unwrap();
    el(b, "#ac-filters input[name=scope][value=all]").await.click().await.unwrap();
    wait_js(b, &format!("document.querySelectorAll('#ac-rows tr[data-id]').length === {all_now}"), LIVE).await;

    // Note, through the row's inline form.
    action(b, &id, "note").await.click().await.unwrap();
    let input = el(b, &format!("{} .note-form input[name=text]", row(&id))).await;
    input.send_keys("Left a voicemail for Mr Smith").await.unwrap();
    action(b, &id, "note-save").await.click().await.unwrap();
    wait_message(b, "Note added", false).await;
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM notes WHERE text = 'Left a voicemail for Mr Smith'").await, 1);

    // Acknowledge, after the 15-minute access cookie is gone: the page has the page guard
    // rotate the refresh cookie and tries again, without the operator noticing.
    b.delete_cookie("virel_session").await.unwrap();
    assert!(!has_cookie(b, "virel_session").await);
    action(b, &id, "acknowledge").await.click().await.unwrap();
    wait_message(b, "Acknowledged", false).await;
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM tasks WHERE title = 'Call Mr Smith back' AND acknowledged_at IS NOT NULL")
            .await,
        1
    );
    assert!(has_cookie(b, "virel_session").await, "a fresh session cookie");

    // An error from the API lands in the message area: this task has no client to contact.
    action(b, &id, "contact").await.click().await.unwrap();
    wait_message(b, "no subject with a client", true).await;

    // A confirm_booking task on a pending booking: Confirm completes it and moves the booking.
    let booking = fixtures::booking(&app, &admin, 48 * 60).await;
    let booking_id = booking["id"].as_str().unwrap().to_string();
    assert_eq!(booking["status"], "draft");
    app.ok(&admin, &format!("/bookings/{booking_id}/status"), json!({"status": "pending"}), 200).await;
    let confirm = app
        .ok(
            &admin,
            "/tasks",
            json!({"type": "confirm_booking", "title": "Confirm the Smith booking", "priority": "high",
                   "subject_type": "booking", "subject_id": booking_id}),
            201,
        )
        .await;
    let cid = confirm["id"].as_str().unwrap().to_string();
    let r = el_within(b, &row(&cid), LIVE).await;
    assert!(r.text().await.unwrap().contains("Confirm the Smith booking"));
    // The rows stay in the API's order as items come in live.
    let (_, list) = app.get(&lukas, "/action-center").await;
    let api_ids: Vec<String> =
        list["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(page_ids(b).await, api_ids, "live inserts keep the API's order");

    // A task already past its deadline goes to the top, red, counting up.
    let late = app
        .ok(&admin, "/tasks", json!({"type": "follow_up", "title": "Late callback", "due_at": fixtures::at(-3)}), 201)
        .await;
    let late = late["id"].as_str().unwrap().to_string();
    let r = el_within(b, &row(&late), LIVE).await;
    assert_eq!(r.attr("data-sla-state").await.unwrap().as_deref(), Some("breached"));
    assert_eq!(page_ids(b).await.first(), Some(&late), "breached first");
    let sla = el(b, &format!("{} td.sla", row(&late))).await.text().await.unwrap();
    assert!(sla.starts_with("overdue 2:") || sla.starts_with("overdue 3:"), "{sla:?}");
    wait_js(b, "document.getElementById('count-breached').textContent === '1'", LIVE).await;

    // A look at the page as an operator sees it.
    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target").join("action-center.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    std::fs::write(&shot, b.screenshot().await.unwrap()).unwrap();

    action(b, &cid, "confirm").await.click().await.unwrap();
    gone(b, &cid).await;
    wait_message(b, "the booking moved forward", false).await;
    let (_, bk) = app.get(&admin, &format!("/bookings/{booking_id}")).await;
    assert_eq!(bk["status"], "deposit_required", "{bk}");
    let (_, t) = app.get(&admin, &format!("/tasks/{cid}")).await;
    assert_eq!(t["status"], "done", "{t}");

    // The admin hands the Smith task to sasha: it leaves lukas's screen, live.
    app.ok(&admin, &format!("/action-center/task/{id}/assign"), json!({"assignee_id": sasha_id}), 200).await;
    gone(b, &id).await;

    assert!(!present(b, &row(&theirs)).await, "sasha's task never showed");
    assert_eq!(b.execute("return window.__sameDocument;", vec![]).await.unwrap(), json!(42), "the page never reloaded");

    // With the session over (both cookies gone), the next action leads to the login.
    b.delete_all_cookies().await.unwrap();
    let first = page_ids(b).await[0].clone();
    action(b, &first, "acknowledge").await.click().await.unwrap();
    wait_js(b, "location.pathname === '/admin/login'", LIVE).await;
    assert!(url(b).await.ends_with("/admin/login?next=%2Fadmin%2Faction-center"));
    browser.quit().await;
}

/// One page answer, redirects not followed.
async fn fetch_page(app: &TestApp, cookie: Option<&str>) -> (StatusCode, Option<String>, Option<String>, String) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut req = http.get(format!("{}/admin/action-center", server_url(app)));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = req.send().await.unwrap();
    let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(String::from);
    let (location, csp) = (header("location"), header("content-security-policy"));
    (resp.status(), location, csp, resp.text().await.unwrap())
}

/// The session cookie of a form login.
async fn session_cookie(app: &TestApp, email: &str) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = http
        .post(format!("{}/admin/login", server_url(app)))
        .form(&[("email", email), ("password", "password123")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let access = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("virel_session="))
        .map(|c| c.split(';').next().unwrap().to_string())
        .expect("a session cookie");
    format!("virel_session={access}")
}

/// Without a session: to the login. A CONTENT_MANAGER (no `action_center:read`): 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_needs_a_session_and_the_permission() {
    let app = TestApp::start(Engine::Sqlite).await;

    let (status, location, _, _) = fetch_page(&app, None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/admin/login?next=%2Fadmin%2Faction-center"));

    let content = session_cookie(&app, "content@virel.com").await;
    let (status, _, _, body) = fetch_page(&app, Some(&content)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("action_center:read"), "{body}");
    assert!(!body.contains("<script"), "the refusal runs no script");

    // An operator gets the page: its script is the only one the policy allows, and it may
    // talk to this origin only.
    let lukas = session_cookie(&app, "lukas@virel.com").await;
    let (status, _, csp, body) = fetch_page(&app, Some(&lukas)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let csp = csp.unwrap_or_default();
    for part in ["default-src 'none'", "script-src 'sha256-", "connect-src 'self'", "frame-ancestors 'none'"] {
        assert!(csp.contains(part), "{part} in {csp}");
    }
    assert!(!csp.contains("unsafe-eval") && !csp.contains("script-src 'unsafe-inline'"), "{csp}");
    assert_eq!(body.matches("<script>").count(), 1);
    assert!(!body.contains("http://") && !body.contains("https://") && !body.contains(" src="), "no external assets");
    let lukas_id = app.user_id("lukas@virel.com").await;
    assert!(body.contains(&format!("data-user-id=\"{lukas_id}\"")), "{body}");
    assert!(body.contains("data-sees-all=\"false\""));
    let owner = session_cookie(&app, "admin@virel.com").await;
    let (status, _, _, body) = fetch_page(&app, Some(&owner)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("data-sees-all=\"true\""));
}
