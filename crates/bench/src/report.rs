//! The Markdown report: one row per measured phase, the cold path, and the targets.

use std::fmt::Write;
use std::time::Duration;

/// One measured phase.
#[derive(Debug, Clone)]
pub struct Row {
    /// Stable name of the variant (the smoke test looks for it).
    pub variant: &'static str,
    /// What ran: policies, algorithm, load shape.
    pub setup: String,
    /// Successful exchanges per second.
    pub rate: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Server CPU per successful exchange, microseconds.
    pub cpu_us: f64,
    /// The share of the machine's CPU time left idle during the phase: near 0 when CPU
    /// bounds the rate, large when waiting does (closed-loop clients waiting on commits).
    pub idle: Option<f64>,
    /// Server resident memory after the phase, and its peak, KiB.
    pub rss_kib: (u64, u64),
    /// Failed exchanges, warm-up included.
    pub errors: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Throughput as a fraction of the ideal handler's (peak rows only).
    pub vs_ideal: Option<f64>,
    /// What making audit records durable cost, where the process reports its commits.
    pub durability: Option<Durability>,
}

/// The disk side of one phase.
#[derive(Debug, Clone, Copy)]
pub struct Durability {
    /// Bytes the process wrote to storage per successful exchange.
    pub disk_bytes: f64,
    /// Group commits (journal appends or database transactions) per second.
    pub commits_per_s: f64,
    /// Records per group commit.
    pub records_per_commit: f64,
}

/// The first exchanges after one process started.
#[derive(Debug, Clone)]
pub struct Cold {
    /// Which process.
    pub variant: &'static str,
    /// From spawn to a ready answer.
    pub ready: Duration,
    /// First exchange: discovery, JWKS fetch and key parsing included.
    pub first: Duration,
    /// Second exchange, keys cached (new connection too, for a fair comparison).
    pub second: Duration,
    /// Discovery + JWKS requests the first exchange caused.
    pub fetches: u64,
}

/// Everything one run measured.
#[derive(Debug, Default)]
pub struct Table {
    /// `nproc`, CPU model, date, settings.
    pub header: Vec<String>,
    /// Measured phases.
    pub rows: Vec<Row>,
    /// Cold paths.
    pub cold: Vec<Cold>,
    /// (target, measured, met?) lines.
    pub targets: Vec<(String, String, Option<bool>)>,
    /// Load generator CPU per request, microseconds (its own overhead).
    pub client_cpu_us: Vec<f64>,
    /// The worst delay from an answer to its record in the audit list, and the samples.
    pub index_lag: Option<(Duration, usize)>,
    /// What one page written and synced costs on the bench's disk.
    pub disk: Option<crate::disk::DiskFloor>,
    /// What `kill -9` under load left of the acknowledged exchanges' records.
    pub crash: Option<crate::crash::Crash>,
}

impl Table {
    /// Failed exchanges over the whole run.
    pub fn errors(&self) -> u64 {
        self.rows.iter().map(|r| r.errors).sum()
    }

    /// A row by variant name.
    pub fn row(&self, variant: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.variant == variant)
    }

    /// Markdown.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.header {
            let _ = writeln!(out, "{line}  ");
        }
        out.push('\n');
        out.push_str(
            "| variant | setup | exchanges/s | p50 ms | p99 ms | server CPU µs/exchange | machine idle | RSS MB (peak) | errors | vs ideal |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.0} | {} | {:.1} ({:.1}) | {} | {} |",
                r.variant,
                r.setup,
                r.rate,
                ms(r.p50),
                ms(r.p99),
                r.cpu_us,
                percent(r.idle),
                r.rss_kib.0 as f64 / 1024.0,
                r.rss_kib.1 as f64 / 1024.0,
                if r.errors == 0 {
                    "0".to_owned()
                } else {
                    format!("**{}**", r.errors)
                },
                percent(r.vs_ideal),
            );
        }
        out.push_str(
            "\n| durable audit | disk bytes/exchange | group commits/s | records/commit |\n\
             |---|---:|---:|---:|\n",
        );
        for r in &self.rows {
            if let Some(d) = r.durability {
                let _ = writeln!(
                    out,
                    "| {} | {:.0} | {:.0} | {:.1} |",
                    r.variant, d.disk_bytes, d.commits_per_s, d.records_per_commit
                );
            }
        }
        out.push_str(
            "\n| cold path | start → ready ms | first exchange ms | second exchange ms | issuer fetches |\n\
             |---|---:|---:|---:|---:|\n",
        );
        for c in &self.cold {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.2} | {:.2} | {} |",
                c.variant,
                ms(c.ready),
                ms(c.first),
                ms(c.second),
                c.fetches
            );
        }
        out.push_str("\n| target | measured | met |\n|---|---|---|\n");
        for (target, measured, met) in &self.targets {
            let met = match met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            };
            let _ = writeln!(out, "| {target} | {measured} | {met} |");
        }
        if !self.client_cpu_us.is_empty() {
            let max = self.client_cpu_us.iter().cloned().fold(0.0, f64::max);
            let min = self.client_cpu_us.iter().cloned().fold(f64::MAX, f64::min);
            let _ = writeln!(
                out,
                "\nLoad generator (this process, same machine): {min:.0}–{max:.0} µs CPU per request."
            );
        }
        let errors = self.errors();
        if errors > 0 {
            let _ = writeln!(out, "\n**FLAGGED: {errors} exchanges failed.**");
            for r in self.rows.iter().filter(|r| r.errors > 0) {
                let _ = writeln!(
                    out,
                    "- {}: {}",
                    r.variant,
                    r.first_error.as_deref().unwrap_or("?")
                );
            }
        } else {
            out.push_str("\nEvery response was checked (200 and an access_token): no errors.\n");
        }
        out
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A share as a whole percentage, or a dash where it was not measured.
pub fn percent(share: Option<f64>) -> String {
    share.map_or("—".to_owned(), |s| format!("{:.0}%", s * 100.0))
}
