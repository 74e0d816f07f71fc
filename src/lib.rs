//! fleet-delete-guard: a validating admission webhook for Rancher Fleet.
//!
//! The core is pure ([`decide`], [`delta`], [`fleet`]); the adapters around it
//! (HTTP server, TLS, kube client, patch worker, CLI) are thin.

#![forbid(unsafe_code)]

pub mod admission;
pub mod app;
pub mod auditlog;
pub mod background;
pub mod breaker;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod compare;
pub mod counting;
pub mod decide;
pub mod delta;
pub mod fleet;
pub mod fleet_version;
pub mod health;
pub mod json_text;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod owners;
pub mod patcher;
pub mod policy;
pub mod redact;
pub mod review;
pub mod server;
pub mod tls;
pub mod verify;
pub mod watch;
pub mod webhook_config;
