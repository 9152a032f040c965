//! `/action-center`: the operator's list, its quick actions, and the live feed (`/ws`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use poem::Request;
use poem::web::websocket::{Message, WebSocket};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;
use uuid::Uuid;
use virel_domain::action_center::{self, Filter};

use crate::auth::{Auth, ctx_from_token};
use crate::error::{ApiError, ApiResult};
use crate::{ApiTags, AppState};

pub struct Api {
    pub state: Arc<AppState>,
}

#[derive(Object, Clone)]
pub struct SubjectOut {
    #[oai(rename = "type")]
    pub kind: String,
    pub id: Uuid,
    /// A short label (client and model names, a title).
    pub label: String,
}

#[derive(Object, Clone)]
pub struct ItemOut {
    /// task or exception.
    pub kind: String,
    pub id: Uuid,
    #[oai(rename = "type")]
    pub item_type: String,
    pub title: String,
    /// critical, high, normal or low (an exception's severity mapped onto priorities).
    pub priority: String,
    pub severity: Option<String>,
    pub status: String,
    pub due_at: Option<DateTime<Utc>>,
    /// breached, at_risk (less than 20% of its window left, by default) or ok.
    pub sla_state: String,
    /// The SLA clock is stopped while the subject waits on the client.
    pub sla_paused: bool,
    pub escalation_level: i64,
    pub assignee_id: Option<Uuid>,
    pub assignee_name: Option<String>,
    pub subject: Option<SubjectOut>,
    pub created_at: DateTime<Utc>,
    pub version: i64,
    pub open: bool,
}

impl From<action_center::Item> for ItemOut {
    fn from(i: action_center::Item) -> ItemOut {
        ItemOut {
            kind: i.kind,
            id: i.id,
            item_type: i.item_type,
            title: i.title,
            priority: i.priority,
            severity: i.severity,
            status: i.status,
            due_at: i.due_at,
            sla_state: i.sla_state,
            sla_paused: i.sla_paused,
            escalation_level: i.escalation_level,
            assignee_id: i.assignee_id,
            assignee_name: i.assignee_name,
            subject: i.subject.map(|s| SubjectOut { kind: s.kind, id: s.id, label: s.label }),
            created_at: i.created_at,
            version: i.version,
            open: i.open,
        }
    }
}

#[derive(Object)]
pub struct CountsOut {
    pub breached: u64,
    pub at_risk: u64,
    pub ok: u64,
    pub total: u64,
}

#[derive(Object)]
pub struct ListOut {
    /// Breached first, then the soonest deadline, then priority, then the oldest.
    pub items: Vec<ItemOut>,
    pub counts: CountsOut,
}

#[derive(Object)]
pub struct ItemNoteIn {
    pub text: String,
}

#[derive(Object)]
pub struct ItemAssignIn {
    /// A user id, `round_robin` (the least-loaded operator on duty), or null to unassign.
    pub assignee_id: Option<String>,
}

#[derive(Object)]
pub struct ContactIn {
    /// A message template (default `contact_client`).
    pub template: Option<String>,
}

#[derive(Object)]
pub struct ContactOut {
    pub item: ItemOut,
    pub notification_id: Uuid,
    pub channel: String,
    /// queued, then sent or failed (a channel without credentials is disabled and fails).
    pub notification_status: String,
}

fn kind_of(k: &str) -> ApiResult<&'static str> {
    match k {
        "task" => Ok("task"),
        "exception" => Ok("exception"),
        _ => Err(ApiError::bad_request("kind must be task or exception")),
    }
}

#[OpenApi(tag = "ApiTags::ActionCenter")]
impl Api {
    /// Open tasks and exceptions the caller may see, with their SLA state, sorted breached
    /// first, then by deadline, priority and age; with counts per state. OPERATORs see their
    /// own and unassigned items only.
    #[oai(path = "/action-center", method = "get")]
    async fn list(
        &self,
        auth: Auth,
        mine: Query<Option<bool>>,
        unassigned: Query<Option<bool>>,
        kind: Query<Option<String>>,
        #[oai(name = "type")] item_type: Query<Option<String>>,
        priority: Query<Option<String>>,
    ) -> ApiResult<Json<ListOut>> {
        let f = Filter {
            mine: mine.0.unwrap_or(false),
            unassigned: unassigned.0.unwrap_or(false),
            kind: kind.0,
            item_type: item_type.0,
            priority: priority.0,
        };
        let l = action_center::list(&self.state.db, &auth.0, &f).await?;
        let c = &l.counts;
        let counts = CountsOut {
            breached: c.breached as u64,
            at_risk: c.at_risk as u64,
            ok: c.ok as u64,
            total: c.total as u64,
        };
        Ok(Json(ListOut { items: l.items.into_iter().map(Into::into).collect(), counts }))
    }

    /// Confirm: completes a confirm_booking task and moves its booking one step forward.
    #[oai(path = "/action-center/:kind/:id/confirm", method = "post")]
    async fn confirm(&self, auth: Auth, kind: Path<String>, id: Path<Uuid>) -> ApiResult<Json<ItemOut>> {
        Ok(Json(action_center::confirm(&self.state.db, &auth.0, kind_of(&kind.0)?, id.0).await?.into()))
    }

