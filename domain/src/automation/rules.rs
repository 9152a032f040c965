//! The rule language: triggers, conditions (a dotted path into the event payload, an operator,
//! a value) and actions with their parameters; validation that names the bad part, and
//! evaluation over an event's payload.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{DomainError, DomainResult};
use crate::machine::{BOOKING, EXCEPTION, EXCEPTION_TYPES, INQUIRY, Machine, PRIORITIES, SEVERITIES, TASK, TASK_TYPES};

/// The furthest a rule may set a task's deadline: a year, in minutes.
pub const MAX_DUE_IN_MINUTES: i64 = 365 * 24 * 60;
/// The longest a rule may delay an action: a week, in minutes.
pub const MAX_DELAY_MINUTES: i64 = 7 * 24 * 60;

/// Events dispatched deeper than this trigger no rules: a loop is cut and reported.
pub const MAX_DEPTH: i64 = 5;

/// Each trigger and the payload fields a condition may name (first segment of the path).
pub const TRIGGERS: &[(&str, &[&str])] = &[
    (
        "inquiry.created",
        &[
            "inquiry_id",
            "source",
            "status",
            "client_id",
            "client",
            "model_id",
            "requested_start",
            "duration_minutes",
            "budget",
            "inquiry",
        ],
    ),
    ("inquiry.status_changed", INQUIRY_CHANGE),
    ("inquiry.converted", INQUIRY_CHANGE),
    ("inquiry.lost", INQUIRY_CHANGE),
    ("booking.created", BOOKING_FIELDS),
    ("booking.status_changed", BOOKING_FIELDS),
    ("booking.pending", BOOKING_FIELDS),
    ("booking.deposit_required", BOOKING_FIELDS),
    ("booking.confirmed", BOOKING_FIELDS),
    ("booking.started", BOOKING_FIELDS),
    ("booking.cancelled", BOOKING_FIELDS),
    ("booking.no_show", BOOKING_FIELDS),
    ("booking.completed", BOOKING_FIELDS),
    ("booking.starting_soon", BOOKING_FIELDS),
    ("payment.requested", PAYMENT_FIELDS),
    ("payment.succeeded", PAYMENT_FIELDS),
    ("payment.failed", PAYMENT_FIELDS),
    ("payment.refunded", PAYMENT_FIELDS),
    ("task.created", TASK_FIELDS),
    ("task.assigned", TASK_FIELDS),
    ("task.status_changed", TASK_FIELDS),
    ("task.sla_breached", TASK_FIELDS),
    ("exception.created", EXCEPTION_FIELDS),
    ("exception.status_changed", EXCEPTION_FIELDS),
    ("exception.resolved", EXCEPTION_FIELDS),
    ("exception.assigned", EXCEPTION_FIELDS),
    ("exception.sla_breached", EXCEPTION_FIELDS),
    ("notification.sent", NOTIFICATION_FIELDS),
    ("notification.failed", NOTIFICATION_FIELDS),
    ("client.created", &["client_id", "client"]),
    ("client.blocked", &["client_id", "reason", "client"]),
    ("model.created", &["model_id"]),
    ("model.availability_changed", &["model_id"]),
    ("note.added", &["note_id", "subject_type", "subject_id"]),
];

const INQUIRY_CHANGE: &[&str] =
    &["inquiry_id", "from", "to", "reason", "source", "client_id", "booking_id", "status", "inquiry"];
const BOOKING_FIELDS: &[&str] = &[
    "booking_id",
    "status",
    "client_id",
    "model_id",
    "inquiry_id",
    "start_at",
    "end_at",
    "assignee_id",
    "price",
    "deposit",
    "booking",
    "from",
    "to",
    "reason",
    "client",
];
const PAYMENT_FIELDS: &[&str] = &["payment_id", "booking_id", "type", "amount", "status", "error", "booking"];
const TASK_FIELDS: &[&str] = &[
    "task_id",
    "type",
    "priority",
    "status",
    "assignee_id",
    "subject_type",
    "subject_id",
    "due_at",
    "from",
    "to",
    "previous_assignee_id",
    "escalation_level",
    "task",
];
const EXCEPTION_FIELDS: &[&str] = &[
    "exception_id",
    "type",
    "severity",
    "status",
    "assignee_id",
    "subject_type",
    "subject_id",
    "from",
    "to",
    "resolution",
    "exception",
];
const NOTIFICATION_FIELDS: &[&str] = &["notification_id", "channel", "template", "recipient", "status", "error"];

pub const OPERATORS: &[&str] =
    &["equals", "not_equals", "in", "not_in", "gt", "gte", "lt", "lte", "contains", "exists"];
pub const ACTIONS: &[&str] =
    &["update_status", "create_task", "create_exception", "send_notification", "assign", "add_note"];
