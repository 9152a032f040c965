//! Configuration: every setting Virel has, read once at start into one typed `Config` and
//! passed down. Sources, the first that has a setting winning: the process environment, then
//! an optional `virel.toml` (`VIREL_CONFIG` names it; else `./virel.toml` when present), then
//! the defaults. The README's configuration table lists them all.
//!
//! In `virel.toml` a setting's key is its variable's name in lower case without the `VIREL_`
//! prefix (`bind`, `concurrency_ops`, `database_url`, `rust_log`). Secrets (`JWT_SECRET`, and
//! provider keys) are read from the environment only: a file that names one is refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use virel_domain::jobs::{Queue, RetrySettings};
use virel_workers::{Liveness, WorkerConfig};

/// The variables Virel reads, each with its `virel.toml` key.
const SETTINGS: &[&str] = &[
    "DATABASE_URL",
    "REDIS_URL",
    "VIREL_QUEUE_PREFIX",
    "VIREL_BIND",
    "VIREL_DATA_DIR",
    "JWT_SECRET",
    "VIREL_METRICS_TOKEN",
    "VIREL_DB_MAX_CONNECTIONS",
    "VIREL_CONCURRENCY_CRITICAL",
    "VIREL_CONCURRENCY_OPS",
    "VIREL_CONCURRENCY_HEAVY",
    "VIREL_RETRY_ATTEMPTS",
    "VIREL_RETRY_ATTEMPTS_NOTIFICATION",
    "VIREL_RETRY_BASE_MS",
    "VIREL_RETRY_CAP_MS",
    "VIREL_HEARTBEAT_MS",
    "VIREL_MISSED_HEARTBEATS",
    "VIREL_POLL_MS",
    "VIREL_MAX_OPEN_ITEMS_PER_OPERATOR",
    "VIREL_SLA_SWEEP_SECS",
    "VIREL_TIMEZONE",
    "VIREL_TRUST_PROXY",
    "VIREL_PUBLIC_URL",
    "VIREL_LOG_FORMAT",
    "RUST_LOG",
    "HOSTNAME",
];

/// Settings that may only come from the environment.
const SECRETS: &[&str] = &["JWT_SECRET", "VIREL_METRICS_TOKEN"];

fn toml_key(var: &str) -> String {
    var.strip_prefix("VIREL_").unwrap_or(var).to_ascii_lowercase()
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// `postgres://...` or `sqlite:...`; None means the embedded SQLite file in the data dir.
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    /// Prefix of the queues' Redis keys, so deployments can share one Redis.
    pub queue_prefix: String,
    pub bind: String,
    pub data_dir: PathBuf,
    pub jwt_secret: Option<String>,
    /// A bearer token that may read `/api/v1/system/metrics` only (a Prometheus scraper).
    pub metrics_token: Option<String>,
    pub db_max_connections: u32,
    /// Jobs run at once per queue and process.
    pub concurrency: HashMap<Queue, usize>,
    pub retry: RetrySettings,
    pub liveness: Liveness,
    pub domain: virel_domain::settings::Settings,
    pub sla_sweep_secs: u32,
    /// Believe `X-Forwarded-For` (only behind a proxy that sets it).
    pub trust_proxy: bool,
    /// The address operators use (`https://ops.example.com`): cookies are `Secure` when it is
    /// https, and cross-site checks compare against its origin.
    pub public_url: Option<String>,
    pub log_filter: String,
    pub log_format: LogFormat,
    /// This machine's name, in worker and scheduler names.
    pub host: String,
}

/// Where settings come from: the environment first, then the file.
struct Source {
    env: HashMap<String, String>,
    file: HashMap<String, String>,
    file_name: Option<PathBuf>,
}

