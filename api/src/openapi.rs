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

/// The published document: poem-openapi's, completed (see the module's comment), with the
/// agency's settings where they decide what is valid (its currencies, whether webhooks may
/// target IP literals).
pub fn document(generated: &str, settings: &virel_domain::settings::Settings) -> Value {
    // poem-openapi's own output; if it ever failed to parse, there is nothing to complete.
    let mut doc: Value = serde_json::from_str(generated).unwrap_or_else(|_| json!({}));
    complete(&mut doc);
    constrain(&mut doc, settings);
    doc
}

/// The names a schema object lists as `required`.
fn required_of(schema: &Value) -> Vec<String> {
    schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default()
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
        // Only operations (objects): anything else in a path item is left as it is.
        for (method, op) in item.iter_mut().filter(|(_, op)| op.is_object()) {
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
    let types: Map<String, Value> = doc["components"]["schemas"]
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.get("type")?.clone()))).collect())
        .unwrap_or_default();
    let Some(schemas) = doc["components"]["schemas"].as_object_mut() else { return };
    for schema in schemas.values_mut() {
        let required = required_of(schema);
        let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) else { continue };
        for (name, p) in props.iter_mut() {
            if required.contains(name) || p.get("default").is_some() {
                continue;
            }
            make_nullable(p, &types);
        }
    }
}

/// OpenAPI 3.0 applies `nullable` only beside an explicit `type`: a reference is wrapped in
/// `allOf` with the referenced schema's type; a schema without a type (any value) already
/// admits `null`.
fn make_nullable(p: &mut Value, types: &Map<String, Value>) {
    let Some(obj) = p.as_object_mut() else { return };
    if let Some(r) = obj.remove("$ref") {
        let name = r.as_str().and_then(|r| r.rsplit('/').next()).unwrap_or_default().to_string();
        obj.insert("allOf".into(), json!([{"$ref": r}]));
        obj.insert("type".into(), types.get(&name).cloned().unwrap_or(json!("object")));
    }
    if !obj.contains_key("type")
        && let Some(name) = obj
            .get("allOf")
            .and_then(|a| a.as_array())
            .and_then(|a| a.iter().find_map(|x| x["$ref"].as_str()))
            .and_then(|r| r.rsplit('/').next())
    {
        let ty = types.get(name).cloned().unwrap_or(json!("object"));
        obj.insert("type".into(), ty);
    }
    if obj.contains_key("type") {
        obj.insert("nullable".into(), json!(true));
    }
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
                change; the client may send `{\"type\": \"resync\"}`. The credential is re-checked every 2 \
                seconds: a deactivated user, a changed role or an expired token closes the socket with a \
                reason. A plain `GET` (not an upgrade) answers the `snapshot` message at once, as JSON.",
            "responses": {
                "200": {
                    "description": "Not an upgrade: the `snapshot` message.",
                    "content": {"application/json; charset=utf-8": {"schema": {"$ref": "#/components/schemas/LiveFeedMessage"}}}
                },
                "101": {
                    "description": "Switching to the WebSocket protocol; the server's messages are `LiveFeedMessage`s.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LiveFeedMessage"}}}
                }
            },
            "x-websocket": {
                "server-messages": {"$ref": "#/components/schemas/LiveFeedMessage"},
                "client-messages": {
                    "type": "object",
                    "description": "`{\"token\": \"...\"}` first when connected without a credential (within 10 seconds); `{\"type\": \"resync\"}` for a fresh snapshot.",
                    "properties": {
                        "token": {"type": "string", "description": "An access token."},
                        "type": {"type": "string", "enum": ["resync"]}
                    }
                }
            }
        }
    });
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
                "source": "web",
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
        ("createTask", json!({"type": "follow_up", "title": "Call the client back", "priority": "high"})),
    ];
    for (id, example) in examples {
        let Some(op) = find_op(doc, id) else { continue };
        let Some(content) = op.pointer_mut("/requestBody/content").and_then(|c| c.as_object_mut()) else { continue };
        for media in content.values_mut() {
            media["example"] = example.clone();
        }
    }
}

