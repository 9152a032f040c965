//! The `virel` binary: command line and wiring only. The API, workers and scheduler live in
//! their crates; this file composes them.

mod config;

use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::Config;
use tokio::sync::watch;
use virel_domain::Db;

#[derive(Parser)]
#[command(name = "virel", version, about = "Virel: the operations platform of a booking agency")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// API, workers and scheduler in one process (the default).
    All,
    /// The HTTP API only.
    Api,
    /// Worker pools only.
    Workers {
        /// Comma-separated queues to consume: critical, ops, heavy (default: all three).
        #[arg(long, value_delimiter = ',')]
        queues: Option<Vec<String>>,
    },
    /// The scheduler only (leader-leased: a second copy stands by).
    Scheduler,
    /// Apply database migrations and exit.
    Migrate,
    /// Write the demo data (idempotent) and exit.
    Seed,
    /// Print the OpenAPI document and exit.
    Openapi,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = Config::from_env()?;
    init_logging(&cfg)?;
    match cli.command.unwrap_or(Command::All) {
        Command::Openapi => {
            // The document does not depend on the database: an in-memory SQLite pool suffices.
            let db = Db::connect("sqlite::memory:", 1).await?;
            let state = virel_api::AppState::new(db, b"openapi-document-only-no-real-key").shared();
            println!("{}", virel_api::openapi_json(state));
            Ok(())
        }
        Command::Migrate => {
            let db = connect(&cfg).await?;
            db.migrate().await?;
            virel_domain::seed::sync_policy(&db).await?;
            virel_domain::automation::seed_defaults(&db).await?;
            tracing::info!(engine = db.engine(), "migrations applied");
            first_owner(&cfg, &db).await?;
            Ok(())
        }
        Command::Seed => {
            let db = connect(&cfg).await?;
            if cfg.embedded() {
                db.migrate().await?;
            }
            let wrote = virel_domain::seed::seed_demo(&db).await?;
            tracing::info!(wrote, "demo data {}", if wrote { "written" } else { "already present" });
            Ok(())
        }
        Command::All => run(cfg, true, Some(vec![]), true).await,
        Command::Api => run(cfg, true, None, false).await,
        Command::Workers { queues } => run(cfg, false, Some(queues.unwrap_or_default()), false).await,
        Command::Scheduler => run(cfg, false, None, true).await,
    }
}

/// Log lines to stdout: plain text (coloured only on a terminal) or one JSON object a line.
fn init_logging(cfg: &Config) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log_filter)
        .map_err(|e| anyhow::anyhow!("RUST_LOG is not a valid log filter: {e}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match cfg.log_format {
        config::LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
        config::LogFormat::Text => builder.with_ansi(std::io::stdout().is_terminal()).init(),
    }
    Ok(())
}

async fn connect(cfg: &Config) -> anyhow::Result<Db> {
    let url = cfg.database_url()?;
    Db::connect_with(&url, cfg.db_max_connections, cfg.domain.clone())
        .await
        .with_context(|| "cannot connect to the database (DATABASE_URL)".to_string())
}

