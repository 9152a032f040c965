//! What the API sends and accepts. Client contact details are masked here, on the way out,
//! for every caller without `clients:pii`: wherever a client appears.

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use serde_json::Value;
use uuid::Uuid;
use virel_domain::Ctx;
use virel_domain::action_center;
use virel_domain::commands::Money as DMoney;
use virel_domain::policy::{mask_email, mask_json, mask_phone, mask_telegram};
use virel_domain::rows;

/// Integer minor units and an ISO 4217 currency: `{"amount": 25000, "currency": "GBP"}`.
#[derive(Object, Clone, Debug)]
pub struct Money {
    /// Minor units, 0 to 100,000,000.
    #[oai(validator(minimum(value = "0"), maximum(value = "100000000")))]
    pub amount: i64,
    /// An ISO 4217 code the agency accepts (`VIREL_CURRENCIES`, default GBP, EUR, USD).
    #[oai(validator(max_length = 3))]
    pub currency: String,
}

impl From<Money> for DMoney {
    fn from(m: Money) -> DMoney {
        DMoney { amount: m.amount, currency: m.currency }
    }
}

fn money(amount: i64, currency: String) -> Money {
    Money { amount, currency }
}

/// Masking policy applied to one caller.
#[derive(Clone, Copy)]
pub struct View {
    pii: bool,
}

impl View {
    pub fn of(ctx: &Ctx) -> View {
        View { pii: ctx.sees_pii() }
    }

    fn phone(&self, v: Option<String>) -> Option<String> {
        if self.pii { v } else { v.map(|s| mask_phone(&s)) }
    }

    fn email(&self, v: Option<String>) -> Option<String> {
        if self.pii { v } else { v.map(|s| mask_email(&s)) }
    }

    fn telegram(&self, v: Option<String>) -> Option<String> {
        if self.pii { v } else { v.map(|s| mask_telegram(&s)) }
    }

    pub fn json(&self, mut v: Value) -> Value {
        if !self.pii {
            mask_json(&mut v);
        }
        v
    }
}

#[derive(Object, Clone, Debug)]
pub struct ClientOut {
    pub id: Uuid,
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub telegram: Option<String>,
    pub preferred_channel: Option<String>,
    pub notes: Option<String>,
    pub tags: Value,
    pub blocked: bool,
    pub blocked_reason: Option<String>,
    pub stats: ClientStats,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Object, Clone, Debug)]
pub struct ClientStats {
    pub bookings: i64,
    pub no_shows: i64,
    pub spend: i64,
}

impl ClientOut {
    pub fn new(c: rows::Client, v: View) -> ClientOut {
        ClientOut {
            id: c.id,
            name: c.name,
            phone: v.phone(c.phone),
            email: v.email(c.email),
            telegram: v.telegram(c.telegram),
            preferred_channel: c.preferred_channel,
            notes: c.notes,
            tags: c.tags.0,
            blocked: c.blocked,
            blocked_reason: c.blocked_reason,
            stats: ClientStats { bookings: c.bookings_count, no_shows: c.no_shows_count, spend: c.spend_amount },
            created_at: c.created_at,
            updated_at: c.updated_at,
            version: c.version,
        }
    }
}

/// The client as shown inside inquiries and bookings.
#[derive(Object, Clone, Debug)]
pub struct ClientSummary {
    pub id: Uuid,
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub telegram: Option<String>,
    pub preferred_channel: Option<String>,
    pub blocked: bool,
}

impl ClientSummary {
    pub fn new(c: rows::Client, v: View) -> ClientSummary {
        ClientSummary {
            id: c.id,
            name: c.name,
            phone: v.phone(c.phone),
            email: v.email(c.email),
            telegram: v.telegram(c.telegram),
            preferred_channel: c.preferred_channel,
            blocked: c.blocked,
        }
    }
}

