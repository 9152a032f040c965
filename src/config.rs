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
use virel_workers::notify::ChannelsConfig;
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
    "VIREL_METRICS_BIND",
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
    "VIREL_CURRENCIES",
    "VIREL_ADMIN_EMAIL",
    "VIREL_ADMIN_PASSWORD",
    "VIREL_DEMO_DATA",
    "VIREL_TRAVEL_BUFFER_MINUTES",
    "VIREL_AVAILABILITY_WEEKS",
    "VIREL_AUTOMATION_CASCADE_BUDGET",
    "VIREL_TRUST_PROXY",
    "VIREL_PUBLIC_URL",
    "VIREL_LOG_FORMAT",
    "RUST_LOG",
    "HOSTNAME",
    "TELEGRAM_API_BASE",
    "TELEGRAM_DIVA_TOKEN",
    "TELEGRAM_KESHA_TOKEN",
    "SMTP_URL",
    "EMAIL_FROM",
    "RESEND_API_KEY",
    "RESEND_API_BASE",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_FROM",
    "TWILIO_MESSAGING_SERVICE_SID",
    "TWILIO_API_BASE",
    "VIREL_NOTIFY_FALLBACK",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
    "STRIPE_WEBHOOK_TOLERANCE_SECS",
    "VIREL_WEBHOOK_ALLOW_PRIVATE",
];

/// Settings that may only come from the environment (SMTP_URL may hold a password).
const SECRETS: &[&str] = &[
    "JWT_SECRET",
    "VIREL_ADMIN_PASSWORD",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "TELEGRAM_DIVA_TOKEN",
    "TELEGRAM_KESHA_TOKEN",
    "TWILIO_AUTH_TOKEN",
    "RESEND_API_KEY",
    "SMTP_URL",
    "VIREL_METRICS_TOKEN",
];

/// A secret setting: its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where the API listens when `VIREL_BIND` is not set: everywhere, or only on loopback while
/// the demo data (with its known passwords) is served.
pub const DEFAULT_BIND: &str = "0.0.0.0:3000";
pub const DEFAULT_BIND_DEMO: &str = "127.0.0.1:3000";

/// The shortest first-owner password accepted (`VIREL_ADMIN_PASSWORD`).
pub const MIN_ADMIN_PASSWORD_CHARS: usize = 12;

/// The first OWNER, created on a start that finds no user at all.
#[derive(Clone, Debug)]
pub struct FirstOwner {
    pub email: String,
    pub password: Secret,
}

