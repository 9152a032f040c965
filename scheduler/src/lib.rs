//! The scheduler: turns time into work. Each schedule is a cron expression (the `cron`
//! crate's six-field form) and a function that only enqueues or runs one domain command.
//! One process at a time leads (a lease in the database); every tick is also claimed in the
//! database, so even two leaders for a moment cannot fire one tick twice.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use cron::Schedule;
use tokio::sync::watch;
use virel_domain::automation;
use virel_domain::commands::maintenance;
use virel_domain::jobs::availability::AvailabilityExpand;
use virel_domain::jobs::{Job as QueuedJob, QueueBackend, kinds};
use virel_domain::{Db, DomainResult};

pub const LEASE: &str = "scheduler";
const LEASE_TTL_SECS: i64 = 15;

/// A named cron schedule (six fields, seconds first).
pub struct Job {
    pub name: &'static str,
    pub cron: String,
}

/// The scheduler's settings.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// How often the SLA sweep and the booking clock run, in seconds.
    pub sweep_secs: u32,
    /// This machine's name, part of the lease holder's name.
    pub host: String,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { sweep_secs: 30, host: "virel".into() }
    }
}

/// The schedules; the SLA sweep and the booking clock run every `secs` seconds.
pub fn jobs(secs: u32) -> Vec<Job> {
    let secs = secs.max(1);
    let every = if secs < 60 && 60 % secs == 0 { format!("*/{secs} * * * * *") } else { "0 * * * * *".to_string() };
    vec![
        Job { name: "retention", cron: "0 */10 * * * *".into() },
        Job { name: "delayed_actions", cron: "*/5 * * * * *".into() },
        Job { name: "availability", cron: "0 */10 * * * *".into() },
        Job { name: "sla_sweep", cron: every.clone() },
        Job { name: "booking_clock", cron: every },
        // Stripe events the webhook never delivered (a no-op while payments are disabled).
        Job { name: "stripe_reconcile", cron: "30 */10 * * * *".into() },
    ]
}

/// One tick's work. Only enqueueing: the workers do the rest.
async fn run_job(db: &Db, queues: &dyn QueueBackend, name: &str) -> DomainResult<()> {
    match name {
        "retention" => queues.push(QueuedJob::new(&kinds::Retention {}), None).await?,
        "sla_sweep" => queues.push(QueuedJob::new(&kinds::SlaSweep {}), None).await?,
        "booking_clock" => queues.push(QueuedJob::new(&kinds::BookingClock {}), None).await?,
        "stripe_reconcile" => {
            queues.push(QueuedJob::new(&virel_domain::jobs::payments::StripeReconcile {}), None).await?
        }
        "availability" => queues.push(QueuedJob::new(&AvailabilityExpand::default()), None).await?,
        "delayed_actions" => {
            // Claimed (scheduled → queued) before the push; a claim whose push never ran is
            // put back after a while, so a crash between the two loses nothing.
            automation::requeue_stale_claims(db, Duration::minutes(5)).await?;
            for id in automation::claim_due_actions(db, 500).await? {
                queues.push(QueuedJob::new(&kinds::DelayedAction { execution_id: id }), None).await?;
            }
        }
        other => tracing::warn!(job = other, "unknown schedule"),
    }
    Ok(())
}

/// Runs until `stop` turns true. Standby while another process holds the lease.
pub async fn run(
    db: Db,
    queues: Arc<dyn QueueBackend>,
    cfg: SchedulerConfig,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let holder = format!("{}:{}", cfg.host, uuid::Uuid::now_v7());
    let jobs = jobs(cfg.sweep_secs);
    let schedules: Vec<(&Job, Schedule)> = jobs
        .iter()
        .map(|j| Schedule::from_str(&j.cron).map(|s| (j, s)).map_err(|e| anyhow::anyhow!("bad cron {}: {e}", j.cron)))
        .collect::<Result<_, _>>()?;
    let mut next: Vec<Option<DateTime<Utc>>> = schedules.iter().map(|(_, s)| s.upcoming(Utc).next()).collect();
    let mut leading = false;
    tracing::info!(holder = %holder, "scheduler started");
    loop {
        match maintenance::acquire_lease(&db, LEASE, &holder, Duration::seconds(LEASE_TTL_SECS)).await {
            Ok(now_leading) => {
                if now_leading != leading {
                    tracing::info!(leading = now_leading, "scheduler lease");
                }
                leading = now_leading;
            }
            Err(e) => {
                tracing::warn!(error = %e, "scheduler cannot reach the database; standing by");
                leading = false;
            }
        }
        let now = Utc::now();
        tracing::trace!(?next, leading, "scheduler loop");
        for (i, (job, schedule)) in schedules.iter().enumerate() {
            let Some(due) = next[i] else { continue };
            if due > now {
                continue;
            }
            next[i] = schedule.after(&now).next();
            if !leading {
                continue;
            }
            tracing::debug!(job = job.name, %due, "tick");
            match maintenance::claim_tick(&db, job.name, due, &holder).await {
                Ok(true) => {
                    if let Err(e) = run_job(&db, queues.as_ref(), job.name).await {
                        tracing::error!(job = job.name, error = %e, "scheduled job failed");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(job = job.name, error = %e, "cannot claim tick"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(StdDuration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if leading {
        let _ = maintenance::release_lease(&db, LEASE, &holder).await;
    }
    tracing::info!("scheduler stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schedule_parses_and_fires_soon_enough() {
        for j in jobs(30) {
            let s = Schedule::from_str(&j.cron).unwrap();
            let next = s.upcoming(Utc).next().unwrap();
            assert!(next > Utc::now() && next < Utc::now() + Duration::minutes(11), "{} -> {next}", j.name);
        }
    }
}