impl Source {
    fn new(env: HashMap<String, String>, file: Option<(PathBuf, &str)>) -> anyhow::Result<Source> {
        let mut values = HashMap::new();
        let mut file_name = None;
        if let Some((path, text)) = file {
            let table: toml::Table =
                toml::from_str(text).with_context(|| format!("{} is not valid TOML", path.display()))?;
            let known: HashMap<String, &str> = SETTINGS.iter().map(|v| (toml_key(v), *v)).collect();
            for (key, value) in table {
                let Some(var) = known.get(&key) else {
                    bail!("{}: unknown setting {key:?}", path.display());
                };
                if SECRETS.contains(var) {
                    bail!("{}: {key} is a secret: set {var} in the environment instead", path.display());
                }
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => bail!(
                        "{}: {key} must be a string, number or boolean (got {})",
                        path.display(),
                        other.type_str()
                    ),
                };
                values.insert(var.to_string(), text);
            }
            file_name = Some(path);
        }
        Ok(Source { env, file: values, file_name })
    }

    fn get(&self, var: &str) -> Option<String> {
        debug_assert!(SETTINGS.contains(&var), "{var} is not in SETTINGS");
        self.env
            .get(var)
            .filter(|v| !v.trim().is_empty())
            .or_else(|| self.file.get(var).filter(|v| !v.trim().is_empty()))
            .map(|v| v.trim().to_string())
    }

    fn where_(&self, var: &str) -> String {
        match (&self.file_name, self.env.contains_key(var)) {
            (Some(p), false) => format!("{} in {}", toml_key(var), p.display()),
            _ => var.to_string(),
        }
    }

    fn num<T: std::str::FromStr>(&self, var: &str, default: T) -> anyhow::Result<T> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => {
                v.parse().map_err(|_| anyhow::anyhow!("{} must be a whole number (got {v:?})", self.where_(var)))
            }
        }
    }

    fn positive<T: std::str::FromStr + PartialOrd + Default + Copy>(&self, var: &str, default: T) -> anyhow::Result<T> {
        let n = self.num(var, default)?;
        if n <= T::default() {
            bail!("{} must be greater than 0", self.where_(var));
        }
        Ok(n)
    }

    fn flag(&self, var: &str) -> anyhow::Result<bool> {
        match self.get(var).map(|v| v.to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
            Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
            Some(v) => bail!("{} must be 1 or 0 (got {v:?})", self.where_(var)),
        }
    }
}

