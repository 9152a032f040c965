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
    pub fn from_document(doc: &Value) -> Contract {
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
                    // Draft 2019-09: the first that checks `format: uuid` (with `date-time`).
                    let built = jsonschema::options()
                        .with_draft(jsonschema::Draft::Draft201909)
                        .should_validate_formats(true)
                        .should_ignore_unknown_formats(true)
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

    /// The first way `body` breaks the schema of `method path`.
    pub fn check_body(&self, method: &Method, path: &str, body: &Value) -> Option<Refusal> {
        let (validator, _) = self.route(path)?.bodies.get(method.as_str())?;
        refusal(validator, body)
    }
}

/// The first way `body` breaks `validator`'s schema.
fn refusal(validator: &Validator, body: &Value) -> Option<Refusal> {
    let e = validator.iter_errors(body).next()?;
    let e = most_specific(&e);
    let field = field_name(e.instance_path().as_str());
    // Masked: the message names the rule, never echoes the value (it may be personal).
    let message = format!("{field}: {}", e.masked());
    // A body that is not even the right kind of JSON value (an array for an object) is
    // malformed (400); anything else is well-formed but invalid (422), naming the field.
    let malformed = field == "body" && e.kind().keyword() == "type";
    Some(Refusal { field, message, malformed })
}

/// Whether the request carries a credential whose token verifies (the user is not read).
fn plausible_credential(req: &Request) -> bool {
    req.data::<Arc<crate::AppState>>()
        .is_some_and(|state| crate::auth::credential(req).is_some_and(|c| crate::auth::plausible(state, &c)))
}

/// Why a body was refused.
#[derive(Debug)]
pub struct Refusal {
    /// `actions[0].params.due_in_minutes`, as the commands name fields; `body` for the whole.
    pub field: String,
    pub message: String,
    pub malformed: bool,
}

/// A JSON pointer (`/actions/0/params`) as the commands name fields (`actions[0].params`).
fn field_name(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg.replace("~1", "/").replace("~0", "~"));
        }
    }
    if out.is_empty() { "body".into() } else { out }
}

/// "Not valid under any of the schemas" says little: the branch the body went deepest into
/// (then the one with the fewest errors) names the field and the rule it broke.
fn most_specific<'a>(e: &'a jsonschema::ValidationError<'a>) -> &'a jsonschema::ValidationError<'a> {
    use jsonschema::error::ValidationErrorKind::{AnyOf, OneOfNotValid};
    let branches = match e.kind() {
        AnyOf { context } | OneOfNotValid { context } => context,
        _ => return e,
    };
    let depth = |e: &jsonschema::ValidationError<'_>| e.instance_path().as_str().matches('/').count();
    let best = branches
        .iter()
        .filter(|b| !b.is_empty())
        .min_by_key(|b| (std::cmp::Reverse(b.iter().map(depth).max().unwrap_or(0)), b.len()));
    match best.and_then(|b| b.iter().max_by_key(|e| depth(e))) {
        Some(inner) => most_specific(inner),
        None => e,
    }
}

/// OpenAPI 3.0's schema dialect into JSON Schema (2019-09): `nullable` becomes a `null` type
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
        let route = self.contract.route(&path);
        let is_json = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.to_ascii_lowercase().contains("json"));
        // Only a body its operation has a schema for is read here.
        if let Some((validator, secured)) = route.and_then(|r| r.bodies.get(req.method().as_str()))
            && is_json
        {
            let body = req.take_body().into_bytes().await?;
            // A body that is not JSON at all is left to the handler's own 400.
            if let Ok(value) = serde_json::from_slice::<Value>(&body)
                && let Some(r) = refusal(validator, &value)
                // A credential that will not authenticate is the handler's 401, before any
                // word about the body; verified only when there is something to refuse.
                && (!secured || plausible_credential(&req))
            {
                let (status, code) = if r.malformed {
                    (StatusCode::BAD_REQUEST, "bad_request")
                } else {
                    (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
                };
                let body = ErrorBody::new(code, r.message, json!({"field": r.field}));
                return Ok(Response::builder()
                    .status(status)
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
            && let Some(v) = route.and_then(|r| HeaderValue::from_str(&r.allow).ok())
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
        let c = Contract::from_document(&serde_json::from_str(DOC).unwrap());
        assert_eq!(c.allowed("/api/v1/things/42"), Some("GET, HEAD, POST"));
        assert_eq!(c.allowed("/api/v1/things"), Some("DELETE, GET, HEAD"));
        assert_eq!(c.allowed("/api/v1/nothing"), None);
    }

    #[test]
    fn bodies_are_held_to_the_schema() {
        let c = Contract::from_document(&serde_json::from_str(DOC).unwrap());
        let check = |v: Value| c.check_body(&Method::POST, "/api/v1/things/1", &v).map(|r| r.field);
        assert_eq!(check(json!({"s": "a"})), None);
        assert_eq!(check(json!({"s": "a", "n": null, "r": null})), None);
        assert_eq!(check(json!({"s": "a", "r": {"x": 1}})), None);
        assert_eq!(check(json!({"s": "c"})).as_deref(), Some("s"));
        assert_eq!(check(json!({"s": true})).as_deref(), Some("s"));
        assert_eq!(check(json!(["s"])).as_deref(), Some("body"));
        assert!(c.check_body(&Method::POST, "/api/v1/things/1", &json!(["s"])).is_some_and(|r| r.malformed));
        assert!(c.check_body(&Method::POST, "/api/v1/things/1", &json!({"s": 1})).is_some_and(|r| !r.malformed));
        assert_eq!(check(json!({"s": "a", "r": {"x": "1"}})).as_deref(), Some("r.x"));
        assert_eq!(check(json!({"s": "a", "extra": 1})).as_deref(), Some("body"));
        assert_eq!(check(json!({})).as_deref(), Some("body"));
        assert!(c.route("/api/v1/things/1").and_then(|r| r.bodies.get("POST")).is_some_and(|(_, secured)| *secured));
    }

    #[test]
    fn fields_are_named_as_the_commands_name_them() {
        assert_eq!(field_name("/actions/0/params/due_in_minutes"), "actions[0].params.due_in_minutes");
        assert_eq!(field_name("/weekly/2/day"), "weekly[2].day");
        assert_eq!(field_name(""), "body");
    }

    #[test]
    fn patterns_cannot_be_made_to_backtrack() {
        // A megabyte-long near miss of a nested quantifier: instant with a linear engine, years
        // with a backtracking one.
        let doc = DOC.replace(
            r#""n":{"type":"string","nullable":true}"#,
            r#""n":{"type":"string","pattern":"^([ +()-]*([0-9][ +()-]*){6,15})?$"}"#,
        );
        let c = Contract::from_document(&serde_json::from_str(&doc).unwrap());
        let near_miss = format!("{}x", "1 ".repeat(500_000));
        let err = c.check_body(&Method::POST, "/api/v1/things/1", &json!({"s": "a", "n": near_miss}));
        assert_eq!(err.map(|r| r.field).as_deref(), Some("n"));
    }
}
