//! `/health`: no auth; 200 when the database answers, 503 when it does not.

use std::sync::Arc;

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::{Value, json};

use virel_domain::commands::{maintenance, notifications};

use crate::{ApiTags, AppState};

pub struct Api {
    pub state: Arc<AppState>,
}

#[derive(Object)]
pub struct Health {
    /// ok or degraded.
    pub status: String,
    pub checks: Value,
    pub uptime_secs: u64,
    pub version: String,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    #[oai(status = 200)]
    Ok(Json<Health>),
    /// The database is unreachable.
    #[oai(status = 503)]
    Down(Json<Health>),
}

#[OpenApi(tag = "ApiTags::System")]
impl Api {
    #[oai(path = "/health", method = "get")]
    async fn health(&self) -> HealthResponse {
        let db_ok = self.state.db.ping().await;
        let queue = match &self.state.queues {
            None => json!({"status": "not_connected", "detail": "this process runs without a queue connection"}),
            Some(q) => match q.live(virel_domain::jobs::Queue::Ops).await {
                Ok(_) => json!({"status": "ok", "backend": q.name()}),
                Err(e) => json!({"status": "down", "backend": q.name(), "detail": e.to_string()}),
            },
        };
        let scheduler = match maintenance::lease_holder(&self.state.db, "scheduler").await {
            Ok(Some((holder, until))) => json!({"status": "ok", "leader": holder, "lease_until": until}),
            Ok(None) => json!({"status": "no_leader", "detail": "no scheduler holds the lease"}),
            Err(e) => json!({"status": "unknown", "detail": e.to_string()}),
        };
        let degraded = !db_ok || queue["status"] == "down" || scheduler["status"] != "ok";
        let checks = json!({
            "database": {"status": if db_ok { "ok" } else { "down" }, "engine": self.state.db.engine()},
            "queue": queue,
            "scheduler": scheduler,
            "channels": notifications::channel_status(),
        });
        let h = Health {
            status: if degraded { "degraded" } else { "ok" }.into(),
            checks,
            uptime_secs: self.state.started.elapsed().as_secs(),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        if db_ok { HealthResponse::Ok(Json(h)) } else { HealthResponse::Down(Json(h)) }
    }
}
