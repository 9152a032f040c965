//! Message templates: named, per channel (and optionally locale), stored and editable, rendered
//! by minijinja in strict mode. A variable's value is inserted as text and never rendered
//! again, so a client called `{{ secret }}` is greeted as exactly that. A template is checked
//! when it is saved by rendering it against a sample context: an unknown variable, filter or
//! included template is refused then, naming it, instead of failing a send later.

use chrono::{DateTime, Utc};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sqlx::FromRow;
use uuid::Uuid;

use super::{authorize, emit, snapshot, write_audit};
use crate::error::{DomainError, DomainResult};
use crate::policy::Permission;
use crate::store::{Conn, Db};
use crate::{Ctx, new_id, now, q_all, q_exec, q_opt};

/// The variables a template may use, each with the sample value it is checked against.
pub const VARIABLES: &[(&str, &str)] = &[
    ("client_name", "Jane Client"),
    ("recipient_name", "Alex Recipient"),
    ("model_name", "Model Name"),
    ("start_at", "2026-05-01T20:00:00Z"),
    ("end_at", "2026-05-01T23:00:00Z"),
    ("deposit", "200 GBP"),
    ("amount", "200 GBP"),
    ("title", "Confirm booking"),
    ("task_type", "confirm_booking"),
    ("level", "1"),
    ("due_at", "2026-05-01T19:00:00Z"),
    ("reason", "card declined"),
    ("message", "A message"),
    ("subject_type", "booking"),
    ("subject_id", "00000000-0000-0000-0000-000000000000"),
];

/// A shipped template: name, email subject, body.
pub struct Builtin {
    pub name: &'static str,
    pub subject: &'static str,
    pub body: &'static str,
}

/// The defaults, used until an operator stores a template of the same name.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "booking_confirmed",
        subject: "Your booking is confirmed",
        body: "Hello {{ client_name }}, your booking on {{ start_at }} is confirmed.",
    },
    Builtin {
        name: "deposit_reminder",
        subject: "Deposit reminder",
        body: "Hello {{ client_name }}, a reminder that the deposit of {{ deposit }} for your booking on {{ start_at }} is still due.",
    },
    Builtin {
        name: "booking_reminder",
        subject: "Booking reminder",
        body: "Hello {{ client_name }}, a reminder of your booking on {{ start_at }}.",
    },
    Builtin {
        name: "contact_client",
        subject: "About your booking",
        body: "Hello {{ client_name }}, we tried to reach you about your booking{% if start_at %} on {{ start_at }}{% endif %}. Please call us back.",
    },
    Builtin {
        name: "sla_breach",
        subject: "SLA breached: {{ title }}",
        body: "{{ recipient_name }}, \"{{ title }}\" is past its deadline ({{ due_at }}): escalation level {{ level }}.",
    },
    Builtin {
        name: "task_escalated",
        subject: "Task escalated: {{ title }}",
        body: "Task \"{{ title }}\" is past its deadline and has been escalated.",
    },
    Builtin {
        name: "safety_check",
        subject: "Safety check missed",
        body: "URGENT {{ recipient_name }}: the safety check \"{{ title }}\" was missed (due {{ due_at }}). Call the model now.",
    },
    Builtin {
        name: "payment_failed",
        subject: "Payment failed",
        body: "Hello {{ client_name }}, the payment of {{ amount }} for your booking on {{ start_at }} did not go through{% if reason %}: {{ reason }}{% endif %}.",
    },
    Builtin {
        name: "generic",
        subject: "An update about your booking",
        body: "Hello {{ client_name }}, there is an update about your booking.",
    },
];

pub const CHANNELS: &[&str] = &["telegram_diva", "telegram_kesha", "email", "sms"];

/// The engine every template goes through: strict undefined, no HTML escaping (these are
/// text messages), no includes or loader (one template never pulls in another), and fuel so
/// a stored template cannot loop for ever.
fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_fuel(Some(20_000));
    env
}

/// The sample context: every known variable with its sample value.
pub fn sample_context() -> Value {
    Value::Object(VARIABLES.iter().map(|(k, v)| ((*k).to_string(), json!(v))).collect())
}