impl Config {
    /// The process environment, and `virel.toml` when there is one.
    pub fn from_env() -> anyhow::Result<Config> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let path = match env.get("VIREL_CONFIG").filter(|p| !p.trim().is_empty()) {
            Some(p) => Some(PathBuf::from(p)),
            None => Some(PathBuf::from("virel.toml")).filter(|p| p.exists()),
        };
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
                Config::from_sources(env, Some((p, &text)))
            }
            None => Config::from_sources(env, None),
        }
    }

    /// From the given variables and file (`(path, contents)`), without touching the process.
    pub fn from_sources(env: HashMap<String, String>, file: Option<(PathBuf, &str)>) -> anyhow::Result<Config> {
        let s = Source::new(env, file)?;
        let d = RetrySettings::default();
        let retry = RetrySettings {
            attempts_default: s.positive("VIREL_RETRY_ATTEMPTS", d.attempts_default)?,
            attempts_notification: s.positive("VIREL_RETRY_ATTEMPTS_NOTIFICATION", d.attempts_notification)?,
            base: Duration::from_millis(s.positive("VIREL_RETRY_BASE_MS", d.base.as_millis() as u64)?),
            cap: Duration::from_millis(s.positive("VIREL_RETRY_CAP_MS", d.cap.as_millis() as u64)?),
        };
        let l = Liveness::default();
        let liveness = Liveness {
            heartbeat: Duration::from_millis(s.positive("VIREL_HEARTBEAT_MS", l.heartbeat.as_millis() as u64)?),
            missed_heartbeats: s.positive("VIREL_MISSED_HEARTBEATS", l.missed_heartbeats)?,
            poll: Duration::from_millis(s.positive("VIREL_POLL_MS", l.poll.as_millis() as u64)?),
        };
        let mut concurrency = HashMap::new();
        for (q, default) in [(Queue::Critical, 8), (Queue::Ops, 16), (Queue::Heavy, 2)] {
            let var = format!("VIREL_CONCURRENCY_{}", q.as_str().to_uppercase());
            concurrency.insert(q, s.positive(&var, default)?);
        }
        let dd = virel_domain::settings::Settings::default();
        let timezone = s.get("VIREL_TIMEZONE").unwrap_or(dd.timezone);
        if timezone.parse::<chrono_tz::Tz>().is_err() {
            bail!("{} must be an IANA time zone such as Europe/London (got {timezone:?})", s.where_("VIREL_TIMEZONE"));
        }
        let domain = virel_domain::settings::Settings {
            timezone,
            max_open_items_per_operator: s
                .positive("VIREL_MAX_OPEN_ITEMS_PER_OPERATOR", dd.max_open_items_per_operator)?,
        };
        let log_format = match s.get("VIREL_LOG_FORMAT").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(v) => bail!("{} must be text or json (got {v:?})", s.where_("VIREL_LOG_FORMAT")),
        };
        let public_url = s.get("VIREL_PUBLIC_URL").map(|u| u.trim_end_matches('/').to_string());
        if let Some(u) = &public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            bail!("{} must start with http:// or https:// (got {u:?})", s.where_("VIREL_PUBLIC_URL"));
        }
        Ok(Config {
            database_url: s.get("DATABASE_URL"),
            redis_url: s.get("REDIS_URL"),
            queue_prefix: s.get("VIREL_QUEUE_PREFIX").unwrap_or_else(|| "virel".into()),
            bind: s.get("VIREL_BIND").unwrap_or_else(|| "0.0.0.0:3000".into()),
            data_dir: PathBuf::from(s.get("VIREL_DATA_DIR").unwrap_or_else(|| "./data".into())),
            jwt_secret: s.get("JWT_SECRET"),
            metrics_token: s.get("VIREL_METRICS_TOKEN"),
            db_max_connections: s.positive("VIREL_DB_MAX_CONNECTIONS", 10)?,
            concurrency,
            retry,
            liveness,
            domain,
            sla_sweep_secs: s.positive("VIREL_SLA_SWEEP_SECS", 30)?,
            trust_proxy: s.flag("VIREL_TRUST_PROXY")?,
            public_url,
            log_filter: s.get("RUST_LOG").unwrap_or_else(|| "info,sqlx=warn,poem=warn".into()),
            log_format,
            host: s.get("HOSTNAME").unwrap_or_else(|| "virel".into()),
        })
    }

    /// Embedded mode: no DATABASE_URL, so one SQLite file in the data dir holds everything.
    pub fn embedded(&self) -> bool {
        self.database_url.is_none()
    }

    pub fn database_url(&self) -> anyhow::Result<String> {
        match &self.database_url {
            Some(u) => Ok(u.clone()),
            None => {
                std::fs::create_dir_all(&self.data_dir)
                    .with_context(|| format!("cannot create VIREL_DATA_DIR {}", self.data_dir.display()))?;
                Ok(format!("sqlite://{}", self.data_dir.join("virel.db").display()))
            }
        }
    }

    /// The worker pools' settings, for `queues` (all three when empty).
    pub fn workers(&self, queues: &[String]) -> anyhow::Result<WorkerConfig> {
        let mut chosen = Vec::new();
        for n in queues {
            let q = Queue::parse(n.trim())
                .ok_or_else(|| anyhow::anyhow!("unknown queue {n:?}: expected critical, ops or heavy"))?;
            if !chosen.contains(&q) {
                chosen.push(q);
            }
        }
        if chosen.is_empty() {
            chosen = Queue::ALL.to_vec();
        }
        Ok(WorkerConfig {
            queues: chosen,
            concurrency: self.concurrency.clone(),
            retry: self.retry.clone(),
            liveness: self.liveness.clone(),
            host: self.host.clone(),
        })
    }

    /// The API's settings. `public_url`'s origin is the one cookie-authenticated writes may
    /// come from (besides the request's own host); https there makes the cookies `Secure`.
    pub fn api(&self) -> virel_api::ApiSettings {
        virel_api::ApiSettings {
            trust_proxy: self.trust_proxy,
            secure_cookies: self.public_url.as_deref().is_some_and(|u| u.starts_with("https://")),
            public_origin: self.public_url.as_deref().map(origin_of),
        }
    }

    pub fn scheduler(&self) -> virel_scheduler::SchedulerConfig {
        virel_scheduler::SchedulerConfig { sweep_secs: self.sla_sweep_secs, host: self.host.clone() }
    }

    /// The JWT signing secret: JWT_SECRET, or in embedded mode one generated on first start
    /// and kept (mode 0600) in the data dir so tokens survive restarts.
    pub fn jwt_secret(&self) -> anyhow::Result<Vec<u8>> {
        if let Some(s) = &self.jwt_secret {
            if s.len() < 32 {
                bail!("JWT_SECRET must be at least 32 characters");
            }
            return Ok(s.as_bytes().to_vec());
        }
        if !self.embedded() {
            bail!("JWT_SECRET is required when DATABASE_URL is set");
        }
        let path = self.data_dir.join("jwt_secret");
        if let Ok(existing) = std::fs::read_to_string(&path)
            && existing.trim().len() >= 32
        {
            return Ok(existing.trim().as_bytes().to_vec());
        }
        std::fs::create_dir_all(&self.data_dir)?;
        let secret = virel_domain::commands::auth::random_secret();
        write_private(&path, &secret).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(secret.into_bytes())
    }
}