/// Runs the chosen roles until SIGTERM or Ctrl-C, then shuts them down gracefully.
async fn run(cfg: Config, api: bool, workers: Option<Vec<String>>, scheduler: bool) -> anyhow::Result<()> {
    // One Prometheus recorder per process: the API serves what every role records.
    let metrics = virel_api::metrics::install_recorder().map_err(anyhow::Error::msg)?;
    let db = connect(&cfg).await?;
    if cfg.embedded() {
        db.migrate().await?;
        virel_domain::automation::seed_defaults(&db).await?;
    } else {
        let pending = db.pending_migrations().await?;
        if pending > 0 {
            anyhow::bail!(
                "the database schema is missing or behind ({pending} migration(s) not applied): run `virel migrate` once before starting the processes"
            );
        }
    }
    first_owner(&cfg, &db).await?;
    if cfg.demo_data && virel_domain::seed::seed_demo(&db).await? {
        tracing::info!("demo data written (first start)");
    }
    // Demo accounts with their known password, whether just written or from an earlier start,
    // are served on loopback only unless VIREL_BIND says otherwise.
    let serving_demo = virel_domain::seed::demo_login_active(&db).await?;
    let bind = cfg.bind_for(serving_demo);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let wcfg = cfg.workers(workers.as_deref().unwrap_or_default())?;
    let payments = cfg.payments()?;
    if !payments.enabled() {
        tracing::info!("payments disabled: STRIPE_SECRET_KEY is not set");
    }
    // The API serves without the queues (writes wait in the outbox); workers and the
    // scheduler wait for them.
    let queues = if workers.is_none() && !scheduler {
        match open_queues(&cfg, &wcfg).await {
            Ok(q) => Some(q),
            Err(e) => {
                tracing::warn!(error = %e, "queues unreachable; serving without the queue dashboard");
                None
            }
        }
    } else {
        let mut stop = stop_rx.clone();
        loop {
            match open_queues(&cfg, &wcfg).await {
                Ok(q) => break Some(q),
                Err(e) => tracing::warn!(error = %e, "queues unreachable; retrying in 2 s"),
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                _ = shutdown_signal() => return Ok(()),
                _ = stop.changed() => return Ok(()),
            }
        }
    };
    // The channels' providers, built from the configuration (a channel without its
    // credentials is disabled, and says so in /health).
    let channels = virel_workers::notify::Channels::from_config(&cfg.channels())?;
    if let (Some(_), Some(queues)) = (&workers, &queues) {
        let rt = Arc::new(
            virel_workers::Runtime::new(db.clone(), queues.clone(), wcfg.retry.clone())
                .with_payments(payments.clone())
                .with_notifier(Arc::new(channels.clone())),
        );
        let stop = stop_rx.clone();
        tasks.spawn(async move { virel_workers::run(rt, wcfg, stop).await });
    }
    if let (true, Some(queues)) = (scheduler, &queues) {
        let (db, queues, stop, scfg) = (db.clone(), Arc::new(queues.clone()), stop_rx.clone(), cfg.scheduler());
        tasks.spawn(async move { virel_scheduler::run(db, queues, scfg, stop).await });
    }
    if let (false, Some(mbind)) = (api, cfg.metrics_bind.clone()) {
        // Workers and schedulers record job, relay and SLA metrics that no API process sees.
        let token = cfg.metrics_token.clone().filter(|t| !t.is_empty());
        if token.is_none() && !is_loopback(&mbind) {
            anyhow::bail!("VIREL_METRICS_BIND={mbind} is beyond this machine: set VIREL_METRICS_TOKEN too");
        }
        let endpoint = virel_api::metrics::scrape_endpoint(metrics.clone(), token);
        let listener = poem::listener::TcpListener::bind(mbind.clone());
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            tracing::info!("metrics on http://{mbind}/metrics");
            poem::Server::new(listener)
                .run_with_graceful_shutdown(
                    endpoint,
                    async move {
                        let _ = stop.wait_for(|s| *s).await;
                    },
                    Some(std::time::Duration::from_secs(5)),
                )
                .await
                .map_err(anyhow::Error::from)
        });
    }
    if api {
        let mut state = virel_api::AppState::new(db.clone(), &cfg.jwt_secret()?);
        state.live_redis = queues.as_ref().and_then(|q| q.live_channel());
        state.queues = queues.clone().map(|q| Arc::new(q) as Arc<dyn virel_domain::jobs::QueueBackend>);
        state.settings = cfg.api();
        state.payments = payments.clone();
        state.channels = channels.status();
        state.twilio = cfg.twilio_hook();
        state.metrics = Some(metrics.clone());
        state.metrics_token = cfg.metrics_token.clone();

        let state = state.shared();

        let listener = poem::listener::TcpListener::bind(bind.clone());
        let mut stop = stop_rx.clone();
        if serving_demo && cfg.bind_explicit && !is_loopback(&bind) {
            tracing::warn!(
                "the demo accounts (known passwords) are served on {bind}, beyond this machine: \
                 set VIREL_ADMIN_EMAIL / VIREL_ADMIN_PASSWORD for a real deployment"
            );
        }
        if !virel_domain::seed::any_user(&db).await? {
            tracing::warn!("no user exists: set VIREL_ADMIN_EMAIL and VIREL_ADMIN_PASSWORD to create the first owner");
        }
        tasks.spawn(async move {
            let port = bind.rsplit(':').next().unwrap_or("3000").to_string();
            tracing::info!("Virel API on {bind}: open http://localhost:{port}/docs");
            if serving_demo {
                tracing::info!("demo data: log in as admin@virel.com with the demo password from the README");
            }
            poem::Server::new(listener)
                .run_with_graceful_shutdown(
                    virel_api::app(state),
                    async move {
                        let _ = stop.wait_for(|s| *s).await;
                    },
                    Some(std::time::Duration::from_secs(10)),
                )
                .await
                .map_err(anyhow::Error::from)
        });
    }
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        Some(res) = tasks.join_next() => {
            // A role ended on its own: that is an error (a bind failure, say).
            let _ = stop_tx.send(true);
            res??;
        }
    }
    let _ = stop_tx.send(true);
    while let Some(res) = tasks.join_next().await {
        res??;
    }
    db.close().await;
    Ok(())
}

/// Creates the first OWNER from VIREL_ADMIN_EMAIL / VIREL_ADMIN_PASSWORD when no user exists.
async fn first_owner(cfg: &Config, db: &Db) -> anyhow::Result<()> {
    if let Some(o) = &cfg.first_owner
        && virel_domain::seed::ensure_owner(db, &o.email, &o.password.0).await?
    {
        tracing::info!(email = %o.email, "first owner created (VIREL_ADMIN_EMAIL)");
    }
    Ok(())
}

/// `127.0.0.1:3000`, `[::1]:3000`, `localhost:3000`.
fn is_loopback(bind: &str) -> bool {
    let host = bind.rsplit_once(':').map_or(bind, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The queues: Redis when `REDIS_URL` is set, else a SQLite file of their own in the data dir.
async fn open_queues(cfg: &Config, w: &virel_workers::WorkerConfig) -> anyhow::Result<virel_workers::Queues> {
    Ok(match &cfg.redis_url {
        Some(url) => virel_workers::Queues::redis(url, &cfg.queue_prefix, &w.liveness).await?,
        None => {
            std::fs::create_dir_all(&cfg.data_dir)?;
            virel_workers::Queues::sqlite(&cfg.data_dir.join("queue.db"), &w.liveness).await?
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