/// The context a send renders with: every known variable (empty when the event did not say),
/// then what the caller knows. Nulls become empty text.
pub fn context(vars: &Value) -> Value {
    let mut m: Map<String, Value> = VARIABLES.iter().map(|(k, _)| ((*k).to_string(), json!(""))).collect();
    if let Value::Object(v) = vars {
        for (k, val) in v {
            let val = match val {
                Value::Null => json!(""),
                Value::String(_) | Value::Number(_) | Value::Bool(_) => val.clone(),
                other => json!(other.to_string()),
            };
            m.insert(k.clone(), val);
        }
    }
    Value::Object(m)
}

/// Renders `source` with `vars` (see [`context`]).
pub fn render(source: &str, vars: &Value) -> DomainResult<String> {
    let env = env();
    let ctx = context(vars);
    env.render_str(source, &ctx).map_err(|e| DomainError::invalid(format!("template cannot be rendered: {e}")))
}

/// Checks a template's text: it parses, uses only known variables, and renders against the
/// sample context. The error names what is wrong (`field` is `body` or `subject`).
pub fn validate(field: &str, source: &str) -> DomainResult<()> {
    if source.trim().is_empty() {
        return Err(DomainError::invalid(format!("{field} must not be empty")));
    }
    if source.len() > 10_000 {
        return Err(DomainError::invalid(format!("{field} must be at most 10000 characters")));
    }
    let env = env();
    let tmpl = env.template_from_str(source).map_err(|e| {
        DomainError::invalid(format!("{field} is not a valid template: {}", e.detail().unwrap_or("syntax error")))
    })?;
    let mut unknown: Vec<String> =
        tmpl.undeclared_variables(false).into_iter().filter(|v| !VARIABLES.iter().any(|(k, _)| k == v)).collect();
    unknown.sort();
    if !unknown.is_empty() {
        return Err(DomainError::invalid(format!(
            "{field} uses unknown variable{} {} (known: {})",
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join(", "),
            VARIABLES.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
        )));
    }
    tmpl.render(sample_context()).map_err(|e| {
        let what = match e.kind() {
            minijinja::ErrorKind::TemplateNotFound => "uses an unknown template",
            minijinja::ErrorKind::UnknownFilter => "uses an unknown filter",
            minijinja::ErrorKind::UnknownTest => "uses an unknown test",
            minijinja::ErrorKind::UnknownFunction => "uses an unknown function",
            minijinja::ErrorKind::UndefinedError => "uses an undefined value",
            _ => "cannot be rendered",
        };
        DomainError::invalid(format!("{field} {what}: {e}"))
    })?;
    Ok(())
}

#[derive(Clone, Debug, FromRow, Serialize)]
pub struct Template {
    pub id: Uuid,
    pub name: String,
    /// Empty: every channel.
    pub channel: String,
    /// Empty: every locale.
    pub locale: String,
    pub subject: Option<String>,
    pub body: String,
    /// `diva` or `kesha`: the bot a Telegram message from this template goes through.
    pub bot: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// What a send uses: the template chosen for a channel and locale.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub subject: String,
    pub body: String,
    pub bot: Option<String>,
}

pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// Whether a template of this name exists (stored or shipped).
pub async fn exists(conn: &mut Conn<'_>, name: &str) -> DomainResult<bool> {
    if builtin(name).is_some() {
        return Ok(true);
    }
    #[derive(FromRow)]
    struct N {
        n: i64,
    }
    let n = crate::q_one!(conn, N, "SELECT COUNT(*) AS n FROM notification_templates WHERE name = $1", name)?.n;
    Ok(n > 0)
}