/// `https://ops.example.com/virel` → `https://ops.example.com`.
fn origin_of(url: &str) -> String {
    let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[scheme_end..].find('/') {
        Some(i) => url[..scheme_end + i].to_string(),
        None => url.to_string(),
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_without_any_source() {
        let c = Config::from_sources(HashMap::new(), None).unwrap();
        assert!(c.embedded());
        assert_eq!(c.bind, "0.0.0.0:3000");
        assert_eq!(c.concurrency[&Queue::Ops], 16);
        assert_eq!(c.retry.attempts_default, 5);
        assert_eq!(c.retry.attempts_notification, 3);
        assert_eq!(c.liveness.poll, Duration::from_millis(25));
        assert_eq!(c.domain.timezone, "Europe/London");
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(!c.trust_proxy);
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let file = "bind = \"127.0.0.1:4000\"\nconcurrency_ops = 4\nretry_attempts = 7\ntrust_proxy = true\n";
        let c =
            Config::from_sources(env(&[("VIREL_CONCURRENCY_OPS", "9")]), Some(("virel.toml".into(), file))).unwrap();
        assert_eq!(c.bind, "127.0.0.1:4000");
        assert_eq!(c.concurrency[&Queue::Ops], 9);
        assert_eq!(c.retry.attempts_default, 7);
        assert!(c.trust_proxy);
    }

    #[test]
    fn bad_values_are_refused_naming_the_setting() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, &'a str);
        let cases: &[Case] = &[
            (&[("VIREL_CONCURRENCY_OPS", "lots")], None, "VIREL_CONCURRENCY_OPS"),
            (&[("VIREL_CONCURRENCY_OPS", "0")], None, "VIREL_CONCURRENCY_OPS"),
            (&[("VIREL_TIMEZONE", "Mars/Olympus")], None, "VIREL_TIMEZONE"),
            (&[("VIREL_LOG_FORMAT", "xml")], None, "VIREL_LOG_FORMAT"),
            (&[("VIREL_TRUST_PROXY", "maybe")], None, "VIREL_TRUST_PROXY"),
            (&[], Some("concurrency_ops = \"x\""), "concurrency_ops in virel.toml"),
            (&[], Some("jwt_secret = \"0123456789abcdef0123456789abcdef\""), "JWT_SECRET in the environment"),
            (&[], Some("bnid = \"x\""), "unknown setting \"bnid\""),
            (&[], Some("bind = ["), "not valid TOML"),
        ];
        for (vars, file, needle) in cases {
            let err = Config::from_sources(env(vars), file.map(|f| ("virel.toml".into(), f))).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains(needle), "{vars:?} {file:?}: {msg}");
        }
    }

    #[test]
    fn the_public_url_sets_the_origin_and_secure_cookies() {
        let c = Config::from_sources(env(&[("VIREL_PUBLIC_URL", "https://ops.example.com/virel/")]), None).unwrap();
        let api = c.api();
        assert_eq!(api.public_origin.as_deref(), Some("https://ops.example.com"));
        assert!(api.secure_cookies);
        let c = Config::from_sources(env(&[("VIREL_PUBLIC_URL", "http://localhost:3000")]), None).unwrap();
        assert!(!c.api().secure_cookies);
        assert!(Config::from_sources(env(&[("VIREL_PUBLIC_URL", "ops.example.com")]), None).is_err());
    }

    #[test]
    fn worker_queues_are_checked() {
        let c = Config::from_sources(HashMap::new(), None).unwrap();
        assert_eq!(c.workers(&["ops".into(), "ops".into()]).unwrap().queues, vec![Queue::Ops]);
        assert_eq!(c.workers(&[]).unwrap().queues.len(), 3);
        assert!(c.workers(&["fast".into()]).is_err());
    }
}
