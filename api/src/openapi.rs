//! The published OpenAPI document: what poem-openapi derives from the handlers, completed
//! with what the derive cannot say.
//!
//! poem-openapi documents each operation's own answers. Around the handlers sit the
//! middlewares (body cap 413, content type 415, NUL and bounds 422, a database blip 503) and
//! the framework's own refusals (400 for a malformed parameter or body); an `Option` field
//! is serialized as `null` but its schema is not marked nullable; public operations carry no
//! `security` at all; and the live feed (`/ws`) is a plain poem route. [`document`] adds
//! those, the OpenAPI links that chain a create to the reads and writes of what it created,
//! the examples of the core bodies, and each operation's permission (`x-permission`, from
//! [`crate::permissions::PERMISSIONS`]). It runs once at start; the answers it documents are tested by the
//! contract fuzzing (`tests/contract/run`) and the authorization matrix.

use serde_json::{Map, Value, json};

use crate::permissions::PERMISSIONS;

/// Operations anyone may call without a token.
const PUBLIC: &[&str] = &["login", "refreshToken", "getHealth"];

const DESCRIPTION: &str = r#"The operations platform of a booking agency: inquiries, bookings, tasks and exceptions
moved through strict state machines, every change audited and emitted as a domain event.

## Authentication
`POST /auth/login` returns a short-lived JWT access token (`Authorization: Bearer ...`) and a
refresh token; `POST /auth/refresh` exchanges the refresh token for new ones (a refresh token
works once: presenting it again revokes every token of that login). Pages on the same origin
may use the `virel_session` cookie instead of the header; cookie-authenticated writes must be
same-origin. Each operation states the permission it checks (`x-permission`, SPEC §1); a
caller without it gets 403, and the attempt is audited. Client contact details are masked
for roles without `clients:pii`.

## Errors
Every refusal has one shape, `{"error": {"code", "message", "details"}}`, with a stable
`code`: `bad_request` (400: malformed parameter or body), `unauthorized` (401), `forbidden`
(403), `not_found` (404), `invalid_transition` (409, `details.allowed` lists the allowed
targets), `booking_overlap`, `model_unavailable` (409, with the nearest free windows),
`version_conflict`, `duplicate`, `guard_failed` (409), `payload_too_large` (413, bodies are
capped at 1 MiB), `unsupported_media_type` (415: bodies are `application/json`),
`validation_failed` (422, `details.field` names the field), `too_many_requests` (429, with
`Retry-After`), `payment_provider_error` (502), `service_unavailable` (503, with
`Retry-After`: a dependency is down and nothing was written), `internal` (500). A method
the path does not have answers 405 with `Allow`.

## Pagination
Lists take `limit` (1 to 200, default 50) and `cursor`; an answer with more items carries
`next_cursor`, to pass as `cursor` for the next page. Newest first unless stated.

## Idempotency
A write may carry `Idempotency-Key` (up to 255 characters): a retry with the same key and
body within 24 hours returns the first answer without doing the work again; the same key
with another body answers 422; a retry while the first is still running answers 409.

## Live updates
`GET /ws` upgrades to a WebSocket that streams the Action Center (see that operation)."#;

/// The published document: poem-openapi's, completed (see the module's comment).
pub fn document(generated: &str) -> String {
    let mut doc: Value = match serde_json::from_str(generated) {
        Ok(v) => v,
        // poem-openapi's own output; if it ever failed to parse, serve it unchanged.
        Err(_) => return generated.to_string(),
    };
    complete(&mut doc);
    serde_json::to_string(&doc).unwrap_or_else(|_| generated.to_string())
}

