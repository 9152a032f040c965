//! The HTTP middlewares, outermost first as `app()` stacks them:
//!
//! - `request_id`: every request gets an id (the caller's `x-request-id` when sane), echoed in
//!   the response; the rest of the request runs inside a span that carries it, so every log
//!   line of the request has it.
//! - `access_log`: one line per answer (method, path without the query string, status,
//!   duration), inside that span.
//! - `retry_after`: every 503 carries `Retry-After` (the database or the queues are down).
//! - `body_limit`: every body is capped at `MAX_BODY_BYTES`, however it is framed.
//! - `contract`: JSON bodies held to the OpenAPI document's schemas (422 naming the field), and
//!   a 405 lists the path's methods in `Allow`.
//! - `idempotency`: the `Idempotency-Key` store for writes.
//! - `input_guard`: no NUL character in a path, query parameter or body reaches SQL (422).

pub mod access_log;
pub mod body_limit;
pub mod contract;
pub mod idempotency;
pub mod input_guard;
pub mod request_id;
pub mod retry_after;