/// A schema and property (or an operation and parameter) and the values it takes.
type Enumeration = (&'static str, &'static str, Vec<String>);

/// Where a value is one of a list the commands check (`one_of`), the document says so: a body
/// field by schema and property, a parameter by operation and name. The lists are the
/// domain's own constants, so the document and the check cannot drift apart.
fn enumerations(currencies: &[String]) -> (Vec<Enumeration>, Vec<Enumeration>) {
    use virel_domain::automation::rules::{ACTIONS, OPERATORS, TRIGGERS};
    use virel_domain::commands::{contacts, models, notifications, payments, templates, webhooks_in};
    use virel_domain::machine::*;
    let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let triggers: Vec<String> = TRIGGERS.iter().map(|t| t.0.to_string()).collect();
    let zones: Vec<String> = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name().to_string()).collect();
    let days = l(&["mon", "tue", "wed", "thu", "fri", "sat", "sun"]);
    let props = vec![
        ("ActionIo", "type", l(ACTIONS)),
        ("ConditionIo", "operator", l(OPERATORS)),
        ("BookingStatusIn", "status", l(BOOKING.states)),
        ("CreateBooking", "status", l(&["draft", "pending"])),
        ("ClientIn", "preferred_channel", l(CHANNELS)),
        ("CreateClient", "preferred_channel", l(CHANNELS)),
        ("PatchClient", "preferred_channel", l(CHANNELS)),
        ("ContactFields", "preferred_channel", l(contacts::PREFERRED)),
        ("UserContactIn", "preferred_channel", l(contacts::PREFERRED)),
        ("CreateException", "severity", l(SEVERITIES)),
        ("CreateException", "type", l(EXCEPTION_TYPES)),
        ("CreateException", "subject_type", l(SUBJECT_TYPES)),
        ("CreateInquiry", "source", l(INQUIRY_SOURCES)),
        ("CreateNote", "subject_type", l(SUBJECT_TYPES)),
        ("CreateTask", "priority", l(PRIORITIES)),
        ("CreateTask", "type", l(TASK_TYPES)),
        ("CreateTask", "subject_type", l(SUBJECT_TYPES)),
        ("CreateUser", "role", l(notifications::ROLES)),
        ("PatchUser", "role", l(notifications::ROLES)),
        ("ExceptionStatusIn", "status", l(EXCEPTION.states)),
        ("InquiryStatusIn", "status", l(INQUIRY.states)),
        ("StatusIn", "status", l(TASK.states)),
        ("Money", "currency", currencies.to_vec()),
        ("RateIn", "currency", currencies.to_vec()),
        ("PatchModel", "status", l(models::MODEL_STATUSES)),
        ("ResolveIn", "status", l(&["resolved", "dismissed"])),
        ("RuleIn", "trigger", triggers.clone()),
        ("SampleEventIn", "type", triggers.clone()),
        ("RulesIn", "time_zone", zones),
        ("TemplateIn", "channel", l(templates::CHANNELS)),
        ("WeeklyIn", "day", days),
        // Answers: a generated client gets the statuses as unions.
        ("InquiryOut", "status", l(INQUIRY.states)),
        ("BookingOut", "status", l(BOOKING.states)),
        ("TaskOut", "status", l(TASK.states)),
        ("ExceptionOut", "status", l(EXCEPTION.states)),
        ("ItemOut", "kind", l(&["task", "exception"])),
        ("ItemOut", "priority", l(PRIORITIES)),
    ];
    let params = vec![
        ("listUsers", "role", l(notifications::ROLES)),
        ("listActionCenterItems", "kind", l(&["task", "exception"])),
        ("listActionCenterItems", "priority", l(PRIORITIES)),
        ("confirmActionCenterItem", "kind", l(&["task", "exception"])),
        ("contactActionCenterItem", "kind", l(&["task", "exception"])),
        ("noteActionCenterItem", "kind", l(&["task", "exception"])),
        ("assignActionCenterItem", "kind", l(&["task", "exception"])),
        ("acknowledgeActionCenterItem", "kind", l(&["task", "exception"])),
        ("listBookings", "status", l(BOOKING.states)),
        ("listInquiries", "status", l(INQUIRY.states)),
        ("listTasks", "status", l(TASK.states)),
        ("listTasks", "type", l(TASK_TYPES)),
        ("listExceptions", "status", l(EXCEPTION.states)),
        ("listExceptions", "type", l(EXCEPTION_TYPES)),
        ("listModels", "status", l(models::MODEL_STATUSES)),
        ("listNotifications", "status", l(notifications::NOTIFICATION_STATUSES)),
        ("listNotifications", "channel", l(templates::CHANNELS)),
        ("listPayments", "status", l(payments::PAYMENT_STATUSES)),
        ("listPayments", "type", l(payments::PAYMENT_KINDS)),
        ("listWebhookDeliveries", "status", l(virel_domain::webhooks::DELIVERY_STATUSES)),
        ("listStripeEvents", "status", l(webhooks_in::STATUSES)),
        ("retryDeadJob", "queue", virel_domain::jobs::Queue::ALL.iter().map(|q| q.as_str().to_string()).collect()),
    ];
    (props, params)
}