#[derive(Object, Clone, Debug)]
pub struct ModelOut {
    pub id: Uuid,
    pub name: String,
    pub status: String,
    pub base_location: Option<String>,
    pub rates: Value,
    pub languages: Value,
    pub attributes: Value,
    pub profile_text: Option<String>,
    pub seo_slug: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl From<rows::Model> for ModelOut {
    fn from(m: rows::Model) -> ModelOut {
        ModelOut {
            id: m.id,
            name: m.name,
            status: m.status,
            base_location: m.base_location,
            rates: m.rates.0,
            languages: m.languages.0,
            attributes: m.attributes.0,
            profile_text: m.profile_text,
            seo_slug: m.seo_slug,
            created_at: m.created_at,
            updated_at: m.updated_at,
            version: m.version,
        }
    }
}

#[derive(Object, Clone, Debug)]
pub struct InquiryOut {
    pub id: Uuid,
    pub source: String,
    pub status: String,
    pub client_id: Uuid,
    pub client: Option<ClientSummary>,
    pub requested_start: Option<DateTime<Utc>>,
    pub duration_minutes: Option<i64>,
    pub location: Option<String>,
    pub preferences: Value,
    pub budget: Option<Money>,
    pub model_id: Option<Uuid>,
    pub assignee_id: Option<Uuid>,
    pub proposal: Option<Value>,
    pub lost_reason: Option<String>,
    pub notes: Option<String>,
    pub booking_id: Option<Uuid>,
    pub allowed_transitions: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl InquiryOut {
    pub fn new(i: rows::Inquiry, client: Option<rows::Client>, v: View) -> InquiryOut {
        InquiryOut {
            allowed_transitions: virel_domain::machine::INQUIRY
                .allowed_from(&i.status)
                .into_iter()
                .map(String::from)
                .collect(),
            id: i.id,
            source: i.source,
            status: i.status,
            client_id: i.client_id,
            client: client.map(|c| ClientSummary::new(c, v)),
            requested_start: i.requested_start,
            duration_minutes: i.duration_minutes,
            location: i.location,
            preferences: i.preferences.0,
            budget: i.budget_amount.map(|a| money(a, i.budget_currency.unwrap_or_default())),
            model_id: i.model_id,
            assignee_id: i.assignee_id,
            proposal: i.proposal.map(|p| p.0),
            lost_reason: i.lost_reason,
            notes: i.notes,
            booking_id: i.booking_id,
            created_at: i.created_at,
            updated_at: i.updated_at,
            version: i.version,
        }
    }
}

#[derive(Object, Clone, Debug)]
pub struct BookingOut {
    pub id: Uuid,
    pub status: String,
    pub client_id: Uuid,
    pub client: Option<ClientSummary>,
    pub model_id: Uuid,
    pub inquiry_id: Option<Uuid>,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub duration_minutes: i64,
    pub location: Option<String>,
    pub price: Money,
    pub deposit: Money,
    pub assignee_id: Option<Uuid>,
    pub cancellation_reason: Option<String>,
    pub override_reason: Option<String>,
    pub allowed_transitions: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl BookingOut {
    pub fn new(b: rows::Booking, client: Option<rows::Client>, v: View) -> BookingOut {
        BookingOut {
            allowed_transitions: virel_domain::machine::BOOKING
                .allowed_from(&b.status)
                .into_iter()
                .map(String::from)
                .collect(),
            duration_minutes: (b.end_at - b.start_at).num_minutes(),
            id: b.id,
            status: b.status,
            client_id: b.client_id,
            client: client.map(|c| ClientSummary::new(c, v)),
            model_id: b.model_id,
            inquiry_id: b.inquiry_id,
            start_at: b.start_at,
            end_at: b.end_at,
            location: b.location,
            price: money(b.price_amount, b.price_currency),
            deposit: money(b.deposit_amount, b.deposit_currency),
            assignee_id: b.assignee_id,
            cancellation_reason: b.cancellation_reason,
            override_reason: b.override_reason,
            created_at: b.created_at,
            updated_at: b.updated_at,
            version: b.version,
        }
    }
}

#[derive(Object, Clone, Debug)]
pub struct TaskOut {
    pub id: Uuid,
    #[oai(rename = "type")]
    pub kind: String,
    pub title: String,
    pub priority: String,
    pub status: String,
    pub assignee_id: Option<Uuid>,
    pub subject_type: Option<String>,
    pub subject_id: Option<Uuid>,
    pub due_at: Option<DateTime<Utc>>,
    pub escalation_level: i64,
    pub created_by: String,
    pub allowed_transitions: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl From<rows::Task> for TaskOut {
    fn from(t: rows::Task) -> TaskOut {
        TaskOut {
            allowed_transitions: virel_domain::machine::TASK
                .allowed_from(&t.status)
                .into_iter()
                .map(String::from)
                .collect(),
            id: t.id,
            kind: t.kind,
            title: t.title,
            priority: t.priority,
            status: t.status,
            assignee_id: t.assignee_id,
            subject_type: t.subject_type,
            subject_id: t.subject_id,
            due_at: t.due_at,
            escalation_level: t.escalation_level,
            created_by: t.created_by,
            created_at: t.created_at,
            updated_at: t.updated_at,
            version: t.version,
        }
    }
}

#[derive(Object, Clone, Debug)]
pub struct ExceptionOut {
    pub id: Uuid,
    #[oai(rename = "type")]
    pub kind: String,
    pub title: String,
    pub severity: String,
    pub status: String,
    pub subject_type: Option<String>,
    pub subject_id: Option<Uuid>,
    pub assignee_id: Option<Uuid>,
    pub resolution: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
    pub created_by: String,
    pub allowed_transitions: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl From<rows::Exception> for ExceptionOut {
    fn from(e: rows::Exception) -> ExceptionOut {
        ExceptionOut {
            allowed_transitions: virel_domain::machine::EXCEPTION
                .allowed_from(&e.status)
                .into_iter()
                .map(String::from)
                .collect(),
            id: e.id,
            kind: e.kind,
            title: e.title,
            severity: e.severity,
            status: e.status,
            subject_type: e.subject_type,
            subject_id: e.subject_id,
            assignee_id: e.assignee_id,
            resolution: e.resolution,
            due_at: e.due_at,
            created_by: e.created_by,
            created_at: e.created_at,
            updated_at: e.updated_at,
            version: e.version,
        }
    }
}

#[derive(Object, Clone, Debug)]
pub struct NoteOut {
    pub id: Uuid,
    pub subject_type: String,
    pub subject_id: Uuid,
    pub author: String,
    pub text: String,
    pub created_at: DateTime<Utc>,
}

impl From<rows::Note> for NoteOut {
    fn from(n: rows::Note) -> NoteOut {
        NoteOut {
            id: n.id,
            subject_type: n.subject_type,
            subject_id: n.subject_id,
            author: n.author,
            text: n.text,
            created_at: n.created_at,
        }
    }
}

#[derive(Object, Clone, Debug)]
pub struct AuditOut {
    pub id: Uuid,
    pub actor: String,
    pub action: String,
    pub entity_type: String,
    pub entity_id: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub at: DateTime<Utc>,
}

impl AuditOut {
    pub fn new(a: rows::AuditEntry, v: View) -> AuditOut {
        AuditOut {
            id: a.id,
            actor: a.actor,
            action: a.action,
            entity_type: a.entity_type,
            entity_id: a.entity_id,
            before: a.before.map(|b| v.json(b.0)),
            after: a.after.map(|b| v.json(b.0)),
            ip: a.ip,
            request_id: a.request_id,
            at: a.at,
        }
    }
}

#[derive(Object, Clone, Debug)]
pub struct EventOut {
    pub id: Uuid,
    #[oai(rename = "type")]
    pub kind: String,
    pub subject_type: String,
    pub subject_id: Uuid,
    pub payload: Value,
    pub actor: String,
    pub causation_id: Option<Uuid>,
    pub depth: i64,
    pub occurred_at: DateTime<Utc>,
}

impl EventOut {
    pub fn new(e: rows::DomainEvent, v: View) -> EventOut {
        EventOut {
            id: e.id,
            kind: e.kind,
            subject_type: e.subject_type,
            subject_id: e.subject_id,
            payload: v.json(e.payload.0),
            actor: e.actor,
            causation_id: e.causation_id,
            depth: e.depth,
            occurred_at: e.occurred_at,
        }
    }
}

/// Declares `{"items": [...], "next_cursor": "..." | null}` for one item type.
macro_rules! page {
    ($name:ident, $item:ty) => {
        #[derive(Object, Clone, Debug)]
        pub struct $name {
            pub items: Vec<$item>,
            /// Pass as `cursor` to get the next page; null on the last page.
            pub next_cursor: Option<String>,
        }
    };
}

page!(ClientPage, ClientOut);
page!(ModelPage, ModelOut);
page!(InquiryPage, InquiryOut);
page!(BookingPage, BookingOut);
page!(TaskPage, TaskOut);
page!(ExceptionPage, ExceptionOut);
page!(AuditPage, AuditOut);
page!(UserPage, crate::auth::UserOut);

// The Action Center item: one wire shape for `GET /action-center` and the live feed's
// `snapshot` and `item.upserted` messages.

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

#[derive(Object, Clone)]
pub struct CountsOut {
    pub breached: u64,
    pub at_risk: u64,
    pub ok: u64,
    pub total: u64,
}

impl From<&action_center::Counts> for CountsOut {
    fn from(c: &action_center::Counts) -> CountsOut {
        CountsOut { breached: c.breached as u64, at_risk: c.at_risk as u64, ok: c.ok as u64, total: c.total as u64 }
    }
}
