//! The benchmark command in smoke mode: it runs every phase, exits 0 and prints the whole
//! table. Never about speed: the numbers of a CI machine mean nothing.

use std::process::Command;

#[test]
fn bench_smoke_prints_every_row() {
    let bench = env!("CARGO_BIN_EXE_bench");
    let mut command = Command::new(bench);
    command.arg("--smoke");
    // The broker binary beside this one (`cargo test --workspace` built it); without it the
    // bench builds it itself.
    let broker = std::path::Path::new(bench).with_file_name("sts-broker");
    if broker.exists() {
        command.arg("--broker-bin").arg(broker);
    }
    let output = command.output().expect("bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed ({})\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let rows = [
        "| variant | setup | exchanges/s | p50 ms | p99 ms | server CPU µs/exchange | machine idle |",
        "| ideal | verify RS256, sign ES256 |",
        "| ideal @ 50% load | paced at ",
        "| ideal + durable journal | as ideal, + one audit record per exchange",
        "| ideal + bare wait | as ideal, + a wait per exchange",
        "| ideal + bare fsync | as bare wait, but ",
        "| ideal + bare fsync, written blocks | as bare fsync, into blocks written before",
        "| broker ES256 | 10 policies, ES256 |",
        "| broker ES256 @ 50% load | paced at ",
        "| broker RS256 | 10 policies, RS256 |",
        "| broker EdDSA | 10 policies, EdDSA |",
        "| broker ES256, many policies | ",
        "| broker ES256, os durability | ",
        "| cold path | start → ready ms |",
        "| broker ES256 | ",
        "| broker ES256 throughput ≥ 85% of ideal | ",
        "| CPU per exchange, broker ES256 ÷ ideal | ",
        "| broker ES256 vs ideal + durable journal (throughput, CPU) | ",
        "| many policies: throughput loss < 10% | ",
        "| many policies: RSS < 50 MB (after load; start-up peak shown) | ",
        "| p99 at 50% of peak ≤ 2× the ideal's p99 at 50% | ",
        "| ideal + durable journal ≥ 90% of ideal | ",
        "| the durable write's floor at this load: bare group commits ÷ ideal (CPU per exchange against the ideal's) | bare wait ",
        "| ≤ 1.5 KB written to disk per exchange (journal and index) | ",
        "| audit list lags the answer by ≤ 1 s at peak (broker ES256) | ",
        "| durable audit | disk bytes/exchange | group commits/s | records/commit |",
        "| cold path: first exchange (discovery + JWKS + key parsing) | ",
        "| kill -9 at peak load, restart on the same files: every exchange answered 200 has its record, once | 1 rounds, ",
        "**Machine:** nproc ",
        "no errors.",
    ];
    for row in rows {
        assert!(stdout.contains(row), "no {row:?} in:\n{stdout}");
    }
    let cold_rows = stdout
        .lines()
        .skip_while(|l| !l.starts_with("| cold path |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .count();
    assert_eq!(cold_rows, 5, "a cold-path row per broker:\n{stdout}");
}