pub const NOTIFY_CHANNELS: &[&str] = &["preferred", "telegram_diva", "telegram_kesha", "email", "sms"];
pub const NOTIFY_TARGETS: &[&str] =
    &["client", "model", "assignee", "OWNER", "OPS_MANAGER", "OPERATOR", "FINANCE", "CONTENT_MANAGER"];

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Condition {
    pub field: String,
    pub operator: String,
    #[serde(default)]
    pub value: Value,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Action {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub params: Map<String, Value>,
    /// Run the action this many minutes after the event, re-checking the conditions then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_minutes: Option<i64>,
}

impl Action {
    pub fn delay(&self) -> i64 {
        self.delay_minutes.or_else(|| self.params.get("delay_minutes").and_then(Value::as_i64)).unwrap_or(0)
    }

    pub fn str_param(&self, k: &str) -> Option<&str> {
        self.params.get(k).and_then(Value::as_str)
    }
}

pub fn trigger_fields(trigger: &str) -> Option<&'static [&'static str]> {
    TRIGGERS.iter().find(|(t, _)| *t == trigger).map(|(_, f)| *f)
}

/// The subject type an event is about, from its type's prefix.
pub fn trigger_subject(trigger: &str) -> &str {
    trigger.split('.').next().unwrap_or("")
}

fn machine(entity: &str) -> Option<&'static Machine> {
    match entity {
        "inquiry" => Some(&INQUIRY),
        "booking" => Some(&BOOKING),
        "task" => Some(&TASK),
        "exception" => Some(&EXCEPTION),
        _ => None,
    }
}

fn bad(msg: String) -> DomainError {
    DomainError::Invalid(msg)
}

/// Checks a rule before it is stored; the message names the bad part (`conditions[1].operator`).
pub fn validate(trigger: &str, conditions: &[Condition], actions: &[Action]) -> DomainResult<()> {
    let fields = trigger_fields(trigger).ok_or_else(|| {
        bad(format!(
            "trigger: unknown event type {trigger:?}; known: {}",
            TRIGGERS.iter().map(|t| t.0).collect::<Vec<_>>().join(", ")
        ))
    })?;
    for (i, c) in conditions.iter().enumerate() {
        let first = c.field.split('.').next().unwrap_or("");
        if c.field.is_empty() || c.field.split('.').any(str::is_empty) {
            return Err(bad(format!("conditions[{i}].field: empty path segment in {:?}", c.field)));
        }
        if first != "event" && !fields.contains(&first) {
            return Err(bad(format!(
                "conditions[{i}].field: {:?} is not a field of {trigger}; fields: {}, event.*",
                c.field,
                fields.join(", ")
            )));
        }
        if !OPERATORS.contains(&c.operator.as_str()) {
            return Err(bad(format!(
                "conditions[{i}].operator: unknown operator {:?}; operators: {}",
                c.operator,
                OPERATORS.join(", ")
            )));
        }
        match c.operator.as_str() {
            "in" | "not_in" if !c.value.is_array() => {
                return Err(bad(format!("conditions[{i}].value: {} needs an array", c.operator)));
            }
            "gt" | "gte" | "lt" | "lte" if !(c.value.is_number() || c.value.is_string()) => {
                return Err(bad(format!("conditions[{i}].value: {} needs a number or a string", c.operator)));
            }
            "exists" if !(c.value.is_null() || c.value.is_boolean()) => {
                return Err(bad(format!("conditions[{i}].value: exists takes true, false or nothing")));
            }
            "equals" | "not_equals" | "contains" if c.value.is_null() && c.operator == "contains" => {
                return Err(bad(format!("conditions[{i}].value: contains needs a value")));
            }
            _ => {}
        }
    }
    if actions.is_empty() {
        return Err(bad("actions: a rule needs at least one action".into()));
    }
    for (i, a) in actions.iter().enumerate() {
        validate_action(i, trigger, a)?;
    }
    Ok(())
}