/// The template for `name` on `channel` (and `locale`): the most specific stored one, else
/// the shipped default.
pub async fn resolve(conn: &mut Conn<'_>, name: &str, channel: &str, locale: &str) -> DomainResult<Resolved> {
    let rows = q_all!(conn, Template, "SELECT * FROM notification_templates WHERE name = $1", name)?;
    let best = rows
        .iter()
        .filter(|t| (t.channel.is_empty() || t.channel == channel) && (t.locale.is_empty() || t.locale == locale))
        .max_by_key(|t| (!t.channel.is_empty() as u8) * 2 + (!t.locale.is_empty() as u8));
    let bot = rows.iter().find_map(|t| t.bot.clone());
    if let Some(t) = best {
        let subject = t.subject.clone().or_else(|| builtin(name).map(|b| b.subject.to_string()));
        return Ok(Resolved { subject: subject.unwrap_or_else(|| "Virel".into()), body: t.body.clone(), bot });
    }
    match builtin(name) {
        Some(b) => Ok(Resolved { subject: b.subject.into(), body: b.body.into(), bot }),
        None => Err(DomainError::invalid(format!("unknown template {name}"))),
    }
}

/// One entry of the templates list: a stored template, or a shipped default nobody replaced.
#[derive(Clone, Debug, Serialize)]
pub struct Listed {
    pub id: Option<Uuid>,
    pub name: String,
    pub channel: String,
    pub locale: String,
    pub subject: Option<String>,
    pub body: String,
    pub bot: Option<String>,
    pub builtin: bool,
    pub version: Option<i64>,
    pub updated_at: Option<DateTime<Utc>>,
}

pub async fn list(db: &Db, ctx: &Ctx) -> DomainResult<Vec<Listed>> {
    authorize(db, ctx, Permission::AutomationRead, "notification_template").await?;
    let mut h = db.acquire().await?;
    let rows = q_all!(&mut h.conn(), Template, "SELECT * FROM notification_templates ORDER BY name, channel, locale")?;
    let mut out: Vec<Listed> = BUILTINS
        .iter()
        .filter(|b| !rows.iter().any(|r| r.name == b.name && r.channel.is_empty() && r.locale.is_empty()))
        .map(|b| Listed {
            id: None,
            name: b.name.into(),
            channel: String::new(),
            locale: String::new(),
            subject: Some(b.subject.into()),
            body: b.body.into(),
            bot: None,
            builtin: true,
            version: None,
            updated_at: None,
        })
        .collect();
    out.extend(rows.into_iter().map(|t| Listed {
        id: Some(t.id),
        name: t.name,
        channel: t.channel,
        locale: t.locale,
        subject: t.subject,
        body: t.body,
        bot: t.bot,
        builtin: false,
        version: Some(t.version),
        updated_at: Some(t.updated_at),
    }));
    out.sort_by(|a, b| (&a.name, &a.channel, &a.locale).cmp(&(&b.name, &b.channel, &b.locale)));
    Ok(out)
}

/// A template to store: the one of this name, channel and locale is replaced.
#[derive(Clone, Debug, Default)]
pub struct TemplateInput {
    pub name: String,
    pub channel: Option<String>,
    pub locale: Option<String>,
    pub subject: Option<String>,
    pub body: String,
    pub bot: Option<String>,
}