/// A time from 2000 to 2099.
const YEAR_2000_TO_2099: &str = "^20[0-9]{2}-";
/// A client's phone as the commands take it: 6 to 15 digits with spaces, `+`, `-`, brackets; or empty (none).
const CLIENT_PHONE: &str = "^([ +()-]*([0-9][ +()-]*){6,15})?$";
/// An email address (ASCII), or empty (none).
const EMAIL_OR_EMPTY: &str = "^([A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+)?$";
const EMAIL: &str = "^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+$";
/// A Telegram handle (`@name`, 3 to 64 characters of a-z, 0-9 and _), or empty.
const CLIENT_TELEGRAM: &str = "^(@?[A-Za-z0-9_]{3,63})?$";
/// A notification contact: a Telegram chat id or `@handle`, or empty.
const CONTACT_TELEGRAM: &str = "^(@[A-Za-z0-9_]{3,62}|-?[0-9]{1,32})?$";
/// E.164 (`+447700900123`), or empty.
const E164_OR_EMPTY: &str = "^(\\+[0-9]{8,15})?$";
/// An http(s) URL without credentials or fragment, on a named host (whose address is checked
/// at each delivery), or also on an IPv4 literal where private targets are allowed
/// (`VIREL_WEBHOOK_ALLOW_PRIVATE`; otherwise a literal is refused at once).
fn webhook_url(ip_literals: bool) -> String {
    let octet = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
    let name = "([A-Za-z0-9-]+\\.)*[A-Za-z][A-Za-z0-9-]*";
    let host = if ip_literals { format!("({name}|{octet}(\\.{octet}){{3}})") } else { format!("({name})") };
    let port = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})";
    format!("^https?://{host}(:{port})?(/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*)?(\\?[A-Za-z0-9._~%!$&'()*+,;=:@/?-]*)?$")
}