    /// Contact: a templated message to the client on its preferred channel, logged as a note.
    #[oai(path = "/action-center/:kind/:id/contact", method = "post")]
    async fn contact(
        &self,
        auth: Auth,
        kind: Path<String>,
        id: Path<Uuid>,
        body: Json<ContactIn>,
    ) -> ApiResult<Json<ContactOut>> {
        let (item, n) =
            action_center::contact(&self.state.db, &auth.0, kind_of(&kind.0)?, id.0, body.0.template).await?;
        Ok(Json(ContactOut {
            item: item.into(),
            notification_id: n.id,
            channel: n.channel,
            notification_status: n.status,
        }))
    }

    /// Note: free text on the item.
    #[oai(path = "/action-center/:kind/:id/note", method = "post")]
    async fn note(
        &self,
        auth: Auth,
        kind: Path<String>,
        id: Path<Uuid>,
        body: Json<ItemNoteIn>,
    ) -> ApiResult<Json<ItemOut>> {
        Ok(Json(action_center::note(&self.state.db, &auth.0, kind_of(&kind.0)?, id.0, body.0.text).await?.into()))
    }

    /// Assign: to a user, to `round_robin`, or to nobody.
    #[oai(path = "/action-center/:kind/:id/assign", method = "post")]
    async fn assign(
        &self,
        auth: Auth,
        kind: Path<String>,
        id: Path<Uuid>,
        body: Json<ItemAssignIn>,
    ) -> ApiResult<Json<ItemOut>> {
        Ok(Json(
            action_center::assign(&self.state.db, &auth.0, kind_of(&kind.0)?, id.0, body.0.assignee_id).await?.into(),
        ))
    }

    /// Acknowledge: someone has it; a task's escalation ladder stops.
    #[oai(path = "/action-center/:kind/:id/acknowledge", method = "post")]
    async fn acknowledge(&self, auth: Auth, kind: Path<String>, id: Path<Uuid>) -> ApiResult<Json<ItemOut>> {
        Ok(Json(action_center::acknowledge(&self.state.db, &auth.0, kind_of(&kind.0)?, id.0).await?.into()))
    }
}

#[derive(serde::Deserialize)]
pub struct WsQuery {
    token: Option<String>,
}

/// The live feed (WebSocket). Authenticate with the `Authorization` header, the session
/// cookie, `?token=`, or a first message `{"type": "auth", "token": "..."}`. The server
/// sends `{"type": "snapshot", "items": [...], "counts": {...}}`, then
/// `{"type": "item.upserted", "item": {...}}` and `{"type": "item.removed", "item": {"kind", "id"}}`
/// for the items the user may see. A reconnecting client gets a fresh snapshot.
#[poem::handler]
pub async fn ws(
    req: &Request,
    ws: WebSocket,
    state: poem::web::Data<&Arc<AppState>>,
    token: poem::web::Query<WsQuery>,
) -> poem::Response {
    use poem::IntoResponse;
    let state: Arc<AppState> = state.0.clone();
    let header_token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(String::from);
    let early = match header_token.or(token.0.token) {
        Some(t) => match ctx_from_token(&state, req, &t).await {
            Some(ctx) => Some(ctx),
            None => return ApiError::unauthorized("invalid or expired token").into_response_error(),
        },
        None => None,
    };
    let state = state.clone();
    let (ip, request_id) = crate::request_meta(req);
    ws.on_upgrade(move |socket| async move {
        let (mut sink, mut stream) = socket.split();
        let ctx = match early {
            Some(c) => c,
            None => {
                // The first message must authenticate, within 10 seconds.
                let first = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next()).await;
                let token = match first {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        serde_json::from_str::<Value>(&t).ok().and_then(|v| v["token"].as_str().map(String::from))
                    }
                    _ => None,
                };
                let ctx = match token {
                    Some(t) => auth_token(&state, &t, ip, request_id).await,
                    None => None,
                };
                match ctx {
                    Some(c) => c,
                    None => {
                        let _ = sink.send(Message::Text(r#"{"type":"error","error":{"code":"unauthorized","message":"a valid token is required"}}"#.into())).await;
                        let _ = sink.close().await;
                        return;
                    }
                }
            }
        };
        let (id, mut rx) = state.hub.join(&state.db, ctx).await;
        let mut ping = tokio::time::interval(std::time::Duration::from_secs(25));
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(m) => if sink.send(Message::Text(m)).await.is_err() { break },
                    None => break,
                },
                incoming = stream.next() => match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    _ => {}
                },
                _ = ping.tick() => if sink.send(Message::Ping(Vec::new())).await.is_err() { break },
            }
        }
        state.hub.leave(id);
    })
    .into_response()
}

async fn auth_token(
    state: &AppState,
    token: &str,
    ip: Option<String>,
    request_id: Option<String>,
) -> Option<virel_domain::Ctx> {
    let claims = state.jwt.verify(token)?;
    let user = virel_domain::commands::users::get_self(&state.db, claims.sub).await.ok()?;
    if !user.active {
        return None;
    }
    let role = virel_domain::policy::Role::parse(&user.role)?;
    Some(virel_domain::Ctx::user(user.id, role).with_request(ip, request_id))
}

impl ApiError {
    /// This error as a finished response (for handlers that answer with a raw response).
    pub fn into_response_error(self) -> poem::Response {
        poem::Error::from(self).into_response()
    }
}
