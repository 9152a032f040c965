//! Availability and matching benchmark: 1,000 models with a month of rules (weekly windows,
//! blocks, extra windows) and a month of bookings each, then
//! - free windows of all 1,000 models over 31 days (`GET /availability` without a model),
//! - free windows of one model over 31 days,
//! - matching one inquiry against all of them (`POST /inquiries/{id}/match`),
//!
//! through the domain functions the API calls, on PostgreSQL and on SQLite.
//!
//! `cargo bench --bench availability -- [--engines postgres,sqlite] [--models 1000]
//! [--iterations 200] [--pg postgres://postgres@127.0.0.1:5432/postgres]`
//!
//! The databases it creates (a fresh PostgreSQL database, a temporary SQLite file) are removed
//! at the end. The report goes to stdout and to `target/bench-availability.json`.

use std::time::{Duration as StdDuration, Instant};

use anyhow::Context;
use chrono::{Duration, TimeZone, Utc};
use serde_json::json;
use sqlx::Connection;
use sqlx::types::Json;
use uuid::Uuid;
use virel_domain::availability::{self, Interval, Rules, WeeklyWindow};
use virel_domain::commands::inquiries::{self, NewInquiry};
use virel_domain::commands::{Money, clients};
use virel_domain::store::Pool;
use virel_domain::{Ctx, Db, matching};

struct Args {
    engines: Vec<String>,
    models: usize,
    iterations: usize,
    pg: String,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        engines: vec!["postgres".into(), "sqlite".into()],
        models: 1000,
        iterations: 200,
        pg: "postgres://postgres@127.0.0.1:5432/postgres".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--engines" => a.engines = v()?.split(',').map(|s| s.trim().to_string()).collect(),
            "--models" => a.models = v()?.parse()?,
            "--iterations" => a.iterations = v()?.parse()?,
            "--pg" => a.pg = v()?,
            "--bench" => {}
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

fn with_database(url: &str, name: &str) -> String {
    match url.rfind('/') {
        Some(i) if url[..i].contains('@') || url[..i].matches('/').count() >= 2 => format!("{}/{}", &url[..i], name),
        _ => format!("{url}/{name}"),
    }
}

#[derive(Debug)]
struct Stats {
    n: usize,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Stats {
    fn json(&self) -> serde_json::Value {
        json!({"n": self.n, "p50_ms": self.p50_ms, "p95_ms": self.p95_ms, "p99_ms": self.p99_ms, "max_ms": self.max_ms})
    }
}

fn stats(mut d: Vec<StdDuration>) -> Stats {
    d.sort();
    let ms = |x: StdDuration| (x.as_secs_f64() * 1e5).round() / 100.0;
    let at = |q: f64| ms(d[((d.len() as f64 * q).ceil() as usize).clamp(1, d.len()) - 1]);
    Stats { n: d.len(), p50_ms: at(0.50), p95_ms: at(0.95), p99_ms: at(0.99), max_ms: ms(*d.last().unwrap()) }
}

async fn time<F, Fut, T>(n: usize, mut f: F) -> anyhow::Result<Stats>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    // Warm-up, not counted.
    for _ in 0..n.div_ceil(10).min(5) {
        f().await?;
    }
    let mut d = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await?;
        d.push(t.elapsed());
    }
    Ok(stats(d))
}

/// Binds and runs one multi-row INSERT on either engine.
macro_rules! insert_rows {
    ($db:expr, $sql:expr, $rows:expr, |$q:ident, $r:ident| $bind:expr) => {{
        match $db.pool() {
            Pool::Pg(p) => {
                let mut $q = sqlx::query::<sqlx::Postgres>(sqlx::AssertSqlSafe($sql.clone()));
                for $r in $rows {
                    $q = $bind;
                }
                $q.execute(p).await?;
            }
            Pool::Lite(p) => {
                let mut $q = sqlx::query::<sqlx::Sqlite>(sqlx::AssertSqlSafe($sql.clone()));
                for $r in $rows {
                    $q = $bind;
                }
                $q.execute(p).await?;
            }
        }
    }};
}