/// What the commands check of each body field, stated for the document (and so enforced at
/// the edge by the contract middleware): a pattern, bounds, a minimum count.
fn bounds(webhook_ip_literals: bool) -> Vec<(&'static str, &'static str, Value)> {
    let max_amount = virel_domain::validate::MAX_AMOUNT;
    let triggers: Vec<&str> = virel_domain::automation::rules::TRIGGERS.iter().map(|t| t.0).collect();
    let zones: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).collect();
    let window = json!({"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "string", "pattern": HH_MM},
        "description": "[start, end], local HH:MM; the end after the start."});
    let days: Map<String, Value> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| (d.to_string(), json!({"type": "array", "minItems": 1, "items": window})))
        .collect();
    let calendar = json!({
        "type": "object", "nullable": true, "additionalProperties": false, "required": ["timezone", "weekly"],
        "description": "Business hours: a time zone and working windows per day.",
        "properties": {
            "timezone": {"type": "string", "enum": zones},
            "weekly": {"type": "object", "additionalProperties": false, "minProperties": 1, "properties": days}
        }
    });
    let mut v = Vec::new();
    for schema in ["ClientIn", "CreateClient", "PatchClient"] {
        v.push((schema, "phone", json!({"pattern": CLIENT_PHONE})));
        v.push((schema, "email", json!({"pattern": EMAIL_OR_EMPTY})));
        v.push((schema, "telegram", json!({"pattern": CLIENT_TELEGRAM})));
    }
    v.extend([
        ("ContactFields", "phone", json!({"pattern": E164_OR_EMPTY})),
        ("ContactFields", "email", json!({"pattern": EMAIL_OR_EMPTY})),
        ("ContactFields", "telegram", json!({"pattern": CONTACT_TELEGRAM})),
        ("UserContactIn", "phone", json!({"pattern": E164_OR_EMPTY})),
        ("UserContactIn", "telegram", json!({"pattern": CONTACT_TELEGRAM})),
        ("CreateUser", "email", json!({"pattern": EMAIL})),
        ("CreateUser", "password", json!({"minLength": 8})),
        ("PatchUser", "password", json!({"minLength": 8})),
        ("TemplateIn", "name", json!({"pattern": "^[a-z0-9_]{1,64}$"})),
        ("TemplateIn", "bot", json!({"enum": ["diva", "kesha", null]})),
        ("SubscriptionIn", "url", json!({"pattern": webhook_url(webhook_ip_literals), "maxLength": 2048})),
        ("PolicyIn", "minutes", json!({"minimum": 1, "maximum": 43200})),
        ("PolicyIn", "at_risk_percent", json!({"minimum": 1, "maximum": 99})),
        ("RateIn", "duration_minutes", json!({"minimum": 15, "maximum": 1440})),
        ("RateIn", "amount", json!({"minimum": 0, "maximum": max_amount})),
        ("Money", "amount", json!({"minimum": 0, "maximum": max_amount})),
        ("RefundIn", "amount", json!({"minimum": 1, "maximum": max_amount})),
        ("CreateBooking", "duration_minutes", json!({"minimum": 15, "maximum": 1440})),
        ("CreateInquiry", "duration_minutes", json!({"minimum": 15, "maximum": 1440})),
        ("ConvertIn", "duration_minutes", json!({"minimum": 15, "maximum": 1440})),
        ("RuleIn", "actions", json!({"minItems": 1})),
        ("ActionIo", "params", json!({"type": "object"})),
        ("TestIn", "replay_last", json!({"minimum": 1, "maximum": 500})),
        ("TemplateIn", "locale", json!({"pattern": "^[A-Za-z0-9_-]{0,16}$"})),
        ("WeeklyIn", "start", json!({"pattern": HH_MM})),
        ("WeeklyIn", "end", json!({"pattern": HH_MM})),
        ("SubscriptionIn", "event_types", json!({"minItems": 1, "items": {"type": "string", "enum": triggers}})),
        (
            "PolicyIn",
            "escalation_secs",
            json!({"minItems": 3, "maxItems": 3,
            "items": {"type": "integer", "minimum": 0, "maximum": virel_domain::sla::policy::MAX_ESCALATION_SECS}}),
        ),
        ("PolicyIn", "calendar", calendar),
    ]);
    v
}

/// A page cursor: 16 bytes in unpadded base64url (the last character carries 2 bits), or empty.
const CURSOR: &str = "^([A-Za-z0-9_-]{21}[AQgw])?$";
/// Optional texts that, when given, must not be blank (a name cannot be cleared).
const NOT_BLANK_WHEN_GIVEN: &[&str] = &["name", "text", "reason", "resolution", "subject"];
/// A local time of day.
const HH_MM: &str = "^([01][0-9]|2[0-3]):[0-5][0-9]$";
/// No text may carry a NUL character (the input guard refuses it with 422).
const NO_NUL: &str = "^[^\\x00]*$";
/// A required text that must not be blank either (the commands refuse an empty or
/// whitespace-only one with 422).
const NOT_BLANK: &str = "^[^\\x00]*[^\\x00\\s][^\\x00]*$";

