//! sts-broker: an OIDC token-exchange broker (RFC 8693 security token service).
//!
//! A workload presents an OIDC token from an issuer it already has; the broker validates it
//! ([`inbound`]), finds a trust policy that admits its claims ([`policy`]), and mints a
//! short-lived token of its own ([`mint`]), recording the decision ([`audit`]).
#![deny(unsafe_code)] // one audited exception: `memory::release_freed_memory`
#![warn(missing_docs)]

pub mod admin;
pub mod audit;
pub mod cli;
pub mod config;
pub mod dev;
pub mod duration;
pub mod exchange;
pub mod github;
pub mod http;
pub mod ids;
pub mod inbound;
pub mod jose;
pub mod journal;
pub mod memory;
pub mod metadata;
pub mod metrics;
pub mod mint;
pub mod policy;
pub mod preview;
pub mod proof;
pub mod ratelimit;
pub mod readiness;
pub mod revocation;
pub mod secret;
pub mod startup;
pub mod storage;
pub mod sync;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod trail;
pub mod trusted_proxies;