/// Stripe (SPEC §9). Without a secret key payments are disabled; without a webhook secret the
/// webhook endpoint answers 503.
#[derive(Clone, Debug)]
pub struct StripeConfig {
    pub secret_key: Option<Secret>,
    pub webhook_secret: Option<Secret>,
    pub api_base: String,
    pub webhook_tolerance_secs: i64,
}

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
    /// `VIREL_BIND`, or the default for what is served (`bind_for`).
    pub bind: String,
    /// Whether `VIREL_BIND` was set: only then is the demo data served beyond loopback.
    pub bind_explicit: bool,
    /// `VIREL_ADMIN_EMAIL` / `VIREL_ADMIN_PASSWORD`.
    pub first_owner: Option<FirstOwner>,
    /// `VIREL_DEMO_DATA`: write the demo data (demo users with known passwords) on start.
    /// Default: on in the embedded mode when no first owner is configured, off otherwise.
    pub demo_data: bool,
    pub data_dir: PathBuf,
    pub jwt_secret: Option<String>,
    /// A bearer token that may read `/api/v1/system/metrics` only (a Prometheus scraper).
    pub metrics_token: Option<String>,
    /// Where a process without the API (`virel workers`, `virel scheduler`) serves its
    /// Prometheus metrics (`GET /metrics`, with the scrape token); none by default.
    pub metrics_bind: Option<String>,
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
    pub stripe: StripeConfig,
    /// The notification channels' providers and credentials.
    pub channels: ChannelsConfig,
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
        Ok(self.opt_flag(var)?.unwrap_or(false))
    }

    /// A flag, or None when it is not set at all.
    fn opt_flag(&self, var: &str) -> anyhow::Result<Option<bool>> {
        match self.get(var).map(|v| v.to_ascii_lowercase()) {
            None => Ok(None),
            Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(Some(true)),
            Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(Some(false)),
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
        let notify_fallback = match s.get("VIREL_NOTIFY_FALLBACK") {
            None => dd.notify_fallback.clone(),
            Some(v) => {
                let order: Vec<String> =
                    v.split(',').map(|c| c.trim().to_ascii_lowercase()).filter(|c| !c.is_empty()).collect();
                let known = ["telegram", "telegram_diva", "telegram_kesha", "sms", "email"];
                if let Some(bad) = order.iter().find(|c| !known.contains(&c.as_str())) {
                    bail!(
                        "{} must be a comma-separated list of {} (got {bad:?})",
                        s.where_("VIREL_NOTIFY_FALLBACK"),
                        known.join(", ")
                    );
                }
                order
            }
        };
        let currencies = match s.get("VIREL_CURRENCIES") {
            None => dd.currencies,
            Some(v) => virel_domain::validate::parse_currencies(&v).map_err(|e| {
                anyhow::anyhow!("{} must be ISO 4217 codes such as GBP,EUR,USD: {e}", s.where_("VIREL_CURRENCIES"))
            })?,
        };
        let first_owner = match (s.get("VIREL_ADMIN_EMAIL"), s.get("VIREL_ADMIN_PASSWORD")) {
            (None, None) => None,
            (Some(email), Some(password)) => {
                let (local, domain) = email.split_once('@').unwrap_or_default();
                if local.is_empty() || !domain.contains('.') || email.len() > 254 || email.contains(char::is_whitespace)
                {
                    bail!("{} must be an email address (got {email:?})", s.where_("VIREL_ADMIN_EMAIL"));
                }
                if password.chars().count() < MIN_ADMIN_PASSWORD_CHARS || password.len() > 256 {
                    bail!("VIREL_ADMIN_PASSWORD must be {MIN_ADMIN_PASSWORD_CHARS} to 256 characters");
                }
                Some(FirstOwner { email: email.to_lowercase(), password: Secret(password) })
            }
            (Some(_), None) => bail!("VIREL_ADMIN_EMAIL is set: set VIREL_ADMIN_PASSWORD in the environment too"),
            (None, Some(_)) => bail!("VIREL_ADMIN_PASSWORD is set: set VIREL_ADMIN_EMAIL too"),
        };
        let embedded = s.get("DATABASE_URL").is_none();
        let demo_data = match s.opt_flag("VIREL_DEMO_DATA")? {
            Some(true) if first_owner.is_some() => bail!(
                "{} is on, but a first owner is configured (VIREL_ADMIN_EMAIL): the demo data has demo users \
                 with known passwords; turn one of them off",
                s.where_("VIREL_DEMO_DATA")
            ),
            Some(on) => on,
            None => embedded && first_owner.is_none(),
        };
        let bind_explicit = s.get("VIREL_BIND").is_some();
        let bind =
            s.get("VIREL_BIND").unwrap_or_else(|| if demo_data { DEFAULT_BIND_DEMO } else { DEFAULT_BIND }.into());
        let domain = virel_domain::settings::Settings {
            currencies,
            timezone,
            max_open_items_per_operator: s
                .positive("VIREL_MAX_OPEN_ITEMS_PER_OPERATOR", dd.max_open_items_per_operator)?,
            travel_buffer_minutes: s.num("VIREL_TRAVEL_BUFFER_MINUTES", dd.travel_buffer_minutes)?,
            availability_weeks: s.positive("VIREL_AVAILABILITY_WEEKS", dd.availability_weeks)?,
            webhook_allow_private: s.flag("VIREL_WEBHOOK_ALLOW_PRIVATE")?,
            notify_fallback,
            cascade_budget_per_minute: s.positive("VIREL_AUTOMATION_CASCADE_BUDGET", dd.cascade_budget_per_minute)?,
        };
        if !(0..=24 * 60).contains(&domain.travel_buffer_minutes) {
            bail!("{} must be 0 to 1440 minutes", s.where_("VIREL_TRAVEL_BUFFER_MINUTES"));
        }
        if domain.availability_weeks > 104 {
            bail!("{} must be 1 to 104 weeks", s.where_("VIREL_AVAILABILITY_WEEKS"));
        }
        let base = |var: &str| -> anyhow::Result<Option<String>> {
            match s.get(var) {
                Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                    bail!("{} must start with http:// or https://", s.where_(var))
                }
                other => Ok(other.map(|u| u.trim_end_matches('/').to_string())),
            }
        };
        if let Some(u) = s.get("SMTP_URL")
            && !(u.starts_with("smtp://") || u.starts_with("smtps://"))
        {
            // Never repeat the value: it may hold a password.
            bail!("SMTP_URL must start with smtp:// or smtps://");
        }
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
        let stripe_key = s.get("STRIPE_SECRET_KEY");
        if let Some(k) = &stripe_key
            && !(k.starts_with("sk_") || k.starts_with("rk_"))
        {
            bail!("STRIPE_SECRET_KEY must be a secret or restricted key (sk_... or rk_...), not a publishable one");
        }
        let api_base = s
            .get("STRIPE_API_BASE")
            .unwrap_or_else(|| "https://api.stripe.com".into())
            .trim_end_matches('/')
            .to_string();
        if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
            bail!("{} must start with https:// or http:// (got {api_base:?})", s.where_("STRIPE_API_BASE"));
        }
        let stripe = StripeConfig {
            secret_key: stripe_key.map(Secret),
            webhook_secret: s.get("STRIPE_WEBHOOK_SECRET").map(Secret),
            api_base,
            webhook_tolerance_secs: s.positive("STRIPE_WEBHOOK_TOLERANCE_SECS", 300)?,
        };
        Ok(Config {
            database_url: s.get("DATABASE_URL"),
            redis_url: s.get("REDIS_URL"),
            queue_prefix: s.get("VIREL_QUEUE_PREFIX").unwrap_or_else(|| "virel".into()),
            bind,
            bind_explicit,
            first_owner,
            demo_data,
            data_dir: PathBuf::from(s.get("VIREL_DATA_DIR").unwrap_or_else(|| "./data".into())),
            jwt_secret: s.get("JWT_SECRET"),
            metrics_token: s.get("VIREL_METRICS_TOKEN"),
            metrics_bind: s.get("VIREL_METRICS_BIND"),
            db_max_connections: s.positive("VIREL_DB_MAX_CONNECTIONS", 10)?,
            concurrency,
            retry,
            liveness,
            domain,
            sla_sweep_secs: s.positive("VIREL_SLA_SWEEP_SECS", 30)?,
            trust_proxy: s.flag("VIREL_TRUST_PROXY")?,
            public_url: public_url.clone(),
            log_filter: s.get("RUST_LOG").unwrap_or_else(|| "info,sqlx=warn,poem=warn".into()),
            log_format,
            host: s.get("HOSTNAME").unwrap_or_else(|| "virel".into()),
            stripe,
            channels: ChannelsConfig {
                telegram_api_base: base("TELEGRAM_API_BASE")?,
                telegram_diva_token: s.get("TELEGRAM_DIVA_TOKEN"),
                telegram_kesha_token: s.get("TELEGRAM_KESHA_TOKEN"),
                smtp_url: s.get("SMTP_URL"),
                email_from: s.get("EMAIL_FROM"),
                resend_api_key: s.get("RESEND_API_KEY"),
                resend_api_base: base("RESEND_API_BASE")?,
                twilio_account_sid: s.get("TWILIO_ACCOUNT_SID"),
                twilio_auth_token: s.get("TWILIO_AUTH_TOKEN"),
                twilio_from: s.get("TWILIO_FROM"),
                twilio_messaging_service_sid: s.get("TWILIO_MESSAGING_SERVICE_SID"),
                twilio_api_base: base("TWILIO_API_BASE")?,
                twilio_status_callback: public_url.as_ref().map(|u| format!("{u}/api/v1/webhooks/twilio")),
            },
        })
    }

    /// Where the API listens: `VIREL_BIND` when set; otherwise loopback only while demo users
    /// with their known password can log in (`serving_demo`, found in the database: a data
    /// dir seeded earlier counts too), everywhere else.
    pub fn bind_for(&self, serving_demo: bool) -> String {
        match (self.bind_explicit, serving_demo) {
            (true, _) => self.bind.clone(),
            (false, true) => DEFAULT_BIND_DEMO.into(),
            (false, false) => DEFAULT_BIND.into(),
        }
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

    /// The notification channels' settings, for the workers' providers.
    pub fn channels(&self) -> ChannelsConfig {
        self.channels.clone()
    }

    /// What the API needs to verify Twilio's status callbacks (when SMS is configured).
    pub fn twilio_hook(&self) -> Option<virel_api::TwilioHook> {
        self.channels
            .twilio_auth_token
            .as_ref()
            .map(|t| virel_api::TwilioHook { auth_token: t.clone(), url: self.channels.twilio_status_callback.clone() })
    }

    /// Payments: the Stripe client when a secret key is set (else disabled), and the webhook
    /// secrets (one, or several separated by commas while one rolls).
    pub fn payments(&self) -> anyhow::Result<virel_domain::payments::Payments> {
        let provider = match &self.stripe.secret_key {
            Some(k) => Some(std::sync::Arc::new(virel_workers::providers::stripe::StripeClient::new(
                k.expose(),
                &self.stripe.api_base,
            )?) as std::sync::Arc<dyn virel_domain::payments::PaymentProvider>),
            None => None,
        };
        let webhook = self
            .stripe
            .webhook_secret
            .as_ref()
            .map(|w| virel_domain::payments::WebhookSecrets::new(w.expose(), self.stripe.webhook_tolerance_secs));
        Ok(virel_domain::payments::Payments { provider, webhook })
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
        assert_eq!(c.bind, "127.0.0.1:3000", "the embedded demo listens on loopback only");
        assert!(c.demo_data);
        assert!(!c.bind_explicit);
        assert_eq!(c.domain.currencies, ["GBP", "EUR", "USD"]);
        assert_eq!(c.concurrency[&Queue::Ops], 16);
        assert_eq!(c.retry.attempts_default, 5);
        assert_eq!(c.retry.attempts_notification, 3);
        assert_eq!(c.liveness.poll, Duration::from_millis(25));
        assert_eq!(c.domain.timezone, "Europe/London");
        assert_eq!(c.domain.travel_buffer_minutes, 30);
        assert_eq!(c.domain.availability_weeks, 8);
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
            (&[("VIREL_TRAVEL_BUFFER_MINUTES", "-5")], None, "VIREL_TRAVEL_BUFFER_MINUTES"),
            (&[("VIREL_TRAVEL_BUFFER_MINUTES", "2000")], None, "VIREL_TRAVEL_BUFFER_MINUTES"),
            (&[("VIREL_AVAILABILITY_WEEKS", "0")], None, "VIREL_AVAILABILITY_WEEKS"),
            (&[("VIREL_AVAILABILITY_WEEKS", "500")], None, "VIREL_AVAILABILITY_WEEKS"),
            (&[], Some("concurrency_ops = \"x\""), "concurrency_ops in virel.toml"),
            (&[], Some("jwt_secret = \"0123456789abcdef0123456789abcdef\""), "JWT_SECRET in the environment"),
            (&[], Some("stripe_secret_key = \"sk_test_x\""), "STRIPE_SECRET_KEY in the environment"),
            (&[], Some("stripe_webhook_secret = \"whsec_x\""), "STRIPE_WEBHOOK_SECRET in the environment"),
            (&[("STRIPE_SECRET_KEY", "pk_test_x")], None, "STRIPE_SECRET_KEY"),
            (&[("STRIPE_API_BASE", "api.stripe.com")], None, "STRIPE_API_BASE"),
            (&[("STRIPE_WEBHOOK_TOLERANCE_SECS", "0")], None, "STRIPE_WEBHOOK_TOLERANCE_SECS"),
            (&[("VIREL_WEBHOOK_ALLOW_PRIVATE", "perhaps")], None, "VIREL_WEBHOOK_ALLOW_PRIVATE"),
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
    fn payments_are_disabled_without_a_key_and_secrets_never_print() {
        let c = Config::from_sources(HashMap::new(), None).unwrap();
        assert!(!c.payments().unwrap().enabled());
        assert_eq!(c.stripe.api_base, "https://api.stripe.com");
        assert_eq!(c.stripe.webhook_tolerance_secs, 300);
        let c = Config::from_sources(
            env(&[
                ("STRIPE_SECRET_KEY", "sk_test_supersecret"),
                ("STRIPE_WEBHOOK_SECRET", "whsec_supersecret"),
                ("STRIPE_API_BASE", "http://127.0.0.1:9/"),
            ]),
            None,
        )
        .unwrap();
        let p = c.payments().unwrap();
        assert!(p.enabled() && p.webhook.is_some());
        assert_eq!(c.stripe.api_base, "http://127.0.0.1:9");
        let shown = format!("{c:?} {p:?}");
        assert!(!shown.contains("supersecret"), "{shown}");
    }

    #[test]
    fn channel_settings_are_read_and_secrets_stay_out_of_files() {
        let c = Config::from_sources(
            env(&[
                ("TELEGRAM_DIVA_TOKEN", "123:abc"),
                ("TELEGRAM_API_BASE", "http://127.0.0.1:9/"),
                ("VIREL_NOTIFY_FALLBACK", "sms, email"),
                ("VIREL_PUBLIC_URL", "https://ops.example.com"),
                ("TWILIO_AUTH_TOKEN", "tok"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(c.channels.telegram_diva_token.as_deref(), Some("123:abc"));
        assert_eq!(c.channels.telegram_api_base.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(c.domain.notify_fallback, vec!["sms".to_string(), "email".to_string()]);
        assert_eq!(c.twilio_hook().unwrap().url.as_deref(), Some("https://ops.example.com/api/v1/webhooks/twilio"));
        assert!(!format!("{:?}", c.channels).contains("123:abc"));
        for (file, needle) in [
            ("smtp_url = \"smtp://u:p@h\"", "SMTP_URL in the environment"),
            ("telegram_kesha_token = \"x\"", "TELEGRAM_KESHA_TOKEN in the environment"),
            ("notify_fallback = \"pigeon\"", "comma-separated"),
        ] {
            let err = Config::from_sources(HashMap::new(), Some(("virel.toml".into(), file))).unwrap_err();
            assert!(format!("{err:#}").contains(needle), "{file}: {err:#}");
        }
        let err = Config::from_sources(env(&[("SMTP_URL", "mail://user:hunter2@h")]), None).unwrap_err();
        assert!(!format!("{err:#}").contains("hunter2"));
    }

    #[test]
    fn the_first_owner_replaces_the_demo_data_and_its_loopback_bind() {
        let owner = [("VIREL_ADMIN_EMAIL", "Owner@Agency.example"), ("VIREL_ADMIN_PASSWORD", "a long secret pass")];
        let c = Config::from_sources(env(&owner), None).unwrap();
        assert!(!c.demo_data, "no demo users beside a configured owner");
        assert_eq!(c.bind, "0.0.0.0:3000");
        assert_eq!(c.first_owner.as_ref().unwrap().email, "owner@agency.example");
        assert!(!format!("{c:?}").contains("a long secret pass"), "the password is not in Debug");
        // Explicit choices win; PostgreSQL deployments get no demo data by default.
        let c = Config::from_sources(env(&[("VIREL_BIND", "0.0.0.0:8080")]), None).unwrap();
        assert!(c.demo_data && c.bind_explicit);
        assert_eq!(c.bind_for(true), "0.0.0.0:8080");
        let c = Config::from_sources(env(&[("DATABASE_URL", "postgres://x/y")]), None).unwrap();
        assert!(!c.demo_data);
        assert_eq!(c.bind_for(true), "127.0.0.1:3000", "demo users found in the database keep it on loopback");
        assert_eq!(c.bind_for(false), "0.0.0.0:3000");
        let c = Config::from_sources(env(&[("VIREL_DEMO_DATA", "0")]), None).unwrap();
        assert!(!c.demo_data);
        assert_eq!(c.bind, "0.0.0.0:3000");
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, &'a str);
        let cases: &[Case] = &[
            (&[("VIREL_ADMIN_EMAIL", "owner@agency.example")], None, "VIREL_ADMIN_PASSWORD"),
            (&[("VIREL_ADMIN_PASSWORD", "a long secret pass")], None, "VIREL_ADMIN_EMAIL"),
            (&[("VIREL_ADMIN_EMAIL", "owner@agency.example"), ("VIREL_ADMIN_PASSWORD", "short")], None, "12"),
            (&[("VIREL_ADMIN_EMAIL", "not-an-email"), ("VIREL_ADMIN_PASSWORD", "a long secret pass")], None, "email"),
            (
                &[
                    ("VIREL_ADMIN_EMAIL", "owner@agency.example"),
                    ("VIREL_ADMIN_PASSWORD", "a long secret pass"),
                    ("VIREL_DEMO_DATA", "1"),
                ],
                None,
                "VIREL_DEMO_DATA",
            ),
            (&[], Some("admin_password = \"a long secret pass\""), "VIREL_ADMIN_PASSWORD in the environment"),
            (&[("VIREL_CURRENCIES", "GBP,XXX")], None, "VIREL_CURRENCIES"),
        ];
        for (vars, file, needle) in cases {
            let err = Config::from_sources(env(vars), file.map(|f| ("virel.toml".into(), f))).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains(needle), "{vars:?} {file:?}: {msg}");
            assert!(!msg.contains("a long secret pass"), "{msg}");
        }
        let c = Config::from_sources(env(&[("VIREL_CURRENCIES", "gbp,chf")]), None).unwrap();
        assert_eq!(c.domain.currencies, ["GBP", "CHF"]);
    }

    #[test]
    fn worker_queues_are_checked() {
        let c = Config::from_sources(HashMap::new(), None).unwrap();
        assert_eq!(c.workers(&["ops".into(), "ops".into()]).unwrap().queues, vec![Queue::Ops]);
        assert_eq!(c.workers(&[]).unwrap().queues.len(), 3);
        assert!(c.workers(&["fast".into()]).is_err());
    }
}