/// Bounds the handlers enforce that poem-openapi's derive cannot state: enumerations, the
/// page size, text without NUL (and required text not blank).
fn constrain(doc: &mut Value, settings: &virel_domain::settings::Settings) {
    let (props, params) = enumerations(&settings.currencies);
    let requests = request_schemas(doc);
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        for (schema, prop, values) in &props {
            if let Some(p) =
                schemas.get_mut(*schema).and_then(|s| s.get_mut("properties")).and_then(|s| s.get_mut(*prop))
            {
                set_enum(p, values);
            }
        }
        for (schema, prop, bound) in bounds(settings.webhook_allow_private) {
            if let Some(p) = schemas.get_mut(schema).and_then(|s| s.get_mut("properties")).and_then(|s| s.get_mut(prop))
                && let (Some(p), Some(bound)) = (p.as_object_mut(), bound.as_object())
            {
                p.extend(bound.clone());
            }
        }
        for (name, schema) in schemas.iter_mut().filter(|(n, _)| requests.contains(n.as_str())) {
            let _ = name;
            let required = required_of(schema);
            for (name, p) in schema.get_mut("properties").and_then(|p| p.as_object_mut()).into_iter().flatten() {
                text_pattern(p, required.contains(name) || NOT_BLANK_WHEN_GIVEN.contains(&name.as_str()));
                if let Some(items) = p.get_mut("items") {
                    text_pattern(items, false);
                }
            }
        }
    }
    closed_request_bodies(doc);
    rule_language(doc);
    requirements(doc);
    for_each_operation(doc, |id, op| {
        for p in op.get_mut("parameters").and_then(|p| p.as_array_mut()).into_iter().flatten() {
            let name = p["name"].as_str().unwrap_or_default().to_string();
            if let Some((_, _, values)) = params.iter().find(|(o, n, _)| *o == id && *n == name) {
                set_enum(&mut p["schema"], values);
            }
            if name == "limit" {
                p["schema"]["minimum"] = json!(1);
                p["schema"]["maximum"] = json!(200);
            }
            if name == "cursor" {
                // What `encode_cursor` gives out: an id, 16 bytes in unpadded base64url.
                p["schema"]["pattern"] = json!(CURSOR);
                p["schema"]["description"] = json!("The `next_cursor` of the previous page.");
            }
            text_pattern_in(&mut p["schema"], false, false);
        }
    });
}

fn set_enum(p: &mut Value, values: &[String]) {
    let mut values = json!(values);
    // OpenAPI 3.0: a nullable enumeration lists `null` among its values.
    if p["nullable"] == true
        && let Some(v) = values.as_array_mut()
    {
        v.push(Value::Null);
    }
    p["enum"] = values;
    if let Some(o) = p.as_object_mut() {
        o.remove("maxLength");
    }
}

fn text_pattern(p: &mut Value, required: bool) {
    text_pattern_in(p, required, true)
}

/// `in_body`: a body field (the contract middleware holds it to the year bound); a query's
/// times are the handler's to bound.
fn text_pattern_in(p: &mut Value, required: bool, in_body: bool) {
    if in_body && p["type"] == "string" && p["format"] == "date-time" && p.get("pattern").is_none() {
        // The commands take times from 2000-01-01 to before 2100-01-01 (UTC).
        p["pattern"] = json!(YEAR_2000_TO_2099);
        return;
    }
    let plain =
        p["type"] == "string" && p.get("enum").is_none() && p.get("format").is_none() && p.get("pattern").is_none();
    if plain {
        p["pattern"] = json!(if required { NOT_BLANK } else { NO_NUL });
    }
}

fn for_each_operation(doc: &mut Value, mut f: impl FnMut(&str, &mut Value)) {
    for item in doc["paths"].as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
        for op in item.as_object_mut().into_iter().flat_map(|m| m.values_mut()).filter(|op| op.is_object()) {
            let id = op["operationId"].as_str().unwrap_or_default().to_string();
            f(&id, op);
        }
    }
}

