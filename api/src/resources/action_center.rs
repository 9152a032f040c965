//! `/action-center`: the operator's list, its quick actions, and the live feed (`/ws`).

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use poem::Request;
use poem::web::websocket::{CloseCode, Message, WebSocket};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;
use uuid::Uuid;
use virel_domain::action_center::{self, Filter};
use virel_domain::policy::Permission;

use crate::auth::{self, Auth};
use crate::dto::{CountsOut, ItemOut};
use crate::error::{ApiError, ApiResult};
use crate::{ApiTags, AppState};

pub struct Api {
    pub state: Arc<AppState>,
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
    #[oai(path = "/action-center", method = "get", operation_id = "listActionCenterItems")]
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
        let counts = CountsOut::from(&l.counts);
        Ok(Json(ListOut { items: l.items.into_iter().map(Into::into).collect(), counts }))
    }

    /// Confirm: completes a confirm_booking task and moves its booking one step forward.
    #[oai(path = "/action-center/:kind/:id/confirm", method = "post", operation_id = "confirmActionCenterItem")]
    async fn confirm(&self, auth: Auth, kind: Path<String>, id: Path<Uuid>) -> ApiResult<Json<ItemOut>> {
        Ok(Json(action_center::confirm(&self.state.db, &auth.0, kind_of(&kind.0)?, id.0).await?.into()))
    }

    /// Contact: a templated message to the client on its preferred channel, logged as a note.
    #[oai(path = "/action-center/:kind/:id/contact", method = "post", operation_id = "contactActionCenterItem")]
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
    #[oai(path = "/action-center/:kind/:id/note", method = "post", operation_id = "noteActionCenterItem")]
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
    #[oai(path = "/action-center/:kind/:id/assign", method = "post", operation_id = "assignActionCenterItem")]
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
    #[oai(path = "/action-center/:kind/:id/acknowledge", method = "post", operation_id = "acknowledgeActionCenterItem")]
    async fn acknowledge(&self, auth: Auth, kind: Path<String>, id: Path<Uuid>) -> ApiResult<Json<ItemOut>> {
        Ok(Json(action_center::acknowledge(&self.state.db, &auth.0, kind_of(&kind.0)?, id.0).await?.into()))
    }
}

