//! Jobs the queue backend gives up on by itself (apalis-redis' dead set, apalis-sqlite's
//! killed rows) still end in `dead_jobs`, visible and retryable, with an exception: this is
//! where a job lands when Virel could not record its outcome while the backend retried.

use redis::AsyncCommands;
use serde_json::json;
use virel_domain::jobs::{Queue, kinds::Custom};
use virel_workers::{Job, Queues};

use crate::both_engines_full;
use crate::harness::{TestApp, WorkerOptions};

/// Puts `job` where the backend keeps the jobs it gave up on, as the backend itself would.
async fn bury(queues: &Queues, job: &Job) {
    let bytes = serde_json::to_vec(job).unwrap();
    let id = job.id.to_string();
    match queues {
        Queues::Redis { conn, storages, .. } => {
            let cfg = storages[&Queue::Ops].get_config();
            let mut c = conn.clone();
            let _: i64 = c.hset(cfg.job_data_hash(), &id, bytes).await.unwrap();
            let meta = format!("{}:{id}", cfg.job_meta_hash());
            let _: () = redis::cmd("HSET")
                .arg(&meta)
                .arg("result")
                .arg("\"the provider timed out\"")
                .arg("attempts")
                .arg(25)
                .arg("status")
                .arg("Failed")
                .query_async(&mut c)
                .await
                .unwrap();
            let _: i64 = c.sadd(cfg.dead_jobs_set(), &id).await.unwrap();
        }
        Queues::Sqlite { pool, .. } => {
            sqlx::query(
                "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, last_result)
                 VALUES ($1, $2, 'ops', 'Failed', 25, 25, '\"the provider timed out\"')",
            )
            .bind(bytes)
            .bind(&id)
            .execute(pool)
            .await
            .unwrap();
        }
    }
}

both_engines_full!(
    a_job_the_backend_gave_up_on_is_dead_visible_and_raises_an_exception,
    WorkerOptions { scheduler: false, ..Default::default() },
    async |app: TestApp| {
        let admin = app.login("admin@virel.com").await;
        let job = Job::new(&Custom { name: "never_recorded".into(), payload: json!({"n": 1}) });
        bury(app.queues.as_ref().unwrap(), &job).await;
        let dead = app
            .eventually(30, || async {
                let (_, q) = app.get(&admin, "/system/queue").await;
                q["dead_jobs"].as_array().and_then(|d| d.first().cloned())
            })
            .await
            .expect("the buried job shows among the dead jobs");
        assert_eq!(dead["kind"], "never_recorded", "{dead}");
        assert_eq!(dead["queue"], "ops");
        assert!(dead["error"].as_str().unwrap().contains("the provider timed out"), "{dead}");
        assert_eq!(dead["job"]["id"], job.id.to_string());
        assert_eq!(app.count("SELECT COUNT(*) AS n FROM exceptions WHERE type = 'job_failed'").await, 1);
        // Recorded once: later sweeps find nothing more.
        tokio::time::sleep(std::time::Duration::from_secs(11)).await;
        assert_eq!(app.count("SELECT COUNT(*) AS n FROM dead_jobs").await, 1);
    }
);