/// Request bodies take no properties beyond their schema's (`additionalProperties: false`,
/// enforced by the contract middleware): a misspelt field is refused, not silently dropped.
/// Only schemas reachable from a request body are closed; answers may grow new fields.
fn closed_request_bodies(doc: &mut Value) {
    let closed = request_schemas(doc);
    let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(|s| s.as_object_mut()) else { return };
    for name in closed {
        if let Some(s) = schemas.get_mut(&name)
            && s.get("properties").is_some()
        {
            s["additionalProperties"] = json!(false);
            // A default is what an absent field means; said in words, since generators read
            // `default` as "always present" and would make a client send it.
            for p in s["properties"].as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
                if let Some(d) = p.as_object_mut().and_then(|o| o.remove("default")) {
                    let text = p["description"].as_str().unwrap_or_default().to_string();
                    let sep = if text.is_empty() { "" } else { " " };
                    p["description"] = json!(format!("{text}{sep}Default: `{d}`."));
                }
            }
        }
    }
}

/// The schemas a request body refers to, directly or through other schemas.
fn request_schemas(doc: &Value) -> std::collections::BTreeSet<String> {
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(r) = o.get("$ref").and_then(|r| r.as_str()).and_then(|r| r.rsplit('/').next()) {
                    out.push(r.to_string());
                }
                o.values().for_each(|c| refs(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| refs(c, out)),
            _ => {}
        }
    }
    let mut todo = Vec::new();
    for item in doc["paths"].as_object().into_iter().flat_map(|m| m.values()) {
        for op in item.as_object().into_iter().flat_map(|m| m.values()) {
            if let Some(b) = op.get("requestBody") {
                refs(b, &mut todo);
            }
        }
    }
    let mut found = std::collections::BTreeSet::new();
    while let Some(name) = todo.pop() {
        if found.insert(name.clone())
            && let Some(s) = doc.pointer(&format!("/components/schemas/{name}"))
        {
            refs(s, &mut todo);
        }
    }
    found
}