fn validate_action(i: usize, trigger: &str, a: &Action) -> DomainResult<()> {
    let allowed: &[&str] = match a.kind.as_str() {
        "update_status" => &["newStatus", "entity", "reason", "override"],
        "create_task" => &["type", "title", "priority", "due_in_minutes", "assign_to"],
        "create_exception" => &["type", "severity", "title"],
        "send_notification" => &["channel", "template", "to"],
        "assign" => &["assign_to"],
        "add_note" => &["text"],
        other => {
            return Err(bad(format!("actions[{i}].type: unknown action {other:?}; actions: {}", ACTIONS.join(", "))));
        }
    };
    for k in a.params.keys() {
        if k != "delay_minutes" && !allowed.contains(&k.as_str()) {
            return Err(bad(format!(
                "actions[{i}].params.{k}: unknown parameter of {}; parameters: {}",
                a.kind,
                allowed.join(", ")
            )));
        }
    }
    let p = |k: &str| a.params.get(k);
    let string = |k: &str, required: bool| -> DomainResult<Option<&str>> {
        match p(k) {
            None | Some(Value::Null) if !required => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.as_str())),
            _ => Err(bad(format!(
                "actions[{i}].params.{k}: {} a non-empty string",
                if required { "required," } else { "must be" }
            ))),
        }
    };
    let one_of = |k: &str, v: Option<&str>, set: &[&str]| -> DomainResult<()> {
        match v {
            Some(v) if !set.contains(&v) => {
                Err(bad(format!("actions[{i}].params.{k}: {v:?} is not one of {}", set.join(", "))))
            }
            _ => Ok(()),
        }
    };
    let delay = a.delay_minutes.map(Value::from).or_else(|| p("delay_minutes").cloned());
    if let Some(d) = delay
        && !d.as_i64().is_some_and(|d| (0..=MAX_DELAY_MINUTES).contains(&d))
    {
        return Err(bad(format!("actions[{i}].delay_minutes: must be an integer from 0 to {MAX_DELAY_MINUTES}")));
    }
    match a.kind.as_str() {
        "update_status" => {
            let to = string("newStatus", true)?.unwrap_or_default();
            let entity = string("entity", false)?;
            one_of("entity", entity, &["inquiry", "booking", "task", "exception"])?;
            let target = entity.unwrap_or(match trigger_subject(trigger) {
                "payment" => "booking",
                s => s,
            });
            let m = machine(target).ok_or_else(|| {
                bad(format!("actions[{i}].params.entity: {trigger} has no subject with a status; name the entity"))
            })?;
            if !m.is_state(to) {
                return Err(bad(format!(
                    "actions[{i}].params.newStatus: {to:?} is not a {target} status; statuses: {}",
                    m.states.join(", ")
                )));
            }
            if let Some(o) = p("override")
                && !o.is_boolean()
            {
                return Err(bad(format!("actions[{i}].params.override: must be true or false")));
            }
            string("reason", false)?;
        }
        "create_task" => {
            one_of("type", string("type", true)?, TASK_TYPES)?;
            string("title", false)?;
            one_of("priority", string("priority", false)?, PRIORITIES)?;
            if let Some(d) = p("due_in_minutes")
                && d.as_i64().is_none_or(|d| !(0..=MAX_DUE_IN_MINUTES).contains(&d))
            {
                return Err(bad(format!(
                    "actions[{i}].params.due_in_minutes: must be an integer from 0 to {MAX_DUE_IN_MINUTES} (a year)"
                )));
            }
            validate_assign_to(i, p("assign_to"))?;
        }
        "create_exception" => {
            one_of("type", string("type", true)?, EXCEPTION_TYPES)?;
            one_of("severity", string("severity", true)?, SEVERITIES)?;
            string("title", false)?;
        }
        "send_notification" => {
            one_of("channel", string("channel", true)?, NOTIFY_CHANNELS)?;
            string("template", true)?;
            // A target, or one user by id.
            let to = string("to", true)?;
            if to.is_none_or(|t| uuid::Uuid::parse_str(t).is_err()) {
                one_of("to", to, NOTIFY_TARGETS)?;
            }
        }
        "assign" => {
            if p("assign_to").is_none() {
                return Err(bad(format!("actions[{i}].params.assign_to: required")));
            }
            validate_assign_to(i, p("assign_to"))?;
        }
        "add_note" => {
            string("text", true)?;
        }
        _ => {}
    }
    Ok(())
}

fn validate_assign_to(i: usize, v: Option<&Value>) -> DomainResult<()> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s == "round_robin" || s == "assignee" || uuid::Uuid::parse_str(s).is_ok() => Ok(()),
        _ => Err(bad(format!("actions[{i}].params.assign_to: a user id, \"round_robin\" or \"assignee\""))),
    }
}