/// Stores a template after checking it (422 naming an unknown variable or template).
pub async fn save(db: &Db, ctx: &Ctx, input: TemplateInput) -> DomainResult<Template> {
    authorize(db, ctx, Permission::AutomationWrite, "notification_template").await?;
    let name = input.name.trim().to_string();
    if name.is_empty()
        || name.len() > 64
        || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(DomainError::invalid("name must be 1 to 64 characters of a-z, 0-9 and _"));
    }
    let channel = input.channel.map(|c| c.trim().to_string()).unwrap_or_default();
    if !channel.is_empty() && !CHANNELS.contains(&channel.as_str()) {
        return Err(DomainError::invalid(format!("channel must be one of: {}", CHANNELS.join(", "))));
    }
    let locale = input.locale.map(|c| c.trim().to_string()).unwrap_or_default();
    if locale.len() > 16 || !locale.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(DomainError::invalid("locale must be a language tag such as en or pt-BR"));
    }
    if let Some(b) = &input.bot
        && !matches!(b.as_str(), "diva" | "kesha")
    {
        return Err(DomainError::invalid("bot must be diva or kesha"));
    }
    validate("body", &input.body)?;
    if let Some(s) = &input.subject {
        validate("subject", s)?;
    }
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let before = q_opt!(
        &mut conn,
        Template,
        "SELECT * FROM notification_templates WHERE name = $1 AND channel = $2 AND locale = $3",
        name.clone(),
        channel.clone(),
        locale.clone()
    )?;
    let at = now();
    let id = match &before {
        Some(b) => {
            q_exec!(
                &mut conn,
                "UPDATE notification_templates SET subject = $1, body = $2, bot = $3, updated_at = $4, version = version + 1 WHERE id = $5",
                input.subject.clone(),
                input.body.clone(),
                input.bot.clone(),
                at,
                b.id
            )?;
            b.id
        }
        None => {
            let id = new_id();
            q_exec!(
                &mut conn,
                "INSERT INTO notification_templates (id, name, channel, locale, subject, body, bot, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
                id,
                name.clone(),
                channel.clone(),
                locale.clone(),
                input.subject.clone(),
                input.body.clone(),
                input.bot.clone(),
                at
            )?;
            id
        }
    };
    let row = q_opt!(&mut conn, Template, "SELECT * FROM notification_templates WHERE id = $1", id)?
        .ok_or(DomainError::NotFound { entity: "notification_template" })?;
    emit(
        &mut conn,
        ctx,
        "notification_template.saved",
        "notification_template",
        id,
        json!({"template_id": id, "name": name, "channel": channel, "locale": locale}),
    )
    .await?;
    write_audit(
        &mut conn,
        ctx,
        "notification_template.saved",
        "notification_template",
        Some(id.to_string()),
        before.as_ref().map(snapshot),
        Some(snapshot(&row)),
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// Removes a stored template (a shipped default of that name takes over again).
pub async fn delete(db: &Db, ctx: &Ctx, id: Uuid) -> DomainResult<()> {
    authorize(db, ctx, Permission::AutomationWrite, "notification_template").await?;
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    let before = q_opt!(&mut conn, Template, "SELECT * FROM notification_templates WHERE id = $1", id)?
        .ok_or(DomainError::NotFound { entity: "notification_template" })?;
    q_exec!(&mut conn, "DELETE FROM notification_templates WHERE id = $1", id)?;
    emit(
        &mut conn,
        ctx,
        "notification_template.deleted",
        "notification_template",
        id,
        json!({"template_id": id, "name": before.name}),
    )
    .await?;
    write_audit(
        &mut conn,
        ctx,
        "notification_template.deleted",
        "notification_template",
        Some(id.to_string()),
        Some(snapshot(&before)),
        None,
    )
    .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_never_rendered_again() {
        let out =
            render("Hello {{ client_name }}", &json!({"client_name": "{{ secret }} {% if 1 %}x{% endif %}"})).unwrap();
        assert_eq!(out, "Hello {{ secret }} {% if 1 %}x{% endif %}");
    }

    #[test]
    fn every_builtin_is_valid() {
        for b in BUILTINS {
            validate("body", b.body).unwrap_or_else(|e| panic!("{}: {e}", b.name));
            validate("subject", b.subject).unwrap_or_else(|e| panic!("{}: {e}", b.name));
        }
    }

    #[test]
    fn unknown_variables_filters_and_templates_are_named() {
        let e = validate("body", "Hi {{ client_name }} {{ secret }}").unwrap_err().to_string();
        assert!(e.contains("unknown variable secret"), "{e}");
        let e = validate("body", "{{ client_name | shout }}").unwrap_err().to_string();
        assert!(e.contains("unknown filter"), "{e}");
        // No other template can be pulled in: includes are refused at save time.
        let e = validate("body", "{% include 'other' %}").unwrap_err().to_string();
        assert!(e.contains("include"), "{e}");
        let e = validate("body", "{{ client_name ").unwrap_err().to_string();
        assert!(e.contains("not a valid template"), "{e}");
    }

    #[test]
    fn missing_values_render_empty() {
        assert_eq!(render("[{{ deposit }}]", &json!({"deposit": null})).unwrap(), "[]");
    }
}
