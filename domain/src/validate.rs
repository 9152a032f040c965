//! The bounds of every value a command accepts, in one place: text without NUL and within its
//! length, times within a sane window, money in a known currency and within bounds. The API
//! shows the same lengths in the OpenAPI document (`maxLength`), but the commands enforce them,
//! since workers, rules and the seed call the same commands.
//!
//! | what | bound |
//! | --- | --- |
//! | any text | no NUL character (`\u0000`): PostgreSQL refuses it, SQLite would keep it |
//! | a text field | at most [`LIMITS`] characters for its name, else [`DEFAULT_MAX_CHARS`] |
//! | a JSON object key | at most [`MAX_KEY_CHARS`] characters |
//! | a time (start, due date, proposal) | from [`MIN_TIME`] (2000-01-01) to before [`MAX_TIME`] (2100-01-01), UTC |
//! | an amount | 0 to [`MAX_AMOUNT`] minor units (1,000,000.00 in a two-decimal currency) |
//! | a currency | an ISO 4217 code ([`ISO_4217`]) the agency accepts (`VIREL_CURRENCIES`, default GBP,EUR,USD) |

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::error::{DomainError, DomainResult};

/// The longest text of each named field, in characters (Unicode scalar values, as JSON
/// Schema's `maxLength` counts). A field in a nested object is named by its path without
/// indices (`client.name`, `rates.currency`); a list's items by the list's name (`tags`).
pub const LIMITS: &[(&str, usize)] = &[
    ("name", 200),
    ("client.name", 200),
    ("email", 254),
    ("client.email", 254),
    ("phone", 32),
    ("client.phone", 32),
    ("telegram", 64),
    ("client.telegram", 64),
    ("preferred_channel", 16),
    ("client.preferred_channel", 16),
    ("notes", 10_000),
    ("text", 10_000),
    ("profile_text", 10_000),
    ("description", 10_000),
    ("location", 500),
    ("base_location", 200),
    ("title", 500),
    ("reason", 2_000),
    ("resolution", 2_000),
    ("source", 32),
    ("status", 32),
    ("type", 64),
    ("kind", 64),
    ("trigger", 64),
    ("priority", 16),
    ("severity", 16),
    ("subject_type", 32),
    ("role", 32),
    ("password", 256),
    ("seo_slug", 80),
    ("url", 2048),
    ("languages", 35),
    ("tags", 50),
    ("currency", 3),
    ("price.currency", 3),
    ("deposit.currency", 3),
    ("budget.currency", 3),
    ("rates.currency", 3),
];

/// The limit of a text field not named in [`LIMITS`] (values inside free-form JSON objects).
pub const DEFAULT_MAX_CHARS: usize = 10_000;
/// The longest key of a free-form JSON object (`preferences`, `attributes`).
pub const MAX_KEY_CHARS: usize = 200;
/// The most items of a list of texts (`tags`, `languages`).
pub const MAX_ITEMS: usize = 50;

/// The largest amount, in minor units: 1,000,000.00 in a two-decimal currency.
pub const MAX_AMOUNT: i64 = 100_000_000;

/// The earliest time accepted: 2000-01-01T00:00:00Z.
pub fn min_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single().unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The first time no longer accepted: 2100-01-01T00:00:00Z.
pub fn max_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).single().unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The accepted window as text, for documentation and messages.
pub const MIN_TIME: &str = "2000-01-01T00:00:00Z";
pub const MAX_TIME: &str = "2100-01-01T00:00:00Z";

/// ISO 4217 active currency codes (2024), without the funds, metals and testing codes (`XXX`,
/// `XTS`, `XAU`, ...): money here is always in a currency someone can pay in.
pub const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD", "BIF",
    "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CLP", "CNY", "COP", "CRC",
    "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS",
    "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD",
    "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL",
    "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD",
    "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD",
    "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP",
    "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VES",
    "VND", "VUV", "WST", "XAF", "XCD", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// The agency's accepted currencies when `VIREL_CURRENCIES` is not set.
pub const DEFAULT_CURRENCIES: &[&str] = &["GBP", "EUR", "USD"];

