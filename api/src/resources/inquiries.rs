//! `/inquiries`: create, list, read, move through the state machine, convert to a booking.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;
use uuid::Uuid;
use virel_domain::commands::clients::{self, NewClient};
use virel_domain::commands::inquiries::{self, Convert, InquiryTransition, NewInquiry, Proposal};

use super::{encode_cursor, page};
use crate::auth::Auth;
use crate::dto::{BookingOut, InquiryOut, InquiryPage, Money, View};
use crate::error::ApiResult;
use crate::{ApiTags, AppState};

pub struct Api {
    pub state: Arc<AppState>,
}

#[derive(Object)]
pub struct ClientIn {
    #[oai(validator(max_length = 200))]
    pub name: String,
    #[oai(validator(max_length = 32))]
    pub phone: Option<String>,
    #[oai(validator(max_length = 254))]
    pub email: Option<String>,
    #[oai(validator(max_length = 64))]
    pub telegram: Option<String>,
    #[oai(validator(max_length = 16))]
    pub preferred_channel: Option<String>,
}

#[derive(Object)]
pub struct CreateInquiry {
    /// web, phone, telegram, email or partner.
    #[oai(validator(max_length = 32))]
    pub source: String,
    /// An existing client; or give `client` and Virel finds or creates one by phone/email.
    pub client_id: Option<Uuid>,
    pub client: Option<ClientIn>,
    pub requested_start: Option<DateTime<Utc>>,
    pub duration_minutes: Option<i64>,
    #[oai(validator(max_length = 500))]
    pub location: Option<String>,
    pub model_id: Option<Uuid>,
    pub budget: Option<Money>,
    pub preferences: Option<Value>,
    #[oai(validator(max_length = 10000))]
    pub notes: Option<String>,
    pub assignee_id: Option<Uuid>,
}

#[derive(Object)]
pub struct ProposalIn {
    pub model_id: Uuid,
    pub start_at: DateTime<Utc>,
}

#[derive(Object)]
pub struct InquiryStatusIn {
    /// The target status.
    #[oai(validator(max_length = 32))]
    pub status: String,
    /// Required for `lost`.
    #[oai(validator(max_length = 2000))]
    pub reason: Option<String>,
    /// Required for `awaiting_client` unless the inquiry names a model and a start.
    pub proposal: Option<ProposalIn>,
    /// The version the caller saw; a different current version answers 409 version_conflict.
    pub version: Option<i64>,
}

#[derive(Object)]
pub struct ConvertIn {
    pub model_id: Option<Uuid>,
    pub price: Money,
    pub deposit: Option<Money>,
    pub start_at: Option<DateTime<Utc>>,
    pub duration_minutes: Option<i64>,
    #[oai(validator(max_length = 500))]
    pub location: Option<String>,
}

#[derive(ApiResponse)]
pub enum Created {
    #[oai(status = 201)]
    Inquiry(Json<InquiryOut>),
}

#[derive(ApiResponse)]
pub enum BookingCreated {
    #[oai(status = 201)]
    Booking(Json<BookingOut>),
}

impl Api {
    async fn out(&self, auth: &Auth, i: virel_domain::rows::Inquiry) -> ApiResult<InquiryOut> {
        let client = clients::by_ids(&self.state.db, [i.client_id]).await?.remove(&i.client_id);
        Ok(InquiryOut::new(i, client, View::of(&auth.0)))
    }
}

