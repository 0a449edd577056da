//! One integration-test binary: the real server on a random loopback port, against a fake
//! identity provider that the tests run themselves.

mod admin;
mod bench_smoke;
mod ci_client;
mod cli;
mod end_to_end;
mod exchange;
mod fuzz;
mod hardening;
mod helpers;
mod hostile;
mod issuer_keys;
mod keys;
mod metadata;
mod outage;
mod policies;
mod postgres;
mod replicas;
mod storage;
mod testdb;
mod tls;
mod upstream;
mod verifier;