/// A refusal naming the field: 422 `validation_failed` with `details.field`.
pub fn refuse(field: &str, message: impl Into<String>) -> DomainError {
    DomainError::InvalidField { field: field.to_string(), message: message.into() }
}

/// The limit of a field, by its path without indices.
pub fn max_chars(field: &str) -> usize {
    LIMITS.iter().find(|(f, _)| *f == field).map(|(_, n)| *n).unwrap_or(DEFAULT_MAX_CHARS)
}

/// One text value: no NUL, and within the limit of `field` (by [`LIMITS`]).
pub fn text(field: &str, value: &str) -> DomainResult<()> {
    text_max(field, value, max_chars(field))
}

/// One text value within an explicit limit.
pub fn text_max(field: &str, value: &str, max: usize) -> DomainResult<()> {
    if value.contains('\0') {
        return Err(refuse(field, format!("{field} must not contain a NUL character")));
    }
    if value.chars().nth(max).is_some() {
        return Err(refuse(field, format!("{field} must be at most {max} characters")));
    }
    Ok(())
}

/// An optional text value.
pub fn opt_text(field: &str, value: Option<&str>) -> DomainResult<()> {
    value.map_or(Ok(()), |v| text(field, v))
}

/// Every text in a command's input, however deep (nested objects, lists, free-form JSON):
/// no NUL anywhere (keys included), each within its field's limit, lists of at most
/// [`MAX_ITEMS`] texts. The one check every command applies to what it was given.
pub fn input<T: Serialize>(value: &T) -> DomainResult<()> {
    let v = serde_json::to_value(value).map_err(|e| DomainError::Internal(format!("input not serialisable: {e}")))?;
    walk(&v, "", "", 0)
}