/// The live feed (WebSocket). Authenticate with the `Authorization` header, the session
/// cookie (same origin only), `?token=`, or a first message `{"type": "auth", "token": "..."}`.
/// An upgrade whose `Origin` names another site is refused (403), and so is a caller without
/// `action_center:read` (authenticating by first message: an error message with the code
/// `forbidden`, then the socket closes); the refusal is audited. The server sends
/// `{"type": "snapshot", "items": [...], "counts": {...}}`, then
/// `{"type": "item.upserted", "item": {...}}` (the same item shape as `GET /action-center`) and
/// `{"type": "item.removed", "item": {"kind", "id"}}` for the items the user may see. A
/// reconnecting client gets a fresh snapshot.
#[poem::handler]
pub async fn ws(req: &Request, ws: poem::Result<WebSocket>, state: poem::web::Data<&Arc<AppState>>) -> poem::Response {
    use poem::IntoResponse;
    use tracing::Instrument;
    let state: Arc<AppState> = state.0.clone();
    let Ok(ws) = ws else {
        // Not an upgrade: the snapshot the socket would start with, as one JSON answer.
        let ctx = match auth::ctx_from_request(&state, req).await {
            Ok(ctx) => ctx,
            Err(e) => return e.into_response_error(),
        };
        return match crate::realtime::snapshot(&state.db, &ctx).await {
            Ok((v, _)) => poem::web::Json(v).into_response(),
            Err(e) => ApiError::from(e).into_response_error(),
        };
    };
    let early = match auth::credential(req) {
        Some(c) => match auth::ctx_from_request(&state, req).await {
            Ok(ctx) => {
                if let Err(e) = may_follow(&state, &ctx).await {
                    return ApiError::from(e).into_response_error();
                }
                Some((ctx, auth::expiry(&state, &c)))
            }
            Err(e) => return e.into_response_error(),
        },
        None if !auth::origin_allowed(&state, req) => return auth::cross_site().into_response_error(),
        None => None,
    };
    let (ip, request_id) = crate::request_meta(req);
    // The connection's log lines keep the request's span (and id).
    let span = tracing::Span::current();
    ws.on_upgrade(move |socket| {
        async move {
            let (mut sink, mut stream) = socket.split();
            let (ctx, expires_at) = match early {
                Some(c) => c,
                None => {
                    // The first message must authenticate, within 10 seconds.
                    let first = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next()).await;
                    let token = match first {
                        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<Value>(&t)
                            .ok()
                            .and_then(|v| v["token"].as_str().map(String::from)),
                        _ => None,
                    };
                    let ctx = match token {
                        Some(t) => match auth::ctx_for_token(&state, &t, ip, request_id).await {
                            Ok(c) => Ok((c, auth::expiry(&state, &auth::Credential::Bearer(t)))),
                            Err(crate::error::ApiError::Unavailable(_)) => Err(true),
                            Err(_) => Err(false),
                        },
                        None => Err(false),
                    };
                    let ctx = match ctx {
                        Ok((c, exp)) => match may_follow(&state, &c).await {
                            Ok(()) => Ok((c, exp)),
                            Err(virel_domain::DomainError::Forbidden { permission }) => {
                                let refusal = serde_json::json!({"type": "error", "error": {
                                    "code": "forbidden",
                                    "message": format!("the live feed needs the permission {permission}"),
                                }});
                                let _ = sink.send(Message::Text(refusal.to_string())).await;
                                let _ = sink.close().await;
                                return;
                            }
                            Err(_) => Err(true),
                        },
                        Err(e) => Err(e),
                    };
                    match ctx {
                        Ok(c) => c,
                        Err(true) => {
                            let _ = sink.send(Message::Text(r#"{"type":"error","error":{"code":"service_unavailable","message":"the database is unavailable; reconnect shortly"}}"#.into())).await;
                            let _ = sink.close().await;
                            return;
                        }
                        Err(false) => {
                            let _ = sink.send(Message::Text(r#"{"type":"error","error":{"code":"unauthorized","message":"a valid token is required"}}"#.into())).await;
                            let _ = sink.close().await;
                            return;
                        }
                    }
                }
            };
            let (id, mut rx, behind) = state.hub.join(&state.db, ctx.clone()).await;
            let mut ping = tokio::time::interval(std::time::Duration::from_secs(25));
            let mut recheck = tokio::time::interval(RECHECK);
            loop {
                tokio::select! {
                    out = rx.recv() => match out {
                        Some(m) => {
                            if behind.swap(false, std::sync::atomic::Ordering::SeqCst) {
                                // Fell behind: what is queued is stale; the client re-fetches.
                                while rx.try_recv().is_ok() {}
                                if sink.send(Message::Text(crate::realtime::RESYNC.into())).await.is_err() { break }
                            } else if sink.send(Message::Text(m)).await.is_err() { break }
                        }
                        None => break,
                    },
                    _ = recheck.tick() => {
                        if let Some(reason) = session_ended(&state, &ctx, expires_at).await {
                            let _ = sink.send(Message::Close(Some((CloseCode::Policy, reason.into())))).await;
                            break;
                        }
                    }
                    incoming = stream.next() => match incoming {
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                        _ => {}
                    },
                    _ = ping.tick() => if sink.send(Message::Ping(Vec::new())).await.is_err() { break },
                }
            }
            state.hub.leave(id);
        }
        .instrument(span)
    })
    .into_response()
}

/// The live feed streams the Action Center: it needs `action_center:read`, checked (and a
/// refusal audited) like any operation's permission, before the connection joins the hub.
async fn may_follow(state: &AppState, ctx: &virel_domain::Ctx) -> Result<(), virel_domain::DomainError> {
    virel_domain::commands::authorize(&state.db, ctx, Permission::ActionCenterRead, "action_center").await
}

/// How often a live connection's session is checked again.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a live connection must end now, if it must: its token expired, its user was
/// deactivated or removed, or its role changed (the client reconnects with its new view).
async fn session_ended(state: &AppState, ctx: &virel_domain::Ctx, expires_at: Option<i64>) -> Option<&'static str> {
    if expires_at.is_none_or(|exp| chrono::Utc::now().timestamp() >= exp) {
        return Some("token expired");
    }
    let id = ctx.actor.user_id()?;
    match virel_domain::commands::users::get_self(&state.db, id).await {
        Ok(u) if !u.active => Some("account deactivated"),
        Ok(u) if virel_domain::policy::Role::parse(&u.role) != ctx.actor.role() => Some("role changed"),
        Ok(_) => None,
        Err(virel_domain::DomainError::NotFound { .. }) => Some("account removed"),
        // The database is briefly unreachable: keep the socket, check again later.
        Err(_) => None,
    }
}

impl ApiError {
    /// This error as a finished response (for handlers that answer with a raw response).
    pub fn into_response_error(self) -> poem::Response {
        poem::Error::from(self).into_response()
    }
}