fn values(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", (1..=cols).map(|c| format!("${}", r * cols + c)).collect::<Vec<_>>().join(", ")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Removes what a run created (its database or folder).
type Cleanup = Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>>;

async fn run(engine: &str, a: &Args) -> anyhow::Result<serde_json::Value> {
    let tag = Uuid::now_v7().simple().to_string();
    let (db, cleanup): (Db, Cleanup) = match engine {
        "postgres" => {
            let name = format!("virel_bench_{tag}");
            let mut c = sqlx::PgConnection::connect(&a.pg).await.context("PostgreSQL (--pg)")?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut c).await?;
            let db = Db::connect(&with_database(&a.pg, &name), 8).await?;
            let admin = a.pg.clone();
            (
                db,
                Box::new(move || {
                    Box::pin(async move {
                        if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .execute(&mut c)
                            .await;
                        }
                    })
                }),
            )
        }
        "sqlite" => {
            let dir = std::env::temp_dir().join(format!("virel-bench-avail-{tag}"));
            std::fs::create_dir_all(&dir)?;
            let db = Db::connect(&format!("sqlite://{}", dir.join("virel.db").display()), 8).await?;
            (
                db,
                Box::new(move || {
                    Box::pin(async move {
                        let _ = std::fs::remove_dir_all(dir);
                    })
                }),
            )
        }
        other => anyhow::bail!("unknown engine {other}"),
    };
    let out = measure(engine, &db, a).await;
    db.close().await;
    cleanup().await;
    out
}

