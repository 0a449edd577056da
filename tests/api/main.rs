//! One integration-test binary: the real server on a random loopback port, against a fake
//! identity provider that the tests run themselves.

mod admin;
mod child;
mod ci_client;
mod ci_issuers;
mod cli;
mod connections;
mod console;
mod diff;
mod end_to_end;
mod exchange;
mod fuzz;
mod github_app;
mod hardening;
mod helpers;
mod hostile;
mod issuer_keys;
mod journal;
mod keys;
mod logging;
mod metadata;
mod parsing;
mod policies;
mod policy_test;
mod postgres;
mod preview;
mod replicas;
mod shutdown;
mod storage;
mod testdb;
mod tls;
mod upstream;
mod verifier;
