//! A real headless browser for end-to-end tests: a minimal W3C WebDriver client over
//! `reqwest`, driving Debian's `chromedriver` and `chromium`.
//!
//! Each [`Browser`] starts its own `chromedriver` on a free localhost port with a fresh
//! Chromium profile directory; both are gone when it is dropped. The browser must be
//! installed (`apt-get install chromium chromium-driver`, done by `.ci/run`): a test that
//! asks for one fails loudly when it cannot start, it never skips.
//!
//! ```ignore
//! let b = Browser::start().await;
//! b.goto(&format!("{server}/admin/login")).await;
//! let email = b.find("#email").await;
//! b.send_keys(&email, "admin@virel.com").await;
//! ```

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::{Engine, TestApp};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long [`Browser::find`] polls for an element that is not there (yet).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// The W3C key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// What to do when the browser cannot start.
const INSTALL_HINT: &str = "install the browser: `apt-get install chromium chromium-driver` (as root; .ci/run does it)";

/// A WebDriver element reference, as returned by [`Browser::find`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element(pub String);

impl Element {
    /// The reference as WebDriver expects it in script arguments.
    pub fn to_json(&self) -> Value {
        json!({ ELEMENT_KEY: self.0 })
    }
}

/// An error answered by the WebDriver server (`{"value": {"error", "message"}}`).
#[derive(Debug)]
pub struct WdError {
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

/// One headless Chromium session, with the chromedriver process behind it.
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`
    session_url: String,
    session_id: String,
    driver: Child,
    driver_url: String,
    /// Holds the Chromium profile (`profile/`) and chromedriver's log (`chromedriver.log`).
    dir: PathBuf,
    quit: bool,
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
            if !std::path::Path::new(bin).exists() {
                return Err(format!("{bin} is missing"));
            }
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;

        // A port picked by binding :0 can be taken again before chromedriver binds it: retry.
        let mut last_err = String::new();
        for _ in 0..3 {
            let dir = std::env::temp_dir().join(format!("virel-browser-{}", uuid::Uuid::now_v7().simple()));
            let profile = dir.join("profile");
            std::fs::create_dir_all(&profile).map_err(|e| format!("creating {}: {e}", profile.display()))?;
            let (driver, driver_url) = match spawn_driver(&dir) {
                Ok(d) => d,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e);
                }
            };
            // From here on, Drop kills chromedriver and removes the directory.
            let mut b = Browser {
                http: http.clone(),
                session_url: String::new(),
                session_id: String::new(),
                driver,
                driver_url,
                dir,
                quit: true,
            };
            if let Err(e) = b.wait_ready().await {
                last_err = e;
                continue;
            }
            b.new_session(&profile).await.map_err(|e| format!("{e}\n{}", b.driver_log()))?;
            return Ok(b);
        }
        Err(last_err)
    }

    /// Polls `GET /status` until the driver says it is ready.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.driver.try_wait() {
                return Err(format!("chromedriver exited ({status}) before it was ready\n{}", self.driver_log()));
            }
            if let Ok(resp) = self.http.get(format!("{}/status", self.driver_url)).send().await
                && let Ok(v) = resp.json::<Value>().await
                && v["value"]["ready"] == true
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("chromedriver not ready after 20 s\n{}", self.driver_log()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn new_session(&mut self, profile: &std::path::Path) -> Result<(), String> {
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--disable-quic",
                            "--no-first-run",
                            // Without these Chromium reaches out to the network at start-up,
                            // which this machine refuses, and the session can hang or fail.
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            format!("--user-data-dir={}", profile.display()),
                        ],
                    },
                },
            },
        });
        let v = wd(&self.http, reqwest::Method::POST, &format!("{}/session", self.driver_url), Some(caps))
            .await
            .map_err(|e| format!("creating the Chromium session: {e}"))?;
        let id = v["sessionId"].as_str().ok_or_else(|| format!("no sessionId in {v}"))?.to_string();
        self.session_url = format!("{}/session/{id}", self.driver_url);
        self.session_id = id;
        self.quit = false;
        // A desktop-sized window, so that screenshots show the page as a person sees it.
        let _ = self.cmd(reqwest::Method::POST, "/window/rect", Some(json!({"width": 1280, "height": 900}))).await;
        Ok(())
    }

    /// One command on this session (`path` after `/session/ID`); the error as it came.
    pub async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        let body = match (&method, body) {
            (_, Some(b)) => Some(b),
            (&reqwest::Method::POST, None) => Some(json!({})),
            _ => None,
        };
        wd(&self.http, method, &format!("{}{path}", self.session_url), body).await
    }

    async fn must(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        match self.cmd(method.clone(), path, body).await {
            Ok(v) => v,
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        }
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Navigates and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.must(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn current_url(&self) -> String {
        self.must(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or_default().to_string()
    }

    /// The first element matching `css`, polling up to [`DEFAULT_WAIT`]; panics if none shows.
    pub async fn find(&self, css: &str) -> Element {
        self.wait_for(css, DEFAULT_WAIT).await
    }

    /// The first element matching `css` now, if any.
    pub async fn try_find(&self, css: &str) -> Option<Element> {
        let body = json!({"using": "css selector", "value": css});
        match self.cmd(reqwest::Method::POST, "/element", Some(body)).await {
            Ok(v) => v[ELEMENT_KEY].as_str().map(|s| Element(s.to_string())),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("WebDriver find {css:?}: {e}"),
        }
    }

    /// Every element matching `css` now.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let body = json!({"using": "css selector", "value": css});
        let v = self.must(reqwest::Method::POST, "/elements", Some(body)).await;
        v.as_array()
            .map(|a| a.iter().filter_map(|e| e[ELEMENT_KEY].as_str()).map(|s| Element(s.to_string())).collect())
            .unwrap_or_default()
    }

    /// Polls for an element matching `css` up to `timeout`; panics (with the URL and the
    /// start of the page) if none shows.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(el) = self.try_find(css).await {
                return el;
            }
            if Instant::now() > deadline {
                panic!(
                    "no element {css:?} after {timeout:?} on {}\n{}",
                    self.current_url().await,
                    self.page_excerpt().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the JavaScript expression `js` until it is `true`, up to `timeout`; panics if
    /// it never is. A thrown exception (e.g. during a navigation) counts as not yet.
    pub async fn wait_until(&self, js: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let script = format!("return !!({js});");
        loop {
            if let Ok(Value::Bool(true)) =
                self.cmd(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []}))).await
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "`{js}` still not true after {timeout:?} on {}\n{}",
                    self.current_url().await,
                    self.page_excerpt().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn click(&self, el: &Element) {
        self.must(reqwest::Method::POST, &format!("/element/{}/click", el.0), None).await;
    }

    /// Types `text` into the element (appending to what it holds).
    pub async fn send_keys(&self, el: &Element, text: &str) {
        self.must(reqwest::Method::POST, &format!("/element/{}/value", el.0), Some(json!({ "text": text }))).await;
    }

    pub async fn clear(&self, el: &Element) {
        self.must(reqwest::Method::POST, &format!("/element/{}/clear", el.0), None).await;
    }

    /// The rendered (visible) text of the element.
    pub async fn text(&self, el: &Element) -> String {
        let v = self.must(reqwest::Method::GET, &format!("/element/{}/text", el.0), None).await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// The HTML attribute as written in the page (`value` is the initial value, not what
    /// was typed: see [`Browser::property`]); `None` if absent.
    pub async fn attr(&self, el: &Element, name: &str) -> Option<String> {
        let v = self.must(reqwest::Method::GET, &format!("/element/{}/attribute/{name}", el.0), None).await;
        match v {
            Value::Null => None,
            Value::String(s) => Some(s),
            other => Some(other.to_string()),
        }
    }

    /// The DOM property (e.g. `value`: what the field holds now); `Null` if absent.
    pub async fn property(&self, el: &Element, name: &str) -> Value {
        self.must(reqwest::Method::GET, &format!("/element/{}/property/{name}", el.0), None).await
    }

    /// Runs `script` (a function body: `return ...;`, arguments in `arguments[i]`) and
    /// returns its result. Pass elements as [`Element::to_json`].
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.must(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    /// The page's title.
    pub async fn title(&self) -> String {
        self.must(reqwest::Method::GET, "/title", None).await.as_str().unwrap_or_default().to_string()
    }

    /// The page's HTML as the browser holds it now.
    pub async fn page_source(&self) -> String {
        self.must(reqwest::Method::GET, "/source", None).await.as_str().unwrap_or_default().to_string()
    }

    /// Every cookie visible to the current page, HttpOnly ones included (WebDriver sees them).
    pub async fn cookies(&self) -> Vec<Value> {
        self.must(reqwest::Method::GET, "/cookie", None).await.as_array().cloned().unwrap_or_default()
    }

    /// The cookie `name` visible to the current page, as WebDriver describes it
    /// (`name`, `value`, `path`, `httpOnly`, `secure`, `sameSite`, ...).
    pub async fn cookie(&self, name: &str) -> Option<Value> {
        self.cookies().await.into_iter().find(|c| c["name"] == name)
    }

    /// A PNG of the viewport.
    pub async fn screenshot_png(&self) -> Vec<u8> {
        let v = self.must(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("screenshot is a base64 string"))
            .expect("screenshot is valid base64")
    }

    /// Ends the session (Chromium exits); chromedriver and the profile go on drop.
    pub async fn quit(mut self) {
        if !self.quit {
            let _ = self.cmd(reqwest::Method::DELETE, "", None).await;
            self.quit = true;
        }
    }

    /// For failure messages: where the browser is and the start of its page.
    async fn page_excerpt(&self) -> String {
        let src = match self.cmd(reqwest::Method::GET, "/source", None).await {
            Ok(v) => v.as_str().unwrap_or_default().to_string(),
            Err(e) => return format!("(page source unavailable: {e})"),
        };
        let cut: String = src.chars().take(1500).collect();
        format!("page source (start):\n{cut}")
    }

    fn driver_log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("chromedriver.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("chromedriver log (end):\n{}", tail.join("\n"))
    }

    fn kill_driver(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ask chromedriver to close Chromium first: killing chromedriver alone can leave
        // Chromium running. Drop runs inside the test's runtime, so use a thread with its own.
        if !self.quit {
            let (http, url) = (self.http.clone(), self.session_url.clone());
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
                rt.block_on(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), http.delete(url).send()).await;
                });
            })
            .join();
        }
        self.kill_driver();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts chromedriver on a free localhost port, logging to `dir/chromedriver.log`.
fn spawn_driver(dir: &std::path::Path) -> Result<(Child, String), String> {
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
        .map_err(|e| format!("starting {CHROMEDRIVER}: {e}"))?;
    Ok((child, format!("http://127.0.0.1:{port}")))
}

/// One WebDriver request: the response's `value`, or its error.
async fn wd(http: &reqwest::Client, method: reqwest::Method, url: &str, body: Option<Value>) -> Result<Value, WdError> {
    let mut req = http.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.map_err(|e| WdError { error: "transport".into(), message: e.to_string() })?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| WdError { error: "transport".into(), message: e.to_string() })?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|_| WdError { error: format!("HTTP {status}"), message: text.chars().take(500).collect() })?;
    let value = v.get("value").cloned().unwrap_or(Value::Null);
    if !status.is_success() || value.get("error").is_some_and(|e| e.is_string()) {
        return Err(WdError {
            error: value["error"].as_str().unwrap_or("unknown error").to_string(),
            message: value["message"].as_str().unwrap_or_default().chars().take(2000).collect(),
        });
    }
    Ok(value)
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

    b.goto(&format!("{server}/admin/login")).await;
    let email = b.find("input[name=email]").await;
    let password = b.find("input[name=password]").await;
    b.send_keys(&email, "admin@virel.com").await;
    b.send_keys(&password, "password123").await;
    assert_eq!(b.property(&email, "value").await, "admin@virel.com");
    assert_eq!(b.attr(&password, "type").await.as_deref(), Some("password"));

    let png = b.screenshot_png().await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "the screenshot is a PNG");
    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target").join("browser-smoke.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    std::fs::write(&shot, &png).unwrap();

    let submit = b.find("form button[type=submit], form input[type=submit]").await;
    b.click(&submit).await;
    b.wait_until(
        "location.pathname.startsWith('/admin/') && location.pathname !== '/admin/login'",
        Duration::from_secs(15),
    )
    .await;

    let url = b.current_url().await;
    eprintln!("browser smoke: signed in, landed on {url} ({:?})", b.title().await);
    assert!(url.starts_with(&format!("{server}/admin/")), "ended on {url}");
    let cookie = b.cookie("virel_session").await;
    let Some(cookie) = cookie else {
        panic!("no virel_session cookie on {url}; cookies: {:?}", b.cookies().await);
    };
    assert!(!cookie["value"].as_str().unwrap_or_default().is_empty(), "empty session cookie: {cookie}");
    assert_eq!(cookie["httpOnly"], true, "the session cookie is HttpOnly: {cookie}");

    b.quit().await;
}
