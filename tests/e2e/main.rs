//! End-to-end tests: the real HTTP server on SQLite and on PostgreSQL, driven over HTTP.
#![allow(dead_code)]
#![recursion_limit = "256"]

mod harness;

mod fixtures;

mod input_bounds;

mod action_center;
mod action_center_page;
mod admin_pages;
mod auth;
mod auth_limits;
mod authz_matrix;
mod automation;
mod availability;
mod backend_dead;
mod backlog;
mod bad_input;
mod browser;
mod concurrency;
mod domain_fixes;
mod edge_security;
mod fake_stripe;
mod faults;
mod faults_scaled;
mod first_start;
mod metrics;
mod notifications;
mod payments;
mod scaled;
mod security;
mod sla_and_quick_actions;
mod smoke;
mod transitions;
mod webhooks_out;
