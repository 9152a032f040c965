//! No NUL character reaches SQL from a request: PostgreSQL refuses it in text and JSON (a 500)
//! while SQLite would store it. The domain commands refuse it in every field they take; this
//! guard covers the rest of the edge (query parameters, path segments, free-form JSON of
//! rules, templates and policies, forms) before any handler runs: 422 `validation_failed`
//! naming the field.

use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use serde_json::Value;

use crate::MAX_BODY_BYTES;
use crate::error::{ErrorBody, json_response};

fn refuse(field: &str) -> Response {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorBody::new(
            "validation_failed",
            format!("{field} must not contain a NUL character"),
            serde_json::json!({"field": field}),
        ),
    )
}

/// Percent-decodes `s` (`+` left as is) and tells whether a NUL byte is in it.
fn decodes_to_nul(s: &str) -> bool {
    s.as_bytes().windows(3).any(|w| w == b"%00") || s.contains('\0')
}

/// The first query parameter whose name or value holds a NUL. A `cursor` is opaque and
/// decoded into an id before any query (a bad one is a 400), so it is left to that check.
fn nul_in_query(query: &str) -> Option<String> {
    for pair in query.split('&').filter(|p| !p.starts_with("cursor=")) {
        if decodes_to_nul(pair) {
            let name = pair.split('=').next().unwrap_or("query");
            let name = if decodes_to_nul(name) { "query".to_string() } else { name.to_string() };
            return Some(name);
        }
    }
    None
}

/// Whether JSON text has a `\u0000` escape outside an escaped backslash: a cheap scan that
/// parses nothing, so ordinary bodies pay next to nothing.
fn json_has_nul_escape(body: &[u8]) -> bool {
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'\\' {
            if body.get(i + 1) == Some(&b'u') && body.get(i + 2..i + 6) == Some(b"0000") {
                return true;
            }
            i += 2; // skip the escaped character (a backslash too)
        } else {
            i += 1;
        }
    }
    body.contains(&0)
}

/// The path of the first string or key holding a NUL (`client.name`, `actions[0].params.title`).
fn nul_path(v: &Value, path: &str) -> Option<String> {
    let here = || if path.is_empty() { "body".to_string() } else { path.to_string() };
    match v {
        Value::String(s) if s.contains('\0') => Some(here()),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| nul_path(item, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            if k.contains('\0') { Some(here()) } else { nul_path(item, &child) }
        }),
        _ => None,
    }
}

pub async fn input_guard<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    if decodes_to_nul(req.uri().path()) {
        return Ok(refuse("path"));
    }
    if let Some(field) = req.uri().query().and_then(nul_in_query) {
        return Ok(refuse(&field));
    }
    // Bodies of writes, however framed (an HTTP/2 body has no length header).
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(next.call(req).await?.into_response());
    }
    let content_type =
        req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    // Past the cap the read fails, and `body_limit` answers 413.
    let body = req.take_body().into_bytes_limit(MAX_BODY_BYTES).await?;
    if content_type.contains("json") {
        if json_has_nul_escape(&body) {
            // Rare: find which field, to name it. A body that is not JSON is left to the
            // handler's own 400.
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                if let Some(field) = nul_path(&v, "") {
                    return Ok(refuse(&field));
                }
            } else if body.contains(&0) {
                return Ok(refuse("body"));
            }
        }
    } else if content_type.contains("x-www-form-urlencoded") {
        if let Ok(text) = std::str::from_utf8(&body)
            && let Some(field) = nul_in_query(text)
        {
            return Ok(refuse(&field));
        }
    } else if body.contains(&0) && !content_type.starts_with("application/octet-stream") {
        return Ok(refuse("body"));
    }
    req.set_body(body);
    Ok(next.call(req).await?.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nul_escapes_but_not_escaped_backslashes() {
        assert!(json_has_nul_escape(br#"{"name": "a\u0000b"}"#));
        assert!(json_has_nul_escape(br#"{"name": "\\\u0000"}"#));
        assert!(!json_has_nul_escape(br#"{"name": "\\u0000"}"#));
        assert!(!json_has_nul_escape(br#"{"name": "plain", "n": 0}"#));
        let v: Value = serde_json::from_str(r#"{"actions": [{"params": {"title": "x\u0000"}}]}"#).unwrap();
        assert_eq!(nul_path(&v, "").as_deref(), Some("actions[0].params.title"));
    }

    #[test]
    fn finds_nul_in_query_parameters() {
        assert_eq!(nul_in_query("q=ab%00cd&limit=5").as_deref(), Some("q"));
        assert_eq!(nul_in_query("limit=5&status=%00").as_deref(), Some("status"));
        assert_eq!(nul_in_query("q=fine&limit=5"), None);
        assert_eq!(nul_in_query("cursor=%00%01"), None, "an opaque cursor is checked by its decoder (400)");
    }
}
