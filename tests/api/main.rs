//! One integration-test binary: the real server on a random loopback port, against a fake
//! identity provider that the tests run themselves.

mod admin;
mod cli;
mod exchange;
mod fuzz;
mod helpers;
mod hostile;
mod metadata;
mod policies;
mod postgres;
mod replicas;
mod storage;
mod testdb;
mod upstream;
