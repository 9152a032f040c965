//! The default rules of SPEC §6, written once when absent.

use serde_json::{Value, json};
use sqlx::FromRow;
use uuid::Uuid;

pub use rules::{Action, Condition, MAX_DEPTH};

use crate::error::{DomainError, DomainResult};
use crate::store::Db;
use crate::{Ctx, q_opt};

use super::crud::insert_rule;
use super::*;

/// The default rules (SPEC §6), written once when absent; all editable afterwards.
pub async fn seed_defaults(db: &Db) -> DomainResult<usize> {
    let defaults: Vec<(&str, Value)> = vec![
        (
            "Confirm the booking when its deposit is paid",
            json!({
            "trigger": "payment.succeeded",
            "conditions": [{"field": "type", "operator": "equals", "value": "deposit"}],
            "actions": [{"type": "update_status", "params": {"newStatus": "confirmed"}},
                        {"type": "create_task", "params": {"type": "notify_model"}}]}),
        ),
        (
            "Auto-qualify web inquiries",
            json!({
            "trigger": "inquiry.created",
            "conditions": [{"field": "source", "operator": "equals", "value": "web"},
                           {"field": "client.blocked", "operator": "equals", "value": false}],
            "actions": [{"type": "update_status", "params": {"newStatus": "qualified"}}]}),
        ),
        (
            "Deposit reminder after 2 hours",
            json!({
            "trigger": "booking.status_changed",
            "conditions": [{"field": "to", "operator": "equals", "value": "deposit_required"},
                           {"field": "booking.status", "operator": "equals", "value": "deposit_required"}],
            "actions": [{"type": "send_notification", "delay_minutes": 120,
                         "params": {"channel": "preferred", "template": "deposit_reminder", "to": "client"}}]}),
        ),
        (
            "No-show risk 30 minutes before",
            json!({
            "trigger": "booking.starting_soon",
            "conditions": [{"field": "client.confirmed_today", "operator": "not_equals", "value": true}],
            "actions": [{"type": "create_exception", "params": {"type": "no_show_risk", "severity": "high"}}]}),
        ),
        (
            "Escalate failed payments",
            json!({
            "trigger": "payment.failed",
            "conditions": [],
            "actions": [{"type": "create_exception", "params": {"type": "payment_failed", "severity": "high"}},
                        {"type": "create_task", "params": {"type": "contact_client", "priority": "critical", "assign_to": "assignee"}}]}),
        ),
    ];
    let ctx = Ctx::system();
    let mut written = 0;
    let mut tx = db.begin().await?;
    for (name, body) in defaults {
        #[derive(FromRow)]
        struct One {
            #[allow(dead_code)]
            id: Uuid,
        }
        if q_opt!(
            &mut tx.conn(),
            One,
            "SELECT id FROM automation_rules WHERE is_default = $1 AND name = $2",
            true,
            name
        )?
        .is_some()
        {
            continue;
        }
        let input = RuleInput {
            name: name.into(),
            enabled: Some(true),
            trigger: body["trigger"].as_str().unwrap_or_default().into(),
            conditions: serde_json::from_value(body["conditions"].clone())
                .map_err(|e| DomainError::Internal(e.to_string()))?,
            actions: serde_json::from_value(body["actions"].clone())
                .map_err(|e| DomainError::Internal(e.to_string()))?,
            version: None,
        };
        rules::validate(&input.trigger, &input.conditions, &input.actions)?;
        insert_rule(&mut tx.conn(), &ctx, name, &input, true).await?;
        written += 1;
    }
    tx.commit().await?;
    Ok(written)
}