async fn measure(engine: &str, db: &Db, a: &Args) -> anyhow::Result<serde_json::Value> {
    db.migrate().await?;
    virel_domain::seed::sync_policy(db).await?;
    let ctx = Ctx::system();
    let tz = chrono_tz::Europe::London;
    let today = Utc::now().with_timezone(&tz).date_naive();
    let day0 = today + Duration::days(1);
    let at = |d: i64, h: u32, m: u32| {
        tz.from_local_datetime(&(day0 + Duration::days(d)).and_hms_opt(h, m, 0).unwrap())
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    };
    let client = clients::create(
        db,
        &ctx,
        clients::NewClient { name: "Bench Client".into(), phone: Some("+447700900999".into()), ..Default::default() },
    )
    .await?;

    // Models (straight into the tables: the fixture, not what is measured).
    let t_setup = Instant::now();
    let now = virel_domain::now();
    let ids: Vec<Uuid> = (0..a.models).map(|_| virel_domain::new_id()).collect();
    let places = ["London W1", "London SW3", "London E1", "Manchester", "London NW1"];
    for (c, chunk) in ids.chunks(200).enumerate() {
        let sql = format!(
            "INSERT INTO models (id, name, status, base_location, rates, languages, attributes, created_at, updated_at) VALUES {}",
            values(chunk.len(), 9)
        );
        insert_rows!(db, sql, chunk.iter().enumerate(), |q, r| {
            let (i, id) = (c * 200 + r.0, *r.1);
            q.bind(id)
                .bind(format!("Model {i:04}"))
                .bind(if i % 20 == 19 { "inactive" } else { "active" })
                .bind(places[i % places.len()])
                .bind(Json(
                    json!([{"duration_minutes": 60, "amount": 20000 + (i as i64 % 10) * 2500, "currency": "GBP"}]),
                ))
                .bind(Json(if i % 3 == 0 { json!(["en", "ru"]) } else { json!(["en"]) }))
                .bind(Json(json!({"height_cm": 160 + i % 20})))
                .bind(now)
                .bind(now)
        });
        let sql = format!(
            "INSERT INTO model_stats (model_id, bookings_count, completed_count) VALUES {}",
            values(chunk.len(), 3)
        );
        insert_rows!(db, sql, chunk.iter().enumerate(), |q, r| {
            let i = (c * 200 + r.0) as i64;
            q.bind(*r.1).bind(10 + i % 7).bind(10 + i % 7 - i % 3)
        });
    }
    // Rules through the domain command (which expands the slots): six days a week, eight
    // hours starting between 10:00 and 19:00 (the later ones cross midnight), four blocks and
    // two extra windows in the month.
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let t_rules = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        let h = 10 + (i % 10) as u32;
        let weekly = (0..7)
            .filter(|d| (d + i) % 7 != 0)
            .map(|d| WeeklyWindow {
                day: days[d].into(),
                start: format!("{h:02}:00"),
                end: format!("{:02}:00", (h + 8) % 24),
            })
            .collect();
        let blocks = (0..4)
            .map(|k| Interval::new(at(k * 7 + (i % 7) as i64, h, 0), at(k * 7 + (i % 7) as i64, h + 3, 0)))
            .collect();
        let extra = (0..2).map(|k| Interval::new(at(k * 14 + 3, 6, 0), at(k * 14 + 3, 9, 0))).collect();
        availability::put_rules(
            db,
            &ctx,
            *id,
            Rules { time_zone: "Europe/London".into(), weekly, blocks, extra },
            None,
        )
        .await?;
    }
    let rules_secs = t_rules.elapsed().as_secs_f64();
    // A month of bookings each: one every other day, 2 hours from an hour after the start.
    let statuses = ["pending", "confirmed", "deposit_required", "completed", "cancelled"];
    let mut rows = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let h = 11 + (i % 10) as u32;
        for d in (0..31).step_by(2) {
            let start = at(d, h % 24, 0);
            rows.push((*id, start, start + Duration::hours(2), statuses[(i + d as usize) % statuses.len()]));
        }
    }
    for chunk in rows.chunks(500) {
        let sql = format!(
            "INSERT INTO bookings (id, client_id, model_id, start_at, end_at, location, price_amount, price_currency,
                 deposit_amount, deposit_currency, status, created_at, updated_at) VALUES {}",
            values(chunk.len(), 13)
        );
        insert_rows!(db, sql, chunk.iter(), |q, r| {
            q.bind(virel_domain::new_id())
                .bind(client.id)
                .bind(r.0)
                .bind(r.1)
                .bind(r.2)
                .bind("London W1")
                .bind(30000i64)
                .bind("GBP")
                .bind(5000i64)
                .bind("GBP")
                .bind(r.3)
                .bind(now)
                .bind(now)
        });
    }
    let setup_secs = t_setup.elapsed().as_secs_f64();
    if let Pool::Pg(p) = db.pool() {
        sqlx::query("ANALYZE").execute(p).await?;
    }
    let slots: (i64,) = match db.pool() {
        Pool::Pg(p) => sqlx::query_as("SELECT COUNT(*) FROM availability_slots").fetch_one(p).await?,
        Pool::Lite(p) => sqlx::query_as("SELECT COUNT(*) FROM availability_slots").fetch_one(p).await?,
    };

    let (from, to) = (at(0, 0, 0), at(31, 0, 0));
    let all = time(a.iterations.div_ceil(10).max(5), || async {
        let w = availability::free_windows(db, &ctx, from, to, None).await?;
        anyhow::ensure!(w.len() >= a.models * 9 / 10, "models listed");
        Ok(w.len())
    })
    .await?;
    let one_id = ids[1];
    let one =
        time(a.iterations, || async { Ok(availability::free_windows(db, &ctx, from, to, Some(one_id)).await?.len()) })
            .await?;
    let inquiry = inquiries::create(
        db,
        &ctx,
        NewInquiry {
            source: "phone".into(),
            client_id: Some(client.id),
            requested_start: Some(at(15, 20, 0)),
            duration_minutes: Some(120),
            location: Some("London W1".into()),
            budget: Some(Money { amount: 50_000, currency: "GBP".into() }),
            preferences: Some(json!({"languages": ["ru"]})),
            model_id: Some(ids[3]),
            ..Default::default()
        },
    )
    .await?;
    let mut last = (0, 0);
    let m = time(a.iterations, || async {
        let r = matching::match_inquiry(db, &ctx, inquiry.id).await?;
        Ok((r.candidates.len(), r.excluded.len()))
    })
    .await?;
    if let Ok(r) = matching::match_inquiry(db, &ctx, inquiry.id).await {
        last = (r.candidates.len(), r.excluded.len());
    }
    let report = json!({
        "engine": engine, "models": a.models, "days": 31, "slots": slots.0, "bookings": rows.len(),
        "setup_secs": (setup_secs * 10.0).round() / 10.0, "rules_put_secs": (rules_secs * 10.0).round() / 10.0,
        "availability_all_models_31d": all.json(), "availability_one_model_31d": one.json(),
        "match_one_inquiry": m.json(),
        "match_candidates": last.0, "match_excluded": last.1,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(report)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let mut reports = Vec::new();
    for e in &a.engines {
        reports.push(run(e, &a).await.with_context(|| format!("engine {e}"))?);
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-availability.json");
    let _ = std::fs::create_dir_all(path.parent().unwrap());
    let _ = std::fs::write(&path, serde_json::to_string_pretty(&reports)?);
    Ok(())
}