/// The rule language as a schema (what `automation::rules::validate` checks): each action's
/// parameters by its type, each condition's value by its operator, and each trigger's fields
/// for the conditions (a `oneOf` over the triggers).
fn rule_language(doc: &mut Value) {
    use virel_domain::automation::rules::{
        MAX_DELAY_MINUTES, MAX_DUE_IN_MINUTES, NOTIFY_CHANNELS, NOTIFY_TARGETS, TRIGGERS, trigger_subject,
    };
    use virel_domain::machine::{
        BOOKING, EXCEPTION, EXCEPTION_TYPES, INQUIRY, PRIORITIES, SEVERITIES, TASK, TASK_TYPES,
    };
    let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(|s| s.as_object_mut()) else { return };
    // Free-form values: any JSON (the commands refuse a NUL in them, as in any text).
    let any = json!({});
    let not_blank = json!({"type": "string", "maxLength": 10000, "pattern": NOT_BLANK});
    let delay = json!({"type": "integer", "minimum": 0, "maximum": MAX_DELAY_MINUTES, "nullable": true});
    let delay_param = json!({"type": "integer", "minimum": 0, "maximum": MAX_DELAY_MINUTES});
    let uuid = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
    let assign_to = json!({"type": "string", "nullable": true, "pattern": format!("^(round_robin|assignee|{uuid})$"),
        "description": "A user id, `round_robin` or `assignee`."});
    let machines = [("inquiry", &INQUIRY), ("booking", &BOOKING), ("task", &TASK), ("exception", &EXCEPTION)];
    let mut all_states: Vec<&str> = machines.iter().flat_map(|(_, m)| m.states.iter().copied()).collect();
    all_states.sort();
    all_states.dedup();
    let action = |kind: &str, required: &[&str], params: Value| {
        let mut params = params;
        params["delay_minutes"] = delay_param.clone();
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["type", "params"],
            "properties": {
                "type": {"type": "string", "enum": [kind]},
                "params": {"type": "object", "additionalProperties": false, "required": required, "properties": params},
                "delay_minutes": delay
            }
        })
    };
    // update_status: a named entity's status must be one of that entity's.
    let mut by_entity: Vec<Value> = machines
        .iter()
        .map(|(e, m)| json!({"required": ["entity"], "properties": {"entity": {"enum": [e]}, "newStatus": {"enum": m.states}}}))
        .collect();
    by_entity.push(json!({"not": {"required": ["entity"], "properties": {"entity": {"type": "string"}}}}));
    let mut update_status = action(
        "update_status",
        &["newStatus"],
        json!({
            "newStatus": {"type": "string", "enum": all_states},
            "entity": {"type": "string", "enum": machines.iter().map(|m| m.0).collect::<Vec<_>>()},
            "reason": not_blank,
            "override": {"type": "boolean"}
        }),
    );
    update_status["properties"]["params"]["anyOf"] = json!(by_entity);
    let actions = vec![
        update_status,
        action(
            "create_task",
            &["type"],
            json!({
                "type": {"type": "string", "enum": TASK_TYPES},
                "title": not_blank,
                "priority": {"type": "string", "enum": PRIORITIES},
                "due_in_minutes": {"type": "integer", "minimum": 0, "maximum": MAX_DUE_IN_MINUTES},
                "assign_to": assign_to
            }),
        ),
        action(
            "create_exception",
            &["type", "severity"],
            json!({
                "type": {"type": "string", "enum": EXCEPTION_TYPES},
                "severity": {"type": "string", "enum": SEVERITIES},
                "title": not_blank
            }),
        ),
        action(
            "send_notification",
            &["channel", "template", "to"],
            json!({
                "channel": {"type": "string", "enum": NOTIFY_CHANNELS},
                "template": not_blank,
                "to": {"type": "string", "pattern": format!("^({}|{uuid})$", NOTIFY_TARGETS.join("|")),
                       "description": "client, model, assignee, a role, or a user id."}
            }),
        ),
        action("assign", &["assign_to"], json!({"assign_to": assign_to})),
        action("add_note", &["text"], json!({"text": not_blank})),
    ];
    schemas.insert(
        "ActionIo".into(),
        json!({
            "description": "An action of a rule: its type and its parameters (SPEC §6).",
            "oneOf": actions
        }),
    );
    schemas.insert("ConditionIo".into(), json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["field", "operator"],
        "description": "A dotted path into the event payload (`source`, `booking.status`), or `event.type` / `event.depth` / `event.actor`; an operator; the value it compares with.",
        "properties": {
            "field": {"type": "string", "maxLength": 10000, "pattern": "^[^.\\x00]+(\\.[^.\\x00]+)*$"},
            "operator": {"type": "string", "enum": virel_domain::automation::rules::OPERATORS},
            "value": any
        },
        "anyOf": [
            {"required": ["value"], "properties": {"operator": {"enum": ["in", "not_in"]}, "value": {"type": "array", "items": any}}},
            {"required": ["value"], "properties": {"operator": {"enum": ["gt", "gte", "lt", "lte"]}, "value": {"anyOf": [{"type": "number"}, {"type": "string", "pattern": NO_NUL}]}}},
            {"properties": {"operator": {"enum": ["exists"]}, "value": {"type": "boolean", "nullable": true}}},
            {"required": ["value"], "properties": {"operator": {"enum": ["contains"]}, "value": {"anyOf": [{"type": "string", "pattern": NO_NUL}, {"type": "number"}, {"type": "boolean"}, {"type": "array", "items": any}, {"type": "object", "additionalProperties": any}]}}},
            {"properties": {"operator": {"enum": ["equals", "not_equals"]}}}
        ]
    }));
    // Each trigger: the fields its conditions may name, and the status an update_status
    // without an entity sets (its subject's).
    let branches: Vec<Value> = TRIGGERS
        .iter()
        .map(|(t, fields)| {
            let field = format!("^(event|{})(\\.[^.\\x00]+)*$", fields.join("|"));
            let subject = match trigger_subject(t) {
                "payment" => "booking",
                s => s,
            };
            let own = machines.iter().find(|(e, _)| *e == subject).map(|(_, m)| m.states);
            let status_rule = match own {
                Some(states) => {
                    json!({"anyOf": [{"required": ["entity"], "properties": {"entity": {"type": "string"}}}, {"properties": {"newStatus": {"enum": states}}}]})
                }
                None => json!({"required": ["entity"], "properties": {"entity": {"type": "string"}}}),
            };
            json!({
                "required": ["trigger"],
                "properties": {
                    "trigger": {"enum": [t]},
                    "conditions": {"items": {"properties": {"field": {"pattern": field}}}},
                    "actions": {"items": {"anyOf": [
                        {"properties": {"type": {"not": {"enum": ["update_status"]}}}},
                        {"properties": {"params": status_rule}}
                    ]}}
                }
            })
        })
        .collect();
    if let Some(rule) = schemas.get_mut("RuleIn") {
        rule["oneOf"] = json!(branches);
    }
    if let Some(sample) = schemas.get_mut("SampleEventIn") {
        sample["required"] = json!(["payload"]);
        sample["properties"]["payload"] = json!({"type": "object", "additionalProperties": any});
    }
    if let Some(test) = schemas.get_mut("TestIn") {
        test["anyOf"] = json!([
            {"required": ["event"], "properties": {"event": {"$ref": "#/components/schemas/SampleEventIn"}}},
            {"required": ["replay_last"], "properties": {"replay_last": {"type": "integer"}}}
        ]);
    }
    for (schema, prop) in
        [("CreateInquiry", "preferences"), ("CreateModel", "attributes"), ("PatchModel", "attributes")]
    {
        if let Some(p) = schemas.get_mut(schema).and_then(|s| s.get_mut("properties")).and_then(|p| p.get_mut(prop)) {
            *p = json!({"type": "object", "nullable": true, "additionalProperties": any});
        }
    }
}

