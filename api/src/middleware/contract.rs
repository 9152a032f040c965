//! The OpenAPI document enforced at the edge, for what poem-openapi's own parsing lets
//! through: it turns `1` and `true` into strings, ignores unknown properties, and knows nothing
//! of the enumerations and patterns the document adds (see `crate::openapi`). Each JSON body
//! is validated against its operation's schema (compiled once, with `jsonschema`) and refused
//! with 422 naming the field; a request without a credential to a secured operation is left
//! to the handler's 401. A 405 lists the path's methods in `Allow` (RFC 9110 §15.5.6), which
//! the router does not know.

use std::collections::HashMap;
use std::sync::Arc;

use jsonschema::Validator;
use poem::http::{HeaderValue, Method, StatusCode, header::ALLOW};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use serde_json::{Map, Value, json};

use crate::error::ErrorBody;

struct Route {
    /// `/api/v1/bookings/{id}` as segments; a `{...}` segment matches any one segment.
    segments: Vec<String>,
    /// The `Allow` value.
    allow: String,
    /// The body schema of each method that takes a JSON body, and whether it needs a credential.
    bodies: HashMap<String, (Arc<Validator>, bool)>,
}

/// The document's paths, methods and body schemas.
#[derive(Clone, Default)]
pub struct Contract {
    routes: Arc<Vec<Route>>,
}

impl Contract {
    /// From the published document (its `servers[0].url` prefixes the paths). A schema that
    /// does not compile is skipped (and logged): the handler's own parsing still applies.
    pub fn from_document(doc: &str) -> Contract {
        let doc: Value = serde_json::from_str(doc).unwrap_or_default();
        let base = doc["servers"][0]["url"].as_str().unwrap_or_default().trim_end_matches('/').to_string();
        let mut components = doc.pointer("/components/schemas").cloned().unwrap_or_else(|| json!({}));
        to_json_schema(&mut components);
        let global_security = doc.get("security").and_then(|s| s.as_array()).is_some_and(|s| !s.is_empty());
        let mut routes = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            let mut methods = Vec::new();
            let mut bodies = HashMap::new();
            for (method, op) in item.as_object().into_iter().flatten() {
                let method = method.to_ascii_uppercase();
                methods.push(method.clone());
                let secured = op.get("security").and_then(|s| s.as_array()).map_or(global_security, |s| !s.is_empty());
                let schema = op
                    .pointer("/requestBody/content")
                    .and_then(|c| c.as_object())
                    .and_then(|c| c.iter().find(|(media, _)| media.contains("json")))
                    .and_then(|(_, m)| m.get("schema"));
                if let Some(schema) = schema {
                    let mut schema = schema.clone();
                    to_json_schema(&mut schema);
                    let root = json!({"allOf": [schema], "components": {"schemas": components.clone()}});
                    // The `regex` engine: linear time, so no pattern can be made to backtrack
                    // for ever on a hostile body (fancy-regex, the default, backtracks).
                    let built = jsonschema::options()
                        .with_draft(jsonschema::Draft::Draft7)
                        .with_pattern_options(jsonschema::PatternOptions::regex())
                        .build(&root);
                    match built {
                        Ok(v) => {
                            bodies.insert(method.clone(), (Arc::new(v), secured));
                        }
                        Err(e) => tracing::warn!(%path, %method, error = %e, "body schema not enforced"),
                    }
                }
            }
            if methods.iter().any(|m| m == "GET") {
                methods.push("HEAD".into());
            }
            methods.sort();
            let segments = format!("{base}{path}").split('/').map(String::from).collect();
            routes.push(Route { segments, allow: methods.join(", "), bodies });
        }
        Contract { routes: Arc::new(routes) }
    }

    fn route(&self, path: &str) -> Option<&Route> {
        let segments: Vec<&str> = path.split('/').collect();
        self.routes
            .iter()
            .filter(|r| r.segments.len() == segments.len())
            .find(|r| r.segments.iter().zip(&segments).all(|(t, s)| t.starts_with('{') || t == s))
    }

    /// The `Allow` value for a request path.
    pub fn allowed(&self, path: &str) -> Option<&str> {
        self.route(path).map(|r| r.allow.as_str())
    }

    /// The first way `body` breaks the schema of `method path`, as (field, message).
    pub fn check_body(&self, method: &Method, path: &str, body: &Value) -> Option<(String, String)> {
        let (validator, _) = self.route(path)?.bodies.get(method.as_str())?;
        let e = validator.iter_errors(body).next()?;
        let pointer = e.instance_path().as_str().to_string();
        let field = pointer.trim_start_matches('/').replace('/', ".");
        let field = if field.is_empty() { "body".to_string() } else { field };
        // Masked: the message names the rule, never echoes the value (it may be personal).
        Some((field.clone(), format!("{field}: {}", e.masked())))
    }

    fn secured(&self, method: &Method, path: &str) -> bool {
        self.route(path).and_then(|r| r.bodies.get(method.as_str())).is_some_and(|(_, s)| *s)
    }
}

