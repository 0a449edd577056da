//! One integration-test binary: the real server on a random loopback port, against a fake
//! identity provider that the tests run themselves.

mod admin;
mod bench_smoke;
mod ci_client;
mod cli;
mod exchange;
mod fuzz;
mod helpers;
mod hostile;
mod keys;
mod metadata;
mod policies;
mod tls;
mod upstream;
mod verifier;