#[OpenApi(tag = "ApiTags::Inquiries")]
impl Api {
    /// Record a client's inquiry (status `new`; `lost` at once if the client is blocked).
    #[oai(path = "/inquiries", method = "post", operation_id = "createInquiry")]
    async fn create(&self, auth: Auth, body: Json<CreateInquiry>) -> ApiResult<Created> {
        let b = body.0;
        let input = NewInquiry {
            source: b.source,
            client_id: b.client_id,
            client: b.client.map(|c| NewClient {
                name: c.name,
                phone: c.phone,
                email: c.email,
                telegram: c.telegram,
                preferred_channel: c.preferred_channel,
                ..Default::default()
            }),
            requested_start: b.requested_start,
            duration_minutes: b.duration_minutes,
            location: b.location,
            model_id: b.model_id,
            budget: b.budget.map(Into::into),
            preferences: b.preferences,
            notes: b.notes,
            assignee_id: b.assignee_id,
        };
        let row = inquiries::create(&self.state.db, &auth.0, input).await?;
        // Committed: a failure to read the client back (the database went away just now) must
        // not turn into a 503 that says nothing was written. Answer without the embedded client.
        let out = match self.out(&auth, row.clone()).await {
            Ok(o) => o,
            Err(_) => InquiryOut::new(row, None, View::of(&auth.0)),
        };
        Ok(Created::Inquiry(Json(out)))
    }

    /// List inquiries, newest first.
    #[oai(path = "/inquiries", method = "get", operation_id = "listInquiries")]
    async fn list(
        &self,
        auth: Auth,
        status: Query<Option<String>>,
        client_id: Query<Option<Uuid>>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<InquiryPage>> {
        let p = inquiries::list(&self.state.db, &auth.0, status.0, client_id.0, page(limit.0, cursor.0)?).await?;
        let clients = clients::by_ids(&self.state.db, p.items.iter().map(|i| i.client_id).collect::<Vec<_>>()).await?;
        let v = View::of(&auth.0);
        let items = p
            .items
            .into_iter()
            .map(|i| {
                let c = clients.get(&i.client_id).cloned();
                InquiryOut::new(i, c, v)
            })
            .collect();
        Ok(Json(InquiryPage { items, next_cursor: encode_cursor(p.next_cursor) }))
    }

    #[oai(path = "/inquiries/:id", method = "get", operation_id = "getInquiry")]
    async fn get(&self, auth: Auth, id: Path<Uuid>) -> ApiResult<Json<InquiryOut>> {
        let row = inquiries::get(&self.state.db, &auth.0, id.0).await?;
        Ok(Json(self.out(&auth, row).await?))
    }

    /// Move the inquiry to another status; refused with 409 invalid_transition (listing the
    /// allowed targets) when the state machine does not allow it.
    #[oai(path = "/inquiries/:id/status", method = "post", operation_id = "transitionInquiry")]
    async fn status(&self, auth: Auth, id: Path<Uuid>, body: Json<InquiryStatusIn>) -> ApiResult<Json<InquiryOut>> {
        let b = body.0;
        let t = InquiryTransition {
            status: b.status,
            reason: b.reason,
            proposal: b.proposal.map(|p| Proposal { model_id: p.model_id, start_at: p.start_at }),
            version: b.version,
        };
        let row = inquiries::transition(&self.state.db, &auth.0, id.0, t).await?;
        Ok(Json(self.out(&auth, row).await?))
    }

    /// Convert an inquiry awaiting its deposit into a booking (pending), in one transaction.
    #[oai(path = "/inquiries/:id/convert-to-booking", method = "post", operation_id = "convertInquiryToBooking")]
    async fn convert(&self, auth: Auth, id: Path<Uuid>, body: Json<ConvertIn>) -> ApiResult<BookingCreated> {
        let b = body.0;
        let c = Convert {
            model_id: b.model_id,
            price: b.price.into(),
            deposit: b.deposit.map(Into::into),
            start_at: b.start_at,
            duration_minutes: b.duration_minutes,
            location: b.location,
        };
        let booking = inquiries::convert_to_booking(&self.state.db, &auth.0, id.0, c).await?;
        let client = clients::by_ids(&self.state.db, [booking.client_id]).await?.remove(&booking.client_id);
        Ok(BookingCreated::Booking(Json(BookingOut::new(booking, client, View::of(&auth.0)))))
    }
}
