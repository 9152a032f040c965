//! End-to-end tests: the real HTTP server on SQLite and on PostgreSQL, driven over HTTP.
#![allow(dead_code)]

mod harness;

mod fixtures;

mod action_center;
mod action_center_page;
mod admin_pages;
mod auth;
mod automation;
mod backend_dead;
mod backlog;
mod bad_input;
mod browser;
mod concurrency;
mod domain_fixes;
mod edge_security;
mod faults;
mod metrics;
mod scaled;
mod security;
mod sla_and_quick_actions;
mod smoke;
mod transitions;