/// `path` names the value for messages (`rates[1].currency`); `key` is the path without
/// indices, for the limits table; `depth` stops a pathological nesting from recursing deep.
fn walk(v: &Value, path: &str, key: &str, depth: usize) -> DomainResult<()> {
    let field = if path.is_empty() { "body" } else { path };
    if depth > 64 {
        return Err(refuse(field, format!("{field} is nested too deeply")));
    }
    match v {
        Value::String(s) => text_max(field, s, max_chars(key)),
        Value::Array(items) => {
            if items.iter().all(Value::is_string) && items.len() > MAX_ITEMS && LIMITS.iter().any(|(f, _)| *f == key) {
                return Err(refuse(field, format!("{field} must have at most {MAX_ITEMS} items")));
            }
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{path}[{i}]"), key, depth + 1)?;
            }
            Ok(())
        }
        Value::Object(map) => {
            for (k, item) in map {
                let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                let child_key = if key.is_empty() { k.clone() } else { format!("{key}.{k}") };
                if k.contains('\0') {
                    return Err(refuse(field, format!("{field} has a key with a NUL character")));
                }
                if k.chars().nth(MAX_KEY_CHARS).is_some() {
                    return Err(refuse(field, format!("{field} has a key longer than {MAX_KEY_CHARS} characters")));
                }
                walk(item, &child, &child_key, depth + 1)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A time within the accepted window.
pub fn time(field: &str, t: DateTime<Utc>) -> DomainResult<()> {
    if t < min_time() || t >= max_time() {
        return Err(refuse(field, format!("{field} must be from {MIN_TIME} to before {MAX_TIME}")));
    }
    Ok(())
}

pub fn opt_time(field: &str, t: Option<DateTime<Utc>>) -> DomainResult<()> {
    t.map_or(Ok(()), |t| time(field, t))
}

/// An amount in minor units within 0..=[`MAX_AMOUNT`].
pub fn amount(field: &str, amount: i64) -> DomainResult<()> {
    if amount < 0 {
        return Err(refuse(field, format!("{field} must not be negative")));
    }
    if amount > MAX_AMOUNT {
        return Err(refuse(field, format!("{field} must be at most {MAX_AMOUNT} minor units")));
    }
    Ok(())
}

/// An ISO 4217 code among the agency's accepted ones (an empty list accepts every ISO code).
pub fn currency(field: &str, code: &str, accepted: &[String]) -> DomainResult<()> {
    if !ISO_4217.contains(&code) {
        return Err(refuse(field, format!("{field} must be an ISO 4217 code such as GBP")));
    }
    if !accepted.is_empty() && !accepted.iter().any(|a| a == code) {
        return Err(refuse(field, format!("{field} must be one of the agency's currencies: {}", accepted.join(", "))));
    }
    Ok(())
}

/// Parses the accepted-currencies setting (`GBP,EUR,USD`): each an ISO 4217 code.
pub fn parse_currencies(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for c in list.split(',').map(|c| c.trim().to_ascii_uppercase()).filter(|c| !c.is_empty()) {
        if !ISO_4217.contains(&c.as_str()) {
            return Err(format!("{c:?} is not an ISO 4217 currency code"));
        }
        if !out.contains(&c) {
            out.push(c);
        }
    }
    if out.is_empty() {
        return Err("at least one currency is required".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(e: DomainError) -> String {
        match e {
            DomainError::InvalidField { field, .. } => field,
            other => panic!("not a field error: {other:?}"),
        }
    }

    #[test]
    fn nul_anywhere_is_refused_naming_the_field() {
        for (v, field) in [
            (json!({"name": "a\u{0}b"}), "name"),
            (json!({"client": {"name": "x", "notes": "\u{0}"}}), "client.notes"),
            (json!({"rates": [{"currency": "GB\u{0}"}]}), "rates[0].currency"),
            (json!({"tags": ["ok", "b\u{0}d"]}), "tags[1]"),
            (json!({"preferences": {"k\u{0}": 1}}), "preferences"),
            (json!({"preferences": {"deep": [{"x": "\u{0}"}]}}), "preferences.deep[0].x"),
        ] {
            assert_eq!(field_of(input(&v).unwrap_err()), field, "{v}");
        }
        assert!(input(&json!({"name": "fine", "preferences": {"a": ["b"]}})).is_ok());
    }

    #[test]
    fn lengths_come_from_the_table() {
        assert!(input(&json!({"name": "x".repeat(200)})).is_ok());
        assert_eq!(field_of(input(&json!({"name": "x".repeat(201)})).unwrap_err()), "name");
        assert_eq!(field_of(input(&json!({"client": {"name": "é".repeat(201)}})).unwrap_err()), "client.name");
        assert!(input(&json!({"notes": "x".repeat(10_000)})).is_ok());
        assert_eq!(field_of(input(&json!({"notes": "x".repeat(10_001)})).unwrap_err()), "notes");
        assert_eq!(field_of(input(&json!({"tags": vec!["t"; 51]})).unwrap_err()), "tags");
        assert_eq!(field_of(input(&json!({"tags": ["x".repeat(51)]})).unwrap_err()), "tags[0]");
    }

    #[test]
    fn times_amounts_and_currencies_have_bounds() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert!(time("start_at", t("2000-01-01T00:00:00Z")).is_ok());
        assert!(time("start_at", t("2099-12-31T23:59:59Z")).is_ok());
        assert!(time("start_at", t("2100-01-01T00:00:00Z")).is_err());
        assert!(time("start_at", t("9999-12-31T23:59:59Z")).is_err());
        assert!(time("start_at", t("0001-01-01T00:00:00Z")).is_err());
        assert!(amount("price.amount", 0).is_ok());
        assert!(amount("price.amount", MAX_AMOUNT).is_ok());
        assert!(amount("price.amount", MAX_AMOUNT + 1).is_err());
        assert!(amount("price.amount", i64::MAX).is_err());
        assert!(amount("price.amount", -1).is_err());
        let accepted = parse_currencies("GBP, eur,USD").unwrap();
        assert_eq!(accepted, ["GBP", "EUR", "USD"]);
        assert!(currency("price.currency", "GBP", &accepted).is_ok());
        assert!(currency("price.currency", "XXX", &accepted).is_err());
        assert!(currency("price.currency", "JPY", &accepted).is_err());
        assert!(currency("price.currency", "JPY", &[]).is_ok());
        assert!(parse_currencies("GBP,XXX").is_err());
        assert!(parse_currencies(" , ").is_err());
    }
}