fn complete(doc: &mut Value) {
    doc["info"]["description"] = json!(DESCRIPTION);
    doc["info"]["license"] = json!({"name": "Proprietary", "url": "https://virel.example/license"});
    doc["info"]["contact"] = json!({"name": "Virel"});
    if let Some(tags) = doc["tags"].as_array_mut() {
        for t in tags {
            if t.get("description").is_none() {
                t["description"] = json!(t["name"]);
            }
        }
    }
    add_schemas(doc);
    nullable_options(doc);
    add_live_feed(doc);
    let permissions: std::collections::HashMap<&str, Option<&str>> = PERMISSIONS.iter().copied().collect();
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, op) in item.iter_mut() {
            let id = op["operationId"].as_str().unwrap_or_default().to_string();
            complete_operation(path, method, &id, op, permissions.get(id.as_str()).copied().flatten());
        }
    }
    add_links(doc);
    add_examples(doc);
}

/// The answers every operation may give besides its own, and its security.
fn complete_operation(path: &str, method: &str, id: &str, op: &mut Value, permission: Option<&str>) {
    let public = PUBLIC.contains(&id);
    if public {
        op["security"] = json!([]);
    } else if op.get("security").is_none() {
        op["security"] = json!([{"Auth": []}]);
    }
    if let Some(p) = permission {
        op["x-permission"] = json!(p);
        let d = op["description"].as_str().unwrap_or_default().to_string();
        let sep = if d.is_empty() { "" } else { "\n\n" };
        op["description"] = json!(format!("{d}{sep}Requires the permission `{p}`."));
    }
    if op.get("summary").is_none() {
        op["summary"] = json!(summary_of(id));
    }
    let has_body = op.get("requestBody").is_some();
    let mut extra: Vec<(&str, &str)> = vec![
        ("400", "Malformed parameter or body."),
        ("422", "Well-formed but invalid input (a NUL character, a value out of bounds); `details.field` names it."),
        ("500", "Internal error; the details are in the server's log."),
        ("503", "A dependency is down; nothing was written. Retry after `Retry-After` seconds."),
    ];
    if !public || id == "logout" {
        extra.push(("401", "Missing, invalid or expired credentials."));
    }
    if permission.is_some() {
        extra.push(("403", "The caller lacks the permission (the attempt is audited)."));
    }
    if path.contains('{') {
        extra.push(("404", "Not found, or not visible to the caller."));
    }
    if has_body {
        extra.push(("413", "The body is larger than 1 MiB."));
        extra.push(("415", "The body is not `application/json`."));
    }
    if method != "get" {
        extra.push(("409", "A conflict with the current state, or the same `Idempotency-Key` still in progress."));
        extra.push(("429", "Too many requests; retry after `Retry-After` seconds."));
    }
    let responses = op["responses"].as_object_mut();
    let Some(responses) = responses else { return };
    for (status, description) in extra {
        responses.entry(status).or_insert_with(|| error_response(description));
    }
    for (status, r) in responses.iter_mut() {
        if matches!(status.as_str(), "429" | "503") {
            r["headers"]["Retry-After"] = json!({
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer", "minimum": 0}
            });
        }
    }
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json; charset=utf-8": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

/// `listBookings` → "List bookings".
fn summary_of(id: &str) -> String {
    let mut out = String::new();
    for (i, c) in id.chars().enumerate() {
        if c.is_uppercase() {
            out.push(' ');
            out.extend(c.to_lowercase());
        } else if i == 0 {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// An `Option` field is serialized as `null` when empty: say so. A property that is not
/// required and has no default is an `Option` (or `MaybeUndefined`) in the handlers, whose
/// parser also takes `null`. A `$ref` cannot carry `nullable` in OpenAPI 3.0, so it is
/// wrapped in `allOf`.
fn nullable_options(doc: &mut Value) {
    let Some(schemas) = doc["components"]["schemas"].as_object_mut() else { return };
    for schema in schemas.values_mut() {
        let required: Vec<String> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default();
        let Some(props) = schema["properties"].as_object_mut() else { continue };
        for (name, p) in props.iter_mut() {
            if required.contains(name) || p.get("default").is_some() {
                continue;
            }
            make_nullable(p);
        }
    }
}

fn make_nullable(p: &mut Value) {
    let Some(obj) = p.as_object_mut() else { return };
    if let Some(r) = obj.remove("$ref") {
        obj.insert("allOf".into(), json!([{"$ref": r}]));
    }
    obj.insert("nullable".into(), json!(true));
}

/// Schemas the completed parts refer to: the live feed's messages.
fn add_schemas(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    schemas["LiveFeedMessage"] = json!({
        "type": "object",
        "description": "A message of the live feed (`GET /ws`), by `type`: `snapshot` (the caller's open \
            items and counts, on connect and after `resync`), `item.upserted` (an item appeared or changed), \
            `item.removed` (it closed or is no longer visible), `resync` (the connection fell behind: ask \
            again by sending `{\"type\":\"resync\"}`), `error` (then the socket closes).",
        "required": ["type"],
        "properties": {
            "type": {"type": "string", "enum": ["snapshot", "item.upserted", "item.removed", "resync", "error"]},
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/ItemOut"}, "description": "snapshot"},
            "counts": {"allOf": [{"$ref": "#/components/schemas/CountsOut"}], "description": "snapshot"},
            "item": {"allOf": [{"$ref": "#/components/schemas/ItemOut"}], "description": "item.upserted; item.removed carries only kind and id"},
            "error": {"allOf": [{"$ref": "#/components/schemas/ErrorInfo"}], "description": "error"}
        }
    });
    schemas["LiveFeedRequest"] = json!({
        "type": "object",
        "description": "What a client sends on the live feed: `{\"token\": \"...\"}` first when it connected \
            without a credential (within 10 seconds), `{\"type\":\"resync\"}` for a fresh snapshot.",
        "properties": {
            "token": {"type": "string", "description": "An access token."},
            "type": {"type": "string", "enum": ["resync"]}
        }
    });
}

/// `GET /ws`, the Action Center's live feed, is a WebSocket upgrade served beside the
/// OpenAPI handlers; it is described here as an operation with its messages.
fn add_live_feed(doc: &mut Value) {
    doc["paths"]["/ws"] = json!({
        "get": {
            "tags": ["ActionCenter"],
            "operationId": "connectLiveFeed",
            "summary": "Connect to the Action Center's live feed (WebSocket)",
            "description": "Upgrades to a WebSocket (`Connection: Upgrade`, `Upgrade: websocket`). \
                Authenticate with the `Authorization` header or the session cookie (the `Origin` must then \
                be Virel's own), or send `{\"token\": \"...\"}` as the first message. The server sends \
                `LiveFeedMessage`s: a `snapshot` at once, then `item.upserted` / `item.removed` as items \
                change; the client may send `LiveFeedRequest`s. The credential is re-checked every 2 \
                seconds: a deactivated user, a changed role or an expired token closes the socket with a \
                reason. A request that is not an upgrade answers 400.",
            "responses": {
                "101": {
                    "description": "Switching to the WebSocket protocol; messages are `LiveFeedMessage` (server) and `LiveFeedRequest` (client).",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LiveFeedMessage"}}}
                }
            },
            "x-websocket": {
                "server-messages": {"$ref": "#/components/schemas/LiveFeedMessage"},
                "client-messages": {"$ref": "#/components/schemas/LiveFeedRequest"}
            }
        }
    });
    let _ = doc["components"]["schemas"]["LiveFeedRequest"].as_object();
}

/// OpenAPI links from each create to the operations on what it created, so a client (and the
/// fuzzer's stateful phase) can follow `POST /bookings` → `GET /bookings/{id}`.
fn add_links(doc: &mut Value) {
    let mut by_id: Map<String, Value> = Map::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for (_, op) in item.as_object().into_iter().flatten() {
                if let Some(id) = op["operationId"].as_str() {
                    by_id.insert(id.to_string(), json!(path));
                }
            }
        }
    }
    let chains: &[(&str, &str, &[&str])] = &[
        ("createInquiry", "id", &["getInquiry", "transitionInquiry", "convertInquiryToBooking", "matchInquiry"]),
        (
            "createBooking",
            "id",
            &[
                "getBooking",
                "transitionBooking",
                "getBookingTimeline",
                "markBookingClientConfirmed",
                "requestBookingDeposit",
            ],
        ),
        ("convertInquiryToBooking", "id", &["getBooking", "transitionBooking", "getBookingTimeline"]),
        ("createTask", "id", &["getTask", "transitionTask", "assignTask"]),
        (
            "createException",
            "id",
            &["getException", "acknowledgeException", "resolveException", "transitionException", "assignException"],
        ),
        ("createClient", "id", &["getClient", "updateClient", "blockClient"]),
        (
            "createModel",
            "id",
            &[
                "getModel",
                "updateModel",
                "getAvailabilityRules",
                "replaceAvailabilityRules",
                "getModelContact",
                "setModelContact",
            ],
        ),
        ("createUser", "id", &["updateUser", "getUserContact", "setUserContact"]),
        (
            "createAutomationRule",
            "id",
            &["getAutomationRule", "replaceAutomationRule", "testAutomationRule", "deleteAutomationRule"],
        ),
        (
            "createWebhookSubscription",
            "id",
            &["getWebhookSubscription", "replaceWebhookSubscription", "deleteWebhookSubscription"],
        ),
    ];
    for (from, field, targets) in chains {
        let Some(op) = find_op(doc, from) else { continue };
        let Some(responses) = op["responses"].as_object_mut() else { continue };
        let Some(ok) = responses.iter_mut().find(|(s, _)| s.starts_with('2')).map(|(_, r)| r) else { continue };
        let mut links = Map::new();
        for t in targets.iter().filter(|t| by_id.contains_key(**t)) {
            let name = format!("{}{}", &t[..1].to_uppercase(), &t[1..]);
            links.insert(name, json!({"operationId": t, "parameters": {"id": format!("$response.body#/{field}")}}));
        }
        ok["links"] = Value::Object(links);
    }
}

fn find_op<'a>(doc: &'a mut Value, id: &str) -> Option<&'a mut Value> {
    doc["paths"]
        .as_object_mut()?
        .values_mut()
        .flat_map(|item| item.as_object_mut().into_iter().flat_map(|m| m.values_mut()))
        .find(|op| op["operationId"].as_str() == Some(id))
}

