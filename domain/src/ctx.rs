//! Who is acting, from where, and why: carried by every command into its audit and events.

use uuid::Uuid;

use crate::error::{DomainError, DomainResult};
use crate::policy::{Permission, Role};

#[derive(Clone, Debug, PartialEq)]
pub enum Actor {
    User {
        id: Uuid,
        role: Role,
    },
    /// An automation rule acting through the same commands as people.
    Automation(Uuid),
    System,
    Webhook(&'static str),
    /// Nobody yet (a login attempt).
    Anonymous,
}

impl Actor {
    /// The actor as written in audit and events: a user id, `automation:<rule id>`, `system`...
    pub fn label(&self) -> String {
        match self {
            Actor::User { id, .. } => id.to_string(),
            Actor::Automation(rule) => format!("automation:{rule}"),
            Actor::System => "system".into(),
            Actor::Webhook(src) => format!("webhook:{src}"),
            Actor::Anonymous => "anonymous".into(),
        }
    }

    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Actor::User { id, .. } => Some(*id),
            _ => None,
        }
    }

    pub fn role(&self) -> Option<Role> {
        match self {
            Actor::User { role, .. } => Some(*role),
            _ => None,
        }
    }

    /// Machine actors (automation, scheduler, webhooks) act for the agency as a whole; what
    /// they may do is bounded by the state machines, not by a role.
    pub fn can(&self, p: Permission) -> bool {
        match self {
            Actor::User { role, .. } => role.can(p),
            Actor::Automation(_) | Actor::System | Actor::Webhook(_) => true,
            Actor::Anonymous => false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Ctx {
    pub actor: Actor,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    /// The event that caused this command (automation), and how many hops deep it is.
    pub causation_id: Option<Uuid>,
    pub depth: i64,
}

impl Ctx {
    pub fn new(actor: Actor) -> Ctx {
        Ctx { actor, ip: None, request_id: None, causation_id: None, depth: 0 }
    }

    pub fn system() -> Ctx {
        Ctx::new(Actor::System)
    }

    pub fn user(id: Uuid, role: Role) -> Ctx {
        Ctx::new(Actor::User { id, role })
    }

    pub fn with_request(mut self, ip: Option<String>, request_id: Option<String>) -> Ctx {
        self.ip = ip;
        self.request_id = request_id;
        self
    }

    pub fn can(&self, p: Permission) -> bool {
        self.actor.can(p)
    }

    /// Whether client contact details may be shown to this caller unmasked.
    pub fn sees_pii(&self) -> bool {
        self.can(Permission::ClientsPii)
    }

    /// Whether the caller sees every task and exception, or only their own and unassigned.
    pub fn sees_all_items(&self) -> bool {
        self.can(Permission::TasksAll)
    }

    pub fn require_quiet(&self, p: Permission) -> DomainResult<()> {
        if self.can(p) { Ok(()) } else { Err(DomainError::forbidden(p)) }
    }
}
