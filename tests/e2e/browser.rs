//! A headless Chromium for end-to-end tests, driven through [`fantoccini`].
//!
//! This module only launches: [`Browser::start`] starts Debian's `chromedriver` on a free
//! localhost port and opens a headless Chromium session with a fresh profile directory.
//! A [`Browser`] dereferences to a [`fantoccini::Client`], whose API the tests use directly;
//! chromedriver, Chromium and the profile are gone when it is dropped. The browser must be
//! installed (`apt-get install chromium chromium-driver`, done by `deploy/test.sh`): a test
//! that asks for one fails loudly when it cannot start, it never skips.
//!
//! ```ignore
//! let b = Browser::start().await;
//! b.goto(&format!("{server}/admin/login")).await?;
//! b.find(Locator::Css("input[name=email]")).await?.send_keys("admin@virel.com").await?;
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::harness::{Engine, TestApp};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// What to do when the browser cannot start.
const INSTALL_HINT: &str =
    "install the browser: `apt-get install chromium chromium-driver` (as root; ./deploy/test.sh does it)";

/// One headless Chromium session and the chromedriver process behind it.
pub struct Browser {
    client: Client,
    driver: Driver,
}

impl std::ops::Deref for Browser {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or panics saying what to install.
    pub async fn start() -> Browser {
        match Self::try_start().await {
            Ok(b) => b,
            Err(e) => panic!("the headless browser could not start: {e}\n=> {INSTALL_HINT}"),
        }
    }

    /// Starts chromedriver and a headless Chromium session.
    pub async fn try_start() -> Result<Browser, String> {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(bin).exists() {
                return Err(format!("{bin} is missing"));
            }
        }
        // A port picked by binding :0 can be taken again before chromedriver binds it: retry.
        let mut last_err = String::new();
        for _ in 0..3 {
            let mut driver = Driver::spawn()?;
            if let Err(e) = driver.wait_ready().await {
                last_err = e;
                continue;
            }
            let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities(&driver.dir.join("profile")))
                .connect(&driver.url)
                .await
                .map_err(|e| format!("creating the Chromium session: {e}\n{}", driver.log_tail()))?;
            driver.session = client.session_id().await.ok().flatten();
            // A desktop-sized window, so that screenshots show the page as a person sees it.
            let _ = client.set_window_size(1280, 900).await;
            return Ok(Browser { client, driver });
        }
        Err(last_err)
    }

    /// Ends the session (Chromium exits); chromedriver and the profile go on drop.
    pub async fn quit(mut self) {
        if self.client.clone().close().await.is_ok() {
            self.driver.session = None;
        }
    }
}

/// Chromium's options: headless, no sandbox (CI runs as root), nothing that reaches out to
/// the network at start-up (this machine refuses it, and the session can hang or fail).
fn capabilities(profile: &Path) -> serde_json::Map<String, Value> {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    match caps {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// The chromedriver process, its URL, and the directory with the profile and its log.
struct Driver {
    child: Child,
    url: String,
    dir: PathBuf,
    /// Set while a session is open, so that drop can end it.
    session: Option<String>,
}

impl Driver {
    /// Starts chromedriver on a free localhost port, logging to `dir/chromedriver.log`.
    fn spawn() -> Result<Driver, String> {
        let dir = std::env::temp_dir().join(format!("virel-browser-{}", uuid::Uuid::now_v7().simple()));
        let profile = dir.join("profile");
        std::fs::create_dir_all(&profile).map_err(|e| format!("creating {}: {e}", profile.display()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
        let log = std::fs::File::create(dir.join("chromedriver.log")).map_err(|e| format!("chromedriver log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("chromedriver log: {e}"))?;
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                format!("starting {CHROMEDRIVER}: {e}")
            })?;
        Ok(Driver { child, url: format!("http://127.0.0.1:{port}"), dir, session: None })
    }

    /// Polls `GET /status` until chromedriver says it is ready.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("chromedriver exited ({status}) before it was ready\n{}", self.log_tail()));
            }
            if let Ok(resp) = http.get(format!("{}/status", self.url)).send().await
                && let Ok(v) = resp.json::<Value>().await
                && v["value"]["ready"] == true
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("chromedriver not ready after 20 s\n{}", self.log_tail()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("chromedriver.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("chromedriver log (end):\n{}", tail.join("\n"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Have chromedriver close Chromium first: killing chromedriver alone can leave Chromium
        // running. Drop runs inside the test's runtime (which may be going away), so use a
        // thread with its own.
        if let Some(id) = self.session.take() {
            let url = format!("{}/session/{id}", self.url);
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
                rt.block_on(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(10), reqwest::Client::new().delete(url).send()).await;
                });
            })
            .join();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls the JavaScript expression `js` until it is `true`, up to `timeout`; panics (with the
/// URL and the start of the page) if it never is. A thrown exception (e.g. during a
/// navigation) counts as not yet.
pub async fn wait_js(c: &Client, js: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let script = format!("return !!({js});");
    loop {
        if let Ok(Value::Bool(true)) = c.execute(&script, vec![]).await {
            return;
        }
        if Instant::now() > deadline {
            panic!("`{js}` still not true after {timeout:?}\n{}", where_is(c).await);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// For failure messages: where the browser is and the start of its page.
pub async fn where_is(c: &Client) -> String {
    let url = c.current_url().await.map(|u| u.to_string()).unwrap_or_else(|e| format!("(url unavailable: {e})"));
    let src = match c.source().await {
        Ok(s) => s.chars().take(1500).collect(),
        Err(e) => format!("(page source unavailable: {e})"),
    };
    format!("on {url}, page source (start):\n{src}")
}

/// The server's root URL (`app.base` without `/api/v1`).
pub fn server_url(app: &TestApp) -> String {
    app.base.trim_end_matches("/api/v1").to_string()
}

/// A real browser signs in through the login form and lands on an admin page with the
/// session cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smoke_login_in_headless_chromium() {
    let app = TestApp::start_full(Engine::Sqlite, Default::default()).await;
    let server = server_url(&app);
    let b = Browser::start().await;

    b.goto(&format!("{server}/admin/login")).await.unwrap();
    let email = b.wait().for_element(Locator::Css("input[name=email]")).await.unwrap();
    let password = b.find(Locator::Css("input[name=password]")).await.unwrap();
    email.send_keys("admin@virel.com").await.unwrap();
    password.send_keys("password123").await.unwrap();
    assert_eq!(email.prop("value").await.unwrap().as_deref(), Some("admin@virel.com"));
    assert_eq!(password.attr("type").await.unwrap().as_deref(), Some("password"));

    let png = b.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "the screenshot is a PNG");
    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target").join("browser-smoke.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    std::fs::write(&shot, &png).unwrap();

    b.find(Locator::Css("form button[type=submit], form input[type=submit]")).await.unwrap().click().await.unwrap();
    wait_js(
        &b,
        "location.pathname.startsWith('/admin/') && location.pathname !== '/admin/login'",
        Duration::from_secs(15),
    )
    .await;

    let url = b.current_url().await.unwrap().to_string();
    eprintln!("browser smoke: signed in, landed on {url} ({:?})", b.title().await);
    assert!(url.starts_with(&format!("{server}/admin/")), "ended on {url}");
    let Ok(cookie) = b.get_named_cookie("virel_session").await else {
        panic!("no virel_session cookie on {url}; cookies: {:?}", b.get_all_cookies().await);
    };
    assert!(!cookie.value().is_empty(), "empty session cookie: {cookie}");
    assert_eq!(cookie.http_only(), Some(true), "the session cookie is HttpOnly: {cookie}");

    b.quit().await;
}