/// Examples of the core bodies (SPEC §12).
fn add_examples(doc: &mut Value) {
    let examples: &[(&str, Value)] = &[
        ("login", json!({"email": "admin@virel.com", "password": "password123"})),
        (
            "createInquiry",
            json!({
                "client": {"name": "Anna Smith", "phone": "+447700900123", "email": "anna@example.com"},
                "source": "website",
                "requested_start": "2027-03-14T19:00:00Z",
                "duration_minutes": 180,
                "location": "London, Mayfair",
                "budget": {"amount": 150000, "currency": "GBP"},
                "notes": "Dinner, then an event."
            }),
        ),
        (
            "createBooking",
            json!({
                "client_id": "0190f5a2-6b1c-7d3e-8f40-1a2b3c4d5e6f",
                "model_id": "0190f5a2-6b1c-7d3e-8f40-6f5e4d3c2b1a",
                "start_at": "2027-03-14T19:00:00Z",
                "duration_minutes": 180,
                "location": "London, Mayfair",
                "price": {"amount": 150000, "currency": "GBP"},
                "deposit": {"amount": 30000, "currency": "GBP"},
                "status": "pending"
            }),
        ),
        ("transitionBooking", json!({"status": "cancelled", "reason": "The client cancelled by phone.", "version": 3})),
        ("transitionInquiry", json!({"status": "qualified", "version": 1})),
        ("createTask", json!({"title": "Call the client back", "priority": "high"})),
    ];
    for (id, example) in examples {
        let Some(op) = find_op(doc, id) else { continue };
        let Some(content) = op["requestBody"]["content"].as_object_mut() else { continue };
        for media in content.values_mut() {
            media["example"] = example.clone();
        }
    }
}
