//! Matching (SPEC §11): which models fit an inquiry. A candidate is an active model free for
//! the whole requested window (her slots, minus blocks, minus other bookings with the travel
//! buffer before and after); candidates are scored on location, the wanted model, languages
//! and preferences, budget against her rate for that duration, and reliability, and each
//! comes with the reasons. Every other model is listed in `excluded` with why.

use std::collections::HashMap;

use chrono::Duration;
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::availability::{self, Interval, ModelTime};
use crate::commands::authorize;
use crate::error::{DomainError, DomainResult};
use crate::policy::Permission;
use crate::rows::{Inquiry, Model, ModelStats};
use crate::store::Db;
use crate::{Ctx, q_all};

/// The weights of the score's parts; they sum to 1.
pub const WEIGHTS: Weights =
    Weights { location: 0.20, wanted: 0.20, preferences: 0.15, budget: 0.25, reliability: 0.20 };

#[derive(Clone, Copy, Debug)]
pub struct Weights {
    pub location: f64,
    pub wanted: f64,
    pub preferences: f64,
    pub budget: f64,
    pub reliability: f64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Candidate {
    pub model_id: Uuid,
    pub name: String,
    pub score: f64,
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Excluded {
    pub model_id: Uuid,
    pub name: String,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct MatchResult {
    pub inquiry_id: Uuid,
    /// The requested window.
    pub window: Interval,
    /// Best first.
    pub candidates: Vec<Candidate>,
    pub excluded: Vec<Excluded>,
}

/// What the scoring reads about the inquiry.
#[derive(Clone, Debug, Default)]
pub struct Wants {
    pub location: Option<String>,
    pub model_id: Option<Uuid>,
    pub preferences: Value,
    pub budget: Option<(i64, String)>,
    pub duration_minutes: i64,
}

impl Wants {
    pub fn of(i: &Inquiry, duration_minutes: i64) -> Wants {
        Wants {
            location: i.location.clone().filter(|l| !l.trim().is_empty()),
            model_id: i.model_id,
            preferences: i.preferences.0.clone(),
            budget: i.budget_amount.zip(i.budget_currency.clone()),
            duration_minutes,
        }
    }
}

/// `£300`, `€45.50`, `120 CHF`.
pub fn money(amount: i64, currency: &str) -> String {
    let major = amount / 100;
    let minor = (amount % 100).abs();
    let n = if minor == 0 { major.to_string() } else { format!("{major}.{minor:02}") };
    match currency {
        "GBP" => format!("£{n}"),
        "EUR" => format!("€{n}"),
        "USD" => format!("${n}"),
        other => format!("{n} {other}"),
    }
}

/// The model's price for `minutes`: the rate for exactly that duration, else the longest
/// shorter rate (or the shortest one) pro rata.
pub fn rate_for(rates: &Value, minutes: i64) -> Option<(i64, String)> {
    let rates: Vec<(i64, i64, String)> = rates
        .as_array()?
        .iter()
        .filter_map(|r| {
            Some((
                r.get("duration_minutes")?.as_i64()?,
                r.get("amount")?.as_i64()?,
                r.get("currency")?.as_str()?.to_string(),
            ))
        })
        .filter(|(d, _, _)| *d > 0)
        .collect();
    if let Some((_, a, c)) = rates.iter().find(|(d, _, _)| *d == minutes) {
        return Some((*a, c.clone()));
    }
    let base = rates
        .iter()
        .filter(|(d, _, _)| *d < minutes)
        .max_by_key(|(d, _, _)| *d)
        .or_else(|| rates.iter().min_by_key(|(d, _, _)| *d))?;
    Some(((base.1 as i128 * minutes as i128 / base.0 as i128) as i64, base.2.clone()))
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(|w| w.to_lowercase()).collect()
}

/// One candidate's score (0 to 1) and reasons, without the availability part.
pub fn score(m: &Model, stats: Option<&ModelStats>, w: &Wants) -> (f64, Vec<String>) {
    let mut reasons = Vec::new();
    // Location: the same place, the same town, elsewhere.
    let location = match (&w.location, &m.base_location) {
        (None, _) => 0.5,
        (Some(_), None) => 0.3,
        (Some(want), Some(base)) => {
            let (a, b) = (words(want), words(base));
            if a == b {
                reasons.push(format!("based in {base}"));
                1.0
            } else if !a.is_empty() && a.first() == b.first() {
                reasons.push(format!("near {want} (based in {base})"));
                0.7
            } else {
                reasons.push(format!("based in {base}, not {want}"));
                0.0
            }
        }
    };
    // The model the client asked for.
    let wanted = match w.model_id {
        Some(id) if id == m.id => {
            reasons.push("the model the client asked for".to_string());
            1.0
        }
        Some(_) => 0.0,
        None => 0.5,
    };
    // Languages and other preferences (compared with her attributes).
    let langs: Vec<String> = m
        .languages
        .0
        .as_array()
        .map(|a| a.iter().filter_map(|l| l.as_str()).map(str::to_lowercase).collect())
        .unwrap_or_default();
    let mut parts: Vec<f64> = Vec::new();
    let wanted_langs: Vec<String> = match w.preferences.get("languages").or_else(|| w.preferences.get("language")) {
        Some(Value::Array(a)) => a.iter().filter_map(|l| l.as_str()).map(str::to_lowercase).collect(),
        Some(Value::String(s)) => vec![s.to_lowercase()],
        _ => vec![],
    };
    if !wanted_langs.is_empty() {
        let spoken: Vec<&String> = wanted_langs.iter().filter(|l| langs.contains(l)).collect();
        if spoken.is_empty() {
            reasons.push(format!("does not speak {}", wanted_langs.join(", ")));
        } else {
            reasons.push(format!("speaks {}", spoken.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")));
        }
        parts.push(spoken.len() as f64 / wanted_langs.len() as f64);
    }
    if let Some(prefs) = w.preferences.as_object() {
        for (k, v) in prefs.iter().filter(|(k, _)| !matches!(k.as_str(), "languages" | "language")) {
            let hit = m.attributes.0.get(k).is_some_and(|a| a == v);
            if hit {
                reasons.push(format!("matches {k}: {}", v.as_str().map(String::from).unwrap_or_else(|| v.to_string())));
            }
            parts.push(if hit { 1.0 } else { 0.0 });
        }
    }
    let preferences = if parts.is_empty() { 0.5 } else { parts.iter().sum::<f64>() / parts.len() as f64 };
    // Budget against her rate for the duration.
    let budget = match (rate_for(&m.rates.0, w.duration_minutes), &w.budget) {
        (None, _) => {
            reasons.push(format!("no rate for {} min", w.duration_minutes));
            0.3
        }
        (Some((price, cur)), None) => {
            reasons.push(format!("rate {}", money(price, &cur)));
            0.5
        }
        (Some((price, cur)), Some((budget, bcur))) if &cur != bcur => {
            reasons.push(format!("rate {} (budget in {bcur})", money(price, &cur)));
            0.5
        }
        (Some((price, cur)), Some((budget, _))) => {
            if price <= *budget {
                reasons.push(format!("rate {} within budget {}", money(price, &cur), money(*budget, &cur)));
                1.0
            } else {
                reasons.push(format!("rate {} over budget {}", money(price, &cur), money(*budget, &cur)));
                (*budget as f64 / price as f64).clamp(0.0, 1.0) * 0.5
            }
        }
    };
    // Reliability: completed against no-shows in her past bookings.
    let (completed, no_shows) =
        stats.map(|s| (s.completed_count, (s.bookings_count - s.completed_count).max(0))).unwrap_or((0, 0));
    let past = completed + no_shows;
    let reliability = if past == 0 {
        reasons.push("no past bookings".to_string());
        0.5
    } else {
        let rate = completed as f64 / past as f64;
        reasons.push(format!(
            "completed {completed} of {past} past bookings ({:.0}% no-shows)",
            no_shows as f64 * 100.0 / past as f64
        ));
        rate
    };
    let w8 = WEIGHTS;
    let total = location * w8.location
        + wanted * w8.wanted
        + preferences * w8.preferences
        + budget * w8.budget
        + reliability * w8.reliability;
    ((total * 100.0).round() / 100.0, reasons)
}

/// Ranks the models for inquiry `id` (`inquiries:read` and `models:read`).
pub async fn match_inquiry(db: &Db, ctx: &Ctx, id: Uuid) -> DomainResult<MatchResult> {
    authorize(db, ctx, Permission::InquiriesRead, "inquiry").await?;
    authorize(db, ctx, Permission::ModelsRead, "model").await?;
    let mut h = db.acquire().await?;
    let mut conn = h.conn();
    let inquiry = crate::commands::inquiries::load(&mut conn, id).await?;
    let (Some(start), Some(minutes)) = (inquiry.requested_start, inquiry.duration_minutes) else {
        return Err(DomainError::GuardFailed {
            guard: "inquiry_has_time",
            message: "the inquiry needs requested_start and duration_minutes to be matched".into(),
        });
    };
    let window = Interval::new(start, start + Duration::minutes(minutes));
    let buffer = availability::buffer(db.settings());
    let agency: Tz = db.settings().timezone.parse().unwrap_or(chrono_tz::Europe::London);
    let models = q_all!(&mut conn, Model, "SELECT * FROM models ORDER BY name, id")?;
    let stats: HashMap<Uuid, ModelStats> =
        q_all!(&mut conn, ModelStats, "SELECT * FROM model_stats")?.into_iter().map(|s| (s.model_id, s)).collect();
    let times: HashMap<Uuid, ModelTime> =
        availability::load_times(&mut conn, None, window, buffer).await?.into_iter().map(|t| (t.model_id, t)).collect();
    drop(h);
    let wants = Wants::of(&inquiry, minutes);
    let mut candidates = Vec::new();
    let mut excluded = Vec::new();
    for m in models {
        let Some(time) = times.get(&m.id).filter(|_| m.status == "active") else {
            excluded.push(Excluded {
                model_id: m.id,
                name: m.name.clone(),
                reason: format!("{} (not bookable)", m.status),
            });
            continue;
        };
        let free = time.free(window, buffer, None);
        if !free.iter().any(|f| f.contains(&window)) {
            excluded.push(Excluded {
                model_id: m.id,
                name: m.name.clone(),
                reason: time.why_not(window, buffer, None, &agency),
            });
            continue;
        }
        let (score, mut reasons) = score(&m, stats.get(&m.id), &wants);
        let tz = time.tz(&agency);
        let mut first = vec![format!("free {}", availability::span(&tz, window))];
        if time.rules.is_none() {
            first.push("no availability set up (unrestricted)".to_string());
        }
        first.append(&mut reasons);
        candidates.push(Candidate { model_id: m.id, name: m.name, score, reasons: first });
    }
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.name.cmp(&b.name)));
    Ok(MatchResult { inquiry_id: id, window, candidates, excluded })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sqlx::types::Json;

    fn model(loc: &str, langs: &[&str], hour: i64) -> Model {
        Model {
            id: Uuid::now_v7(),
            name: "M".into(),
            status: "active".into(),
            base_location: Some(loc.into()),
            rates: Json(json!([{"duration_minutes": 60, "amount": hour, "currency": "GBP"}])),
            languages: Json(json!(langs)),
            attributes: Json(json!({"hair": "dark"})),
            profile_text: None,
            seo_slug: None,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            version: 1,
        }
    }

    #[test]
    fn rates_for_a_duration() {
        let r = json!([{"duration_minutes": 60, "amount": 25000, "currency": "GBP"}, {"duration_minutes": 120, "amount": 45000, "currency": "GBP"}]);
        assert_eq!(rate_for(&r, 120), Some((45000, "GBP".into())));
        assert_eq!(rate_for(&r, 180), Some((67500, "GBP".into())));
        assert_eq!(rate_for(&r, 30), Some((12500, "GBP".into())));
        assert_eq!(rate_for(&json!([]), 60), None);
        assert_eq!(money(30000, "GBP"), "£300");
        assert_eq!(money(4550, "EUR"), "€45.50");
    }

    #[test]
    fn a_better_fit_scores_higher_with_reasons() {
        let near = model("London W1", &["en", "ru"], 15000);
        let far = model("Manchester", &["de"], 30000);
        let w = Wants {
            location: Some("London W1".into()),
            model_id: Some(near.id),
            preferences: json!({"languages": ["en"], "hair": "dark"}),
            budget: Some((40000, "GBP".into())),
            duration_minutes: 120,
        };
        let (a, ra) = score(&near, None, &w);
        let (b, rb) = score(&far, None, &w);
        assert!(a > b, "{a} {b}");
        assert!(ra.contains(&"speaks en".to_string()), "{ra:?}");
        assert!(ra.contains(&"rate £300 within budget £400".to_string()), "{ra:?}");
        assert!(ra.contains(&"based in London W1".to_string()), "{ra:?}");
        assert!(rb.iter().any(|r| r.contains("over budget")), "{rb:?}");
        assert!((0.0..=1.0).contains(&a) && (0.0..=1.0).contains(&b));
    }
}