/// OpenAPI 3.0's schema dialect into JSON Schema (draft 7): `nullable` becomes a `null` type
/// (or an `anyOf` with `null` around a reference), an enumeration of a nullable value admits
/// `null`.
fn to_json_schema(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for child in o.values_mut() {
                to_json_schema(child);
            }
            if o.remove("nullable") == Some(Value::Bool(true)) {
                if o.contains_key("allOf") {
                    o.remove("type");
                    let inner: Map<String, Value> = std::mem::take(o);
                    o.insert("anyOf".into(), json!([{"type": "null"}, Value::Object(inner)]));
                } else if let Some(Value::String(t)) = o.get("type").cloned() {
                    o.insert("type".into(), json!([t, "null"]));
                    if let Some(Value::Array(values)) = o.get_mut("enum")
                        && !values.contains(&Value::Null)
                    {
                        values.push(Value::Null);
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(to_json_schema),
        _ => {}
    }
}

/// The middleware (see the module's comment). Runs inside the body cap, so the body it reads
/// is bounded.
pub struct Enforce(pub Contract);

impl<E: Endpoint> Middleware<E> for Enforce {
    type Output = EnforceEndpoint<E>;

    fn transform(&self, inner: E) -> EnforceEndpoint<E> {
        EnforceEndpoint { inner, contract: self.0.clone() }
    }
}

pub struct EnforceEndpoint<E> {
    inner: E,
    contract: Contract,
}

impl<E: Endpoint> Endpoint for EnforceEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let path = req.uri().path().to_string();
        let is_json = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.to_ascii_lowercase().contains("json"));
        let has_credential = req.headers().contains_key("authorization") || req.headers().contains_key("cookie");
        let method = req.method().clone();
        if is_json && (has_credential || !self.contract.secured(&method, &path)) {
            let body = req.take_body().into_bytes().await?;
            // A body that is not JSON at all is left to the handler's own 400.
            if let Ok(value) = serde_json::from_slice::<Value>(&body)
                && let Some((field, message)) = self.contract.check_body(&method, &path, &value)
            {
                let body = ErrorBody::new("validation_failed", message, json!({"field": field}));
                return Ok(Response::builder()
                    .status(StatusCode::UNPROCESSABLE_ENTITY)
                    .content_type("application/json; charset=utf-8")
                    .body(serde_json::to_vec(&body).unwrap_or_default()));
            }
            req.set_body(body);
        }
        let mut resp = match self.inner.call(req).await {
            Ok(r) => r.into_response(),
            // The router's 405 is an error until rendered; render it here to add `Allow`.
            Err(e) if e.status() == StatusCode::METHOD_NOT_ALLOWED => crate::error::render_error(e).await,
            Err(e) => return Err(e),
        };
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED
            && !resp.headers().contains_key(ALLOW)
            && let Some(v) = self.contract.allowed(&path).and_then(|m| HeaderValue::from_str(m).ok())
        {
            resp.headers_mut().insert(ALLOW, v);
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r##"{"servers":[{"url":"/api/v1"}],
        "components":{"schemas":{"In":{"type":"object","additionalProperties":false,"required":["s"],
            "properties":{"s":{"type":"string","enum":["a","b"]},"n":{"type":"string","nullable":true},
            "r":{"type":"object","nullable":true,"allOf":[{"$ref":"#/components/schemas/Sub"}]}}},
            "Sub":{"type":"object","required":["x"],"properties":{"x":{"type":"integer"}}}}},
        "paths":{"/things/{id}":{"get":{},"post":{"security":[{"Auth":[]}],"requestBody":{"content":{"application/json; charset=utf-8":{"schema":{"$ref":"#/components/schemas/In"}}}}}},
                 "/things":{"get":{},"delete":{}}}}"##;

    #[test]
    fn templates_match_one_segment_and_list_methods() {
        let c = Contract::from_document(DOC);
        assert_eq!(c.allowed("/api/v1/things/42"), Some("GET, HEAD, POST"));
        assert_eq!(c.allowed("/api/v1/things"), Some("DELETE, GET, HEAD"));
        assert_eq!(c.allowed("/api/v1/nothing"), None);
    }

    #[test]
    fn bodies_are_held_to_the_schema() {
        let c = Contract::from_document(DOC);
        let check = |v: Value| c.check_body(&Method::POST, "/api/v1/things/1", &v).map(|(f, _)| f);
        assert_eq!(check(json!({"s": "a"})), None);
        assert_eq!(check(json!({"s": "a", "n": null, "r": null})), None);
        assert_eq!(check(json!({"s": "a", "r": {"x": 1}})), None);
        assert_eq!(check(json!({"s": "c"})).as_deref(), Some("s"));
        assert_eq!(check(json!({"s": true})).as_deref(), Some("s"));
        assert_eq!(check(json!({"s": "a", "r": {"x": "1"}})).as_deref(), Some("r"));
        assert_eq!(check(json!({"s": "a", "extra": 1})).as_deref(), Some("body"));
        assert_eq!(check(json!({})).as_deref(), Some("body"));
        assert!(c.secured(&Method::POST, "/api/v1/things/1"));
    }

    #[test]
    fn patterns_cannot_be_made_to_backtrack() {
        // A megabyte-long near miss of a nested quantifier: instant with a linear engine, years
        // with a backtracking one.
        let doc = DOC.replace(
            r#""n":{"type":"string","nullable":true}"#,
            r#""n":{"type":"string","pattern":"^([ +()-]*([0-9][ +()-]*){6,15})?$"}"#,
        );
        let c = Contract::from_document(&doc);
        let near_miss = format!("{}x", "1 ".repeat(500_000));
        let err = c.check_body(&Method::POST, "/api/v1/things/1", &json!({"s": "a", "n": near_miss}));
        assert_eq!(err.map(|(f, _)| f).as_deref(), Some("n"));
    }
}