/// The value at a dotted path; `event.*` reads the envelope.
pub fn lookup<'a>(payload: &'a Value, envelope: &'a Value, path: &str) -> Option<&'a Value> {
    let (root, rest) = match path.strip_prefix("event.") {
        Some(r) => (envelope, r),
        None => (payload, path),
    };
    rest.split('.').try_fold(root, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn cmp(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

pub fn holds(c: &Condition, payload: &Value, envelope: &Value) -> bool {
    let found = lookup(payload, envelope, &c.field).filter(|v| !v.is_null());
    match c.operator.as_str() {
        "exists" => found.is_some() == c.value.as_bool().unwrap_or(true),
        "equals" => found.is_some_and(|v| loose_eq(v, &c.value)),
        "not_equals" => !found.is_some_and(|v| loose_eq(v, &c.value)),
        "in" => found.is_some_and(|v| c.value.as_array().is_some_and(|a| a.iter().any(|x| loose_eq(v, x)))),
        "not_in" => !found.is_some_and(|v| c.value.as_array().is_some_and(|a| a.iter().any(|x| loose_eq(v, x)))),
        "gt" => found.and_then(|v| cmp(v, &c.value)).is_some_and(|o| o.is_gt()),
        "gte" => found.and_then(|v| cmp(v, &c.value)).is_some_and(|o| o.is_ge()),
        "lt" => found.and_then(|v| cmp(v, &c.value)).is_some_and(|o| o.is_lt()),
        "lte" => found.and_then(|v| cmp(v, &c.value)).is_some_and(|o| o.is_le()),
        "contains" => match found {
            Some(Value::String(s)) => c.value.as_str().is_some_and(|needle| s.contains(needle)),
            Some(Value::Array(a)) => a.iter().any(|x| loose_eq(x, &c.value)),
            _ => false,
        },
        _ => false,
    }
}

pub fn all_hold(conditions: &[Condition], payload: &Value, envelope: &Value) -> bool {
    conditions.iter().all(|c| holds(c, payload, envelope))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(field: &str, op: &str, value: Value) -> Condition {
        Condition { field: field.into(), operator: op.into(), value }
    }

    #[test]
    fn operators() {
        let p = json!({"source": "phone", "amount": {"amount": 500}, "tags": ["vip"], "note": "call back"});
        let e = json!({"type": "inquiry.created", "depth": 0});
        let yes = [
            c("source", "equals", json!("phone")),
            c("source", "not_equals", json!("web")),
            c("source", "in", json!(["phone", "web"])),
            c("source", "not_in", json!(["web"])),
            c("amount.amount", "gt", json!(100)),
            c("amount.amount", "gte", json!(500)),
            c("amount.amount", "lt", json!(501)),
            c("amount.amount", "lte", json!(500.0)),
            c("tags", "contains", json!("vip")),
            c("note", "contains", json!("back")),
            c("source", "exists", Value::Null),
            c("missing", "exists", json!(false)),
            c("event.type", "equals", json!("inquiry.created")),
        ];
        for cond in &yes {
            assert!(holds(cond, &p, &e), "{cond:?}");
        }
        let no = [
            c("source", "equals", json!("web")),
            c("missing", "equals", json!("x")),
            c("amount.amount", "gt", json!(500)),
            c("missing", "exists", Value::Null),
            c("amount.amount", "lt", json!("abc")),
        ];
        for cond in &no {
            assert!(!holds(cond, &p, &e), "{cond:?}");
        }
    }

    #[test]
    fn validation_names_the_bad_part() {
        let act = |k: &str, p: Value| Action {
            kind: k.into(),
            params: p.as_object().cloned().unwrap_or_default(),
            delay_minutes: None,
        };
        let ok_action = act("create_task", json!({"type": "follow_up"}));
        let err = |t: &str, cs: Vec<Condition>, a: Vec<Action>| validate(t, &cs, &a).unwrap_err().to_string();
        assert!(err("nope.created", vec![], vec![ok_action.clone()]).starts_with("trigger"));
        assert!(
            err("inquiry.created", vec![c("colour", "equals", json!(1))], vec![ok_action.clone()])
                .starts_with("conditions[0].field")
        );
        assert!(
            err("inquiry.created", vec![c("source", "like", json!(1))], vec![ok_action.clone()])
                .starts_with("conditions[0].operator")
        );
        assert!(
            err("inquiry.created", vec![c("source", "in", json!("web"))], vec![ok_action.clone()])
                .starts_with("conditions[0].value")
        );
        assert!(err("inquiry.created", vec![], vec![act("launch", json!({}))]).starts_with("actions[0].type"));
        assert!(
            err("inquiry.created", vec![], vec![act("create_task", json!({"type": 5}))])
                .starts_with("actions[0].params.type")
        );
        assert!(
            err("inquiry.created", vec![], vec![act("update_status", json!({"newStatus": "confirmed"}))])
                .starts_with("actions[0].params.newStatus")
        );
        assert!(
            err("inquiry.created", vec![], vec![act("create_task", json!({"type": "follow_up", "colour": 1}))])
                .starts_with("actions[0].params.colour")
        );
        validate(
            "payment.succeeded",
            &[c("type", "equals", json!("deposit"))],
            &[
                act("update_status", json!({"newStatus": "confirmed"})),
                act("create_task", json!({"type": "notify_model"})),
            ],
        )
        .unwrap();
    }
}
