//! `/bookings`: create, list, read, move through the state machine, and the timeline.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;
use virel_domain::commands::bookings::{self, BookingTransition, NewBooking};
use virel_domain::commands::{clients, events};

use super::{encode_cursor, page};
use crate::auth::Auth;
use crate::dto::{BookingOut, BookingPage, EventOut, Money, NoteOut, View};
use crate::error::ApiResult;
use crate::{ApiTags, AppState};

pub struct Api {
    pub state: Arc<AppState>,
}

#[derive(Object)]
pub struct CreateBooking {
    pub client_id: Uuid,
    pub model_id: Uuid,
    pub start_at: DateTime<Utc>,
    pub duration_minutes: i64,
    #[oai(validator(max_length = 500))]
    pub location: Option<String>,
    pub price: Money,
    pub deposit: Option<Money>,
    /// `draft` (the default) or `pending` (checked for overlap at once).
    #[oai(validator(max_length = 32))]
    pub status: Option<String>,
    pub assignee_id: Option<Uuid>,
}

#[derive(Object)]
pub struct BookingStatusIn {
    #[oai(validator(max_length = 32))]
    pub status: String,
    /// Required for `cancelled`, and for an override.
    #[oai(validator(max_length = 2000))]
    pub reason: Option<String>,
    /// Confirm without a paid deposit, or hold a time the model is not free for
    /// (permission `bookings:override`; a reason is required and the override is audited).
    #[oai(rename = "override", default)]
    pub override_: bool,
    pub version: Option<i64>,
}

#[derive(Object)]
pub struct Timeline {
    pub booking: BookingOut,
    /// Domain events of the booking, oldest first.
    pub events: Vec<EventOut>,
    pub notes: Vec<NoteOut>,
    /// Messages about the booking: channel, template, status, attempts, error; oldest first.
    pub notifications: Vec<TimelineNotification>,
}

#[derive(Object)]
pub struct TimelineNotification {
    pub id: Uuid,
    pub channel: String,
    pub template: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub fallback_of: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
pub enum Created {
    #[oai(status = 201)]
    Booking(Json<BookingOut>),
}

impl Api {
    async fn out(&self, auth: &Auth, b: virel_domain::rows::Booking) -> ApiResult<BookingOut> {
        let client = clients::by_ids(&self.state.db, [b.client_id]).await?.remove(&b.client_id);
        Ok(BookingOut::new(b, client, View::of(&auth.0)))
    }
}

#[OpenApi(tag = "ApiTags::Bookings")]
impl Api {
    /// Create a booking (draft by default). 409 booking_overlap when it would be pending at a
    /// time the model is already booked.
    #[oai(path = "/bookings", method = "post", operation_id = "createBooking")]
    async fn create(&self, auth: Auth, body: Json<CreateBooking>) -> ApiResult<Created> {
        let b = body.0;
        let input = NewBooking {
            client_id: b.client_id,
            model_id: b.model_id,
            start_at: b.start_at,
            duration_minutes: b.duration_minutes,
            location: b.location,
            price: b.price.into(),
            deposit: b.deposit.map(Into::into),
            status: b.status,
            assignee_id: b.assignee_id,
        };
        let row = bookings::create(&self.state.db, &auth.0, input).await?;
        Ok(Created::Booking(Json(self.out(&auth, row).await?)))
    }

    /// List bookings, newest first.
    #[oai(path = "/bookings", method = "get", operation_id = "listBookings")]
    async fn list(
        &self,
        auth: Auth,
        status: Query<Option<String>>,
        model_id: Query<Option<Uuid>>,
        client_id: Query<Option<Uuid>>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<BookingPage>> {
        let p = bookings::list(&self.state.db, &auth.0, status.0, model_id.0, client_id.0, page(limit.0, cursor.0)?)
            .await?;
        let clients = clients::by_ids(&self.state.db, p.items.iter().map(|b| b.client_id).collect::<Vec<_>>()).await?;
        let v = View::of(&auth.0);
        let items = p
            .items
            .into_iter()
            .map(|b| {
                let c = clients.get(&b.client_id).cloned();
                BookingOut::new(b, c, v)
            })
            .collect();
        Ok(Json(BookingPage { items, next_cursor: encode_cursor(p.next_cursor) }))
    }

    #[oai(path = "/bookings/:id", method = "get", operation_id = "getBooking")]
    async fn get(&self, auth: Auth, id: Path<Uuid>) -> ApiResult<Json<BookingOut>> {
        let row = bookings::get(&self.state.db, &auth.0, id.0).await?;
        Ok(Json(self.out(&auth, row).await?))
    }

    /// Move the booking to another status, applying the transition's guard.
    #[oai(path = "/bookings/:id/status", method = "post", operation_id = "transitionBooking")]
    async fn status(&self, auth: Auth, id: Path<Uuid>, body: Json<BookingStatusIn>) -> ApiResult<Json<BookingOut>> {
        let b = body.0;
        let t = BookingTransition { status: b.status, reason: b.reason, r#override: b.override_, version: b.version };
        let row = bookings::transition(&self.state.db, &auth.0, id.0, t).await?;
        Ok(Json(self.out(&auth, row).await?))
    }

    /// The client confirmed the booking on the day (the no-show-risk rule reads it).
    #[oai(path = "/bookings/:id/client-confirmed", method = "post", operation_id = "markBookingClientConfirmed")]
    async fn client_confirmed(&self, auth: Auth, id: Path<Uuid>) -> ApiResult<Json<BookingOut>> {
        let row = virel_domain::sla::client_confirmed(&self.state.db, &auth.0, id.0).await?;
        Ok(Json(self.out(&auth, row).await?))
    }

    /// Everything that happened to the booking: its events and notes.

    #[oai(path = "/bookings/:id/timeline", method = "get", operation_id = "getBookingTimeline")]
    async fn timeline(&self, auth: Auth, id: Path<Uuid>) -> ApiResult<Json<Timeline>> {
        let t = events::booking_timeline(&self.state.db, &auth.0, id.0).await?;
        let booking = bookings::get(&self.state.db, &auth.0, id.0).await?;
        let v = View::of(&auth.0);
        Ok(Json(Timeline {
            booking: self.out(&auth, booking).await?,
            events: t.events.into_iter().map(|e| EventOut::new(e, v)).collect(),
            notes: t.notes.into_iter().map(Into::into).collect(),
            notifications: t
                .notifications
                .into_iter()
                .map(|n| TimelineNotification {
                    id: n.id,
                    channel: n.channel,
                    template: n.template,
                    status: n.status,
                    attempts: n.attempts,
                    last_error: n.last_error,
                    fallback_of: n.fallback_of,
                    created_at: n.created_at,
                    updated_at: n.updated_at,
                })
                .collect(),
        }))
    }
}