/// Requirements between fields the commands check: a reason to cancel or lose, a resolution
/// to close, a client for an inquiry, a subject's type and id together.
fn requirements(doc: &mut Value) {
    let text = json!({"type": "string", "pattern": NOT_BLANK});
    // `field` is required (and not blank) when `prop` takes one of `values`.
    let when = |prop: &str, values: Value, field: &str| {
        json!({"anyOf": [
            {"properties": {prop: {"not": {"enum": values}}}},
            {"required": [field], "properties": {field: text}}
        ]})
    };
    let pair = |a: &str, b: &str| {
        let absent = json!({"type": "string", "nullable": true, "enum": [null]});
        json!({"anyOf": [
            {"required": [a, b], "properties": {a: {"type": "string"}, b: {"type": "string"}}},
            {"properties": {a: absent.clone(), b: absent}}
        ]})
    };
    let table: Vec<(&str, Vec<Value>)> = vec![
        (
            "BookingStatusIn",
            vec![when("status", json!(["cancelled"]), "reason"), when("override", json!([true]), "reason")],
        ),
        ("InquiryStatusIn", vec![when("status", json!(["lost"]), "reason")]),
        ("ExceptionStatusIn", vec![when("status", json!(["resolved", "dismissed"]), "resolution")]),
        (
            "CreateInquiry",
            vec![json!({"oneOf": [
                {"required": ["client_id"], "properties": {"client_id": {"type": "string", "format": "uuid"}}},
                {"required": ["client"], "properties": {"client": {"$ref": "#/components/schemas/ClientIn"}}}
            ]})],
        ),
        ("CreateTask", vec![pair("subject_type", "subject_id")]),
        ("CreateException", vec![pair("subject_type", "subject_id")]),
        ("RefundIn", vec![json!({"required": ["reason"], "properties": {"reason": text}})]),
    ];
    let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(|s| s.as_object_mut()) else { return };
    for (name, rules) in table {
        if let Some(s) = schemas.get_mut(name).and_then(|s| s.as_object_mut()) {
            let all = s.entry("allOf").or_insert_with(|| json!([]));
            if let Some(all) = all.as_array_mut() {
                all.extend(rules);
            }
        }
    }
}
