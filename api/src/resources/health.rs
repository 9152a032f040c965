//! `/health`: no auth; 200 when the database answers, 503 when it does not.

use std::sync::Arc;

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::{Value, json};

use virel_domain::commands::maintenance;

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
    /// Unauthenticated: each check is only `up`, `down` or `disabled` (with the engine or
    /// backend kind); never host names, addresses or backend error text, which go to the log.
    #[oai(path = "/health", method = "get", operation_id = "getHealth")]
    async fn health(&self) -> HealthResponse {
        let db_ok = self.state.db.ping().await;
        let queue = match &self.state.queues {
            None => json!({"status": "disabled"}),
            Some(q) => match q.live(virel_domain::jobs::Queue::Ops).await {
                Ok(_) => json!({"status": "up", "backend": q.name()}),
                Err(e) => {
                    tracing::warn!(error = %e, "health: the queue is down");
                    json!({"status": "down", "backend": q.name()})
                }
            },
        };
        let scheduler = match maintenance::lease_holder(&self.state.db, "scheduler").await {
            Ok(Some(_)) => "up",
            Ok(None) => "down",
            Err(e) => {
                tracing::warn!(error = %e, "health: cannot read the scheduler lease");
                "down"
            }
        };
        // Each channel `up` (with its provider) or `disabled` (with the settings that enable
        // it): names of settings, never their values.
        let channels: serde_json::Map<String, Value> = self
            .state
            .channels
            .iter()
            .map(|c| (c.channel.clone(), serde_json::to_value(c).unwrap_or(Value::Null)))
            .collect();
        let degraded = !db_ok || queue["status"] == "down" || scheduler != "up";
        let checks = json!({
            "database": {"status": if db_ok { "up" } else { "down" }, "engine": self.state.db.engine()},
            "queue": queue,
            "scheduler": {"status": scheduler},
            "channels": channels,
            // Configured or not; Stripe itself is not called from an unauthenticated probe.
            "payments": {"status": if self.state.payments.enabled() { "up" } else { "disabled" }},
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
