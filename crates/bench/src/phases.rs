//! The run: which processes start, in what order, and what is measured on each.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::Args;
use crate::child::{self, Child, IdealDurable, Launch, Workdir};
use crate::floor::Floor;
use crate::issuer::{FakeIssuer, Minted};
use crate::load::{self, Outcome, Requests};
use crate::policies::{self, Shape};
use crate::report::{Cold, Durability, Row, Table};

/// A policies folder and the tokens its policies admit.
struct PolicySet<'a> {
    files: &'a [(String, String)],
    tokens: &'a [Minted],
    setup: &'a str,
}

/// What every phase needs.
struct Run<'a> {
    args: &'a Args,
    work: Workdir,
    issuer: FakeIssuer,
    table: Table,
}

/// Runs every phase and returns the filled table (also printed on stdout).
pub async fn run(args: &Args) -> anyhow::Result<Table> {
    let broker_bin = broker_bin(args)?;
    let issuer = FakeIssuer::start()?;
    let small = Shape {
        issuers: 1,
        per_issuer: 10,
    };
    let many = match args.smoke {
        true => Shape {
            issuers: 10,
            per_issuer: 20,
        },
        false => Shape {
            issuers: 100,
            per_issuer: 100,
        },
    };
    eprintln!(
        "bench: minting {} RS256 tokens per policy set…",
        args.tokens()
    );
    let small_tokens = issuer.mint_all(args.tokens(), small.issuers, small.per_issuer);
    let many_tokens = issuer.mint_all(args.tokens(), many.issuers, many.per_issuer);
    let small_files = policies::files(&issuer.base, small);
    let many_files = policies::files(&issuer.base, many);

    let mut run = Run {
        args,
        work: Workdir::new()?,
        issuer,
        table: Table::default(),
    };
    run.header(args);
    run.disk_floor().await;
    let serve = |extra: &str| Launch {
        bin: broker_bin.clone(),
        extra_config: extra.to_owned(),
        database_url: None,
    };
    // PostgreSQL rows when a server is named: the database commit as the durable write
    // (several replicas), and with a local journal.
    let pg_server = args
        .postgres
        .clone()
        .or_else(|| std::env::var("TEST_DATABASE_URL").ok());
    let pg = |n: usize| {
        pg_server
            .as_deref()
            .and_then(|s| child::PostgresDb::create(s, n))
    };
    let (pg_commit, pg_journal) = match args.smoke {
        true => (None, None),
        false => (pg(1), pg(2)),
    };
    let on_pg = |db: &Option<child::PostgresDb>, extra: &str| {
        db.as_ref().map(|db| Launch {
            bin: broker_bin.clone(),
            extra_config: extra.to_owned(),
            database_url: Some(db.url.clone()),
        })
    };
    let journal_dir = run.work.path().join("pg-journal");
    let small_setup = format!("{} policies", small.total());
    let many_setup = format!(
        "{} policies over {} issuers",
        thousands(many.total()),
        many.issuers
    );

    eprintln!("bench: ideal handler…");
    let ideal = child::start_ideal(run.work.path(), IdealDurable::None).await?;
    let peak = run
        .measure(
            "ideal",
            "verify RS256, sign ES256".into(),
            &ideal,
            &small_tokens,
            None,
        )
        .await?;
    run.measure_paced("ideal @ 50% load", &ideal, &small_tokens, peak)
        .await?;
    drop(ideal);
    eprintln!("bench: ideal handler + durable journal…");
    let ideal = child::start_ideal(run.work.path(), IdealDurable::Journal).await?;
    let peak = run.measure(
        IDEAL_AUDIT,
        "as ideal, + one audit record per exchange, group-committed to the journal (fsync), indexed in SQLite".into(),
        &ideal,
        &small_tokens,
        Some(ideal_rate(&run.table)),
    )
    .await?;
    // What the durable record alone does to latency at half load: the broker's p99 there is
    // compared with the ideal's, and this row tells how much of the difference is the disk.
    run.measure_paced(
        "ideal + durable journal @ 50% load",
        &ideal,
        &small_tokens,
        peak,
    )
    .await?;
    drop(ideal);
    run.floors(&small_tokens).await?;

    let small_set = PolicySet {
        files: &small_files,
        tokens: &small_tokens,
        setup: &small_setup,
    };
    let many_set = PolicySet {
        files: &many_files,
        tokens: &many_tokens,
        setup: &many_setup,
    };
    let pg_journal_config = format!("audit_journal_dir = \"{}\"\n", journal_dir.display());
    let brokers = [
        ("broker ES256", Some(serve("")), "ES256", &small_set),
        ("broker RS256", Some(serve("")), "RS256", &small_set),
        ("broker EdDSA", Some(serve("")), "EdDSA", &small_set),
        (
            "broker ES256, many policies",
            Some(serve("")),
            "ES256",
            &many_set,
        ),
        (
            "broker ES256, os durability",
            Some(serve("audit_durability = \"os\"\n")),
            "ES256",
            &small_set,
        ),
        (
            "broker ES256, PostgreSQL commit",
            on_pg(&pg_commit, ""),
            "ES256",
            &small_set,
        ),
        (
            "broker ES256, PostgreSQL + journal",
            on_pg(&pg_journal, &pg_journal_config),
            "ES256",
            &small_set,
        ),
    ];
    for (variant, launch, alg, set) in brokers.into_iter().filter(|b| chosen(args, b.0)) {
        let Some(launch) = launch else {
            continue;
        };
        eprintln!("bench: {variant}…");
        let dir = variant.replace([' ', ','], "-");
        let broker = child::start_broker(run.work.path(), &dir, &launch, alg, set.files).await?;
        let (tokens, setup) = (set.tokens, set.setup);
        let setup = format!("{setup}, {alg}");
        let peak = run
            .measure(
                variant,
                setup,
                &broker,
                tokens,
                Some(ideal_rate(&run.table)),
            )
            .await?;
        if variant == "broker ES256" {
            run.index_lag(&broker, tokens).await;
        }
        // Half-load latency is measured on the default configuration.
        if variant == "broker ES256" {
            run.measure_paced("broker ES256 @ 50% load", &broker, tokens, peak)
                .await?;
        }
    }
    if chosen(args, "crash consistency") {
        run.crash_rounds(&serve(""), &small_set).await?;
    }
    run.targets();
    print!("{}", run.table.render());
    Ok(run.table)
}

impl Run<'_> {
    fn header(&mut self, args: &Args) {
        let (cores, model) = crate::procfs::machine();
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        self.table.header = vec![
            format!(
                "**Machine:** nproc {cores}, {model}; **date:** {now}; mode: {}",
                if args.smoke { "smoke" } else { "full" }
            ),
            format!(
                "**Load:** {} keep-alive connections closed-loop for {:.1} s per phase after {:.1} s \
                 warm-up; paced rows send at 50% of that variant's measured peak; {} distinct \
                 RS256 inbound tokens per policy set, reused round-robin.",
                args.connections,
                args.phase().as_secs_f64(),
                args.warmup().as_secs_f64(),
                args.tokens()
            ),
        ];
    }

    /// `kill -9` rounds at peak load on one broker's files (one round with `--smoke`).
    async fn crash_rounds(&mut self, launch: &Launch, set: &PolicySet<'_>) -> anyhow::Result<()> {
        let rounds = if self.args.smoke { 1 } else { 10 };
        eprintln!("bench: crash consistency, {rounds} × kill -9 at peak load…");
        let crash = crate::crash::rounds(
            self.work.path(),
            launch,
            set.files,
            set.tokens,
            self.args.connections,
            rounds,
        )
        .await?;
        self.table.crash = Some(crash);
        Ok(())
    }

    /// The disk's own cost of a group commit, before any server runs.
    async fn disk_floor(&mut self) {
        eprintln!("bench: the disk's cost of one page written and synced…");
        let dir = self.work.path().to_path_buf();
        let syncs = if self.args.smoke { 200 } else { 2000 };
        match tokio::task::spawn_blocking(move || crate::disk::measure(&dir, syncs)).await {
            Ok(Ok(floor)) => self.table.disk = Some(floor),
            Ok(Err(e)) => eprintln!("bench: the disk floor could not be measured: {e}"),
            Err(e) => eprintln!("bench: the disk floor could not be measured: {e}"),
        }
    }

    /// The bare group commits beside the ideal + durable journal (peak only).
    async fn floors(&mut self, tokens: &[Minted]) -> anyhow::Result<()> {
        for (variant, floor, setup) in FLOORS.into_iter().filter(|f| chosen(self.args, f.0)) {
            eprintln!("bench: {variant}…");
            let ideal = child::start_ideal(self.work.path(), IdealDurable::Floor(floor)).await?;
            let ideal_rate = ideal_rate(&self.table);
            self.measure(variant, setup.into(), &ideal, tokens, Some(ideal_rate))
                .await?;
        }
        Ok(())
    }

    /// Cold path (for brokers), warm-up, then a closed-loop peak; pushes the row.
    async fn measure(
        &mut self,
        variant: &'static str,
        setup: String,
        child: &Child,
        tokens: &[Minted],
        ideal: Option<f64>,
    ) -> anyhow::Result<f64> {
        let requests = load::requests(child.addr, tokens);
        // Only brokers fetch issuers' keys; the ideal handlers have them built in.
        if !variant.starts_with("ideal") {
            self.cold(variant, child, &requests).await?;
        }
        let warm = load::closed_loop(
            child.addr,
            &requests,
            self.args.connections,
            self.args.warmup(),
        )
        .await;
        let (outcome, row) = self
            .observe(
                child,
                load::closed_loop(
                    child.addr,
                    &requests,
                    self.args.connections,
                    self.args.phase(),
                ),
            )
            .await;
        let rate = outcome.rate();
        self.push(variant, setup, outcome, row, warm, ideal.map(|i| rate / i));
        Ok(rate)
    }

    /// An open-loop phase at half of `peak`.
    async fn measure_paced(
        &mut self,
        variant: &'static str,
        child: &Child,
        tokens: &[Minted],
        peak: f64,
    ) -> anyhow::Result<()> {
        let requests = load::requests(child.addr, tokens);
        let rate = (peak / 2.0).max(1.0);
        let (outcome, row) = self
            .observe(
                child,
                load::paced(
                    child.addr,
                    &requests,
                    self.args.connections,
                    rate,
                    self.args.phase(),
                ),
            )
            .await;
        let setup = format!("paced at {rate:.0}/s");
        self.push(variant, setup, outcome, row, Outcome::default(), None);
        Ok(())
    }

    /// Runs `load` and measures the server's CPU, memory, disk writes and audit commits,
    /// this process's CPU, and the machine's idle share.
    async fn observe(
        &mut self,
        child: &Child,
        load: impl std::future::Future<Output = Outcome>,
    ) -> (Outcome, Observed) {
        let me = std::process::id();
        let commits_before = child.audit_commits().await;
        let (before, mine) = (child.usage(), crate::procfs::cpu_time(me));
        let machine_before = crate::procfs::machine_ticks();
        let outcome = load.await;
        let machine_after = crate::procfs::machine_ticks();
        let (after, mine_after) = (child.usage(), crate::procfs::cpu_time(me));
        let commits_after = child.audit_commits().await;
        if let (Some(a), Some(b)) = (mine, mine_after)
            && outcome.ok + outcome.errors > 0
        {
            let requests = (outcome.ok + outcome.errors) as f64;
            self.table
                .client_cpu_us
                .push((b - a).as_secs_f64() * 1e6 / requests);
        }
        let ok = outcome.ok.max(1) as f64;
        let seconds = outcome.elapsed.as_secs_f64().max(1e-9);
        let durability = match (commits_before, commits_after) {
            (Some((c0, r0)), Some((c1, r1))) if c1 > c0 => Some(Durability {
                disk_bytes: after.write_bytes.saturating_sub(before.write_bytes) as f64 / ok,
                commits_per_s: (c1 - c0) / seconds,
                records_per_commit: (r1 - r0) / (c1 - c0),
            }),
            _ => None,
        };
        let idle = match (machine_before, machine_after) {
            (Some((i0, t0)), Some((i1, t1))) if t1 > t0 => {
                Some(i1.saturating_sub(i0) as f64 / (t1 - t0) as f64)
            }
            _ => None,
        };
        let observed = Observed {
            cpu: after.cpu.saturating_sub(before.cpu),
            idle,
            rss_kib: (after.rss_kib, after.peak_kib),
            durability,
        };
        (outcome, observed)
    }

    /// How long after its answer a decision shows in the audit list, sampled a few times
    /// while the peak load runs.
    async fn index_lag(&mut self, child: &Child, tokens: &[Minted]) {
        let requests = load::requests(child.addr, tokens);
        let load = load::closed_loop(
            child.addr,
            &requests,
            self.args.connections,
            self.args.phase(),
        );
        let probe = async {
            let mut worst = Duration::ZERO;
            let mut samples = 0;
            let deadline = Instant::now() + self.args.phase();
            // The probe is a denial (an audience no policy grants): at peak thousands of
            // allowed records a second would push it out of any page of the newest records
            // before the list could show it, while denials are the probe's alone, so
            // `decision=deny` finds it on the first page as soon as it is indexed.
            let denied: Vec<Minted> = tokens
                .iter()
                .map(|m| Minted {
                    token: m.token.clone(),
                    audience: "https://no-such-api.bench.example".into(),
                })
                .collect();
            let probes = load::requests(child.addr, &denied);
            while samples == 0 || Instant::now() + Duration::from_secs(1) < deadline {
                let probe_request = &probes[samples % probes.len()];
                let Ok(id) = load::single_with_id(child.addr, probe_request, "400").await else {
                    break;
                };
                let answered = Instant::now();
                loop {
                    let listed = load::get_with_bearer(
                        child.addr,
                        "/admin/v1/audit?decision=deny&limit=50",
                        child::BENCH_TOKEN,
                    )
                    .await
                    .is_some_and(|(status, body)| status == 200 && body.contains(&id));
                    if listed || answered.elapsed() > Duration::from_secs(5) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                worst = worst.max(answered.elapsed());
                samples += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            (worst, samples)
        };
        let (_, (worst, samples)) = tokio::join!(load, probe);
        if samples > 0 {
            self.table.index_lag = Some((worst, samples));
        }
    }

    fn push(
        &mut self,
        variant: &'static str,
        setup: String,
        mut outcome: Outcome,
        observed: Observed,
        warm: Outcome,
        vs_ideal: Option<f64>,
    ) {
        let Observed {
            cpu,
            idle,
            rss_kib,
            durability,
        } = observed;
        let p50 = outcome.quantile(0.50);
        let p99 = outcome.quantile(0.99);
        self.table.rows.push(Row {
            variant,
            setup,
            rate: outcome.rate(),
            p50,
            p99,
            cpu_us: cpu.as_secs_f64() * 1e6 / outcome.ok.max(1) as f64,
            idle,
            rss_kib,
            errors: outcome.errors + warm.errors,
            first_error: outcome.first_error.or(warm.first_error),
            vs_ideal,
            durability,
        });
    }

    /// The first two exchanges after start: cold keys, then cached keys.
    async fn cold(
        &mut self,
        variant: &'static str,
        child: &Child,
        requests: &Requests,
    ) -> anyhow::Result<()> {
        let fetched = self.issuer.fetch_count();
        let first = load::single(child.addr, &requests[0]).await.map_err(|e| {
            anyhow::anyhow!(
                "{variant}: first exchange failed: {e}\n{}",
                child.log_tail()
            )
        })?;
        let fetches = self.issuer.fetch_count() - fetched;
        let second = load::single(child.addr, &requests[1 % requests.len()])
            .await
            .map_err(|e| anyhow::anyhow!("{variant}: second exchange failed: {e}"))?;
        self.table.cold.push(Cold {
            variant,
            ready: child.ready_after,
            first,
            second,
            fetches,
        });
        Ok(())
    }

    /// Compares rows with the targets.
    fn targets(&mut self) {
        let t = &self.table;
        let get = |v: &str| t.row(v).cloned();
        let mut out = Vec::new();
        if let (Some(ideal), Some(es)) = (get("ideal"), get("broker ES256")) {
            let ratio = es.rate / ideal.rate;
            out.push((
                "broker ES256 throughput ≥ 85% of ideal".to_owned(),
                format!("{:.0}%", ratio * 100.0),
                Some(ratio >= 0.85),
            ));
            out.push((
                "CPU per exchange, broker ES256 ÷ ideal".to_owned(),
                format!(
                    "{:.2}× ({:.0} vs {:.0} µs)",
                    es.cpu_us / ideal.cpu_us,
                    es.cpu_us,
                    ideal.cpu_us
                ),
                None,
            ));
        }
        if let (Some(ideal), Some(durable)) = (get("ideal"), get(IDEAL_AUDIT)) {
            let ratio = durable.rate / ideal.rate;
            out.push((
                "ideal + durable journal ≥ 90% of ideal".to_owned(),
                format!(
                    "{:.0}% ({:+.0} µs CPU per exchange; machine idle {} against the ideal's {})",
                    ratio * 100.0,
                    durable.cpu_us - ideal.cpu_us,
                    crate::report::percent(durable.idle),
                    crate::report::percent(ideal.idle),
                ),
                Some(ratio >= 0.90),
            ));
        }
        if let Some(ideal) = get("ideal") {
            let floors: Vec<String> = FLOORS
                .iter()
                .filter_map(|(variant, _, _)| {
                    let row = get(variant)?;
                    Some(format!(
                        "{} {:.0}% ({:+.0} µs)",
                        variant.trim_start_matches("ideal + "),
                        row.rate / ideal.rate * 100.0,
                        row.cpu_us - ideal.cpu_us
                    ))
                })
                .collect();
            if !floors.is_empty() {
                out.push((
                    "the durable write's floor at this load: bare group commits ÷ ideal (CPU per exchange against the ideal's)".to_owned(),
                    floors.join("; "),
                    None,
                ));
            }
        }
        if let (Some(durable), Some(es)) = (get(IDEAL_AUDIT), get("broker ES256")) {
            out.push((
                "broker ES256 vs ideal + durable journal (throughput, CPU)".to_owned(),
                format!(
                    "{:.0}%, {:+.0} µs CPU per exchange ({:.0} vs {:.0} µs)",
                    es.rate / durable.rate * 100.0,
                    es.cpu_us - durable.cpu_us,
                    es.cpu_us,
                    durable.cpu_us
                ),
                None,
            ));
        }
        if let Some(d) = get("broker ES256").and_then(|r| r.durability) {
            out.push((
                "≤ 1.5 KB written to disk per exchange (journal and index)".to_owned(),
                format!(
                    "{:.0} B ({:.0} group commits/s, {:.1} records each)",
                    d.disk_bytes, d.commits_per_s, d.records_per_commit
                ),
                Some(d.disk_bytes <= 1536.0),
            ));
        }
        if let (Some(few), Some(many)) = (get("broker ES256"), get("broker ES256, many policies")) {
            let loss = 1.0 - many.rate / few.rate;
            out.push((
                "many policies: throughput loss < 10%".to_owned(),
                format!("{:.1}% ({})", loss * 100.0, many.setup),
                Some(loss < 0.10),
            ));
            let mb = many.rss_kib.0 as f64 / 1024.0;
            // "With 10,000 policies loaded": resident after the peak phase, loaded and under
            // load. The start-up peak, while the files are parsed beside the compiled set, is
            // shown beside it but is not that state.
            out.push((
                "many policies: RSS < 50 MB (after load; start-up peak shown)".to_owned(),
                format!("{mb:.1} MB (peak {:.1})", many.rss_kib.1 as f64 / 1024.0),
                Some(many.rss_kib.0 < 50 * 1024),
            ));
        }
        if let (Some(paced), Some(ideal)) =
            (get("broker ES256 @ 50% load"), get("ideal @ 50% load"))
        {
            let ratio = paced.p99.as_secs_f64() / ideal.p99.as_secs_f64().max(1e-9);
            out.push((
                "p99 at 50% of peak ≤ 2× the ideal's p99 at 50%".to_owned(),
                format!(
                    "{:.2}× ({:.2} vs {:.2} ms)",
                    ratio,
                    paced.p99.as_secs_f64() * 1e3,
                    ideal.p99.as_secs_f64() * 1e3
                ),
                Some(ratio <= 2.0),
            ));
        }
        if let (Some(paced), Some(ideal)) = (
            get("ideal + durable journal @ 50% load"),
            get("ideal @ 50% load"),
        ) {
            out.push((
                "p99 at 50% of peak, ideal + durable journal ÷ ideal (the disk's share)".to_owned(),
                format!(
                    "{:.2}× ({:.2} vs {:.2} ms)",
                    paced.p99.as_secs_f64() / ideal.p99.as_secs_f64().max(1e-9),
                    paced.p99.as_secs_f64() * 1e3,
                    ideal.p99.as_secs_f64() * 1e3
                ),
                None,
            ));
        }
        if let Some((lag, samples)) = t.index_lag {
            out.push((
                "audit list lags the answer by ≤ 1 s at peak (broker ES256)".to_owned(),
                format!(
                    "{:.0} ms at worst ({samples} samples)",
                    lag.as_secs_f64() * 1e3
                ),
                Some(lag <= Duration::from_secs(1)),
            ));
        }
        if let Some(disk) = t.disk {
            let per_record = get("broker ES256")
                .and_then(|r| r.durability)
                .map(|d| {
                    format!(
                        "; {:.1} µs CPU per record at the broker's {:.1} records per commit",
                        disk.cpu.as_secs_f64() * 1e6 / d.records_per_commit.max(1.0),
                        d.records_per_commit
                    )
                })
                .unwrap_or_default();
            let vs_ideal = get("ideal @ 50% load")
                .map(|i| {
                    format!(
                        "; p99 = {:.2}× the ideal's p99 at 50%",
                        disk.p99.as_secs_f64() / i.p99.as_secs_f64().max(1e-9)
                    )
                })
                .unwrap_or_default();
            out.push((
                "the disk's floor: one page written + fdatasync, as one group commit".to_owned(),
                format!(
                    "p50 {:.2} ms, p99 {:.2} ms, {:.0} µs CPU ({} syncs){per_record}{vs_ideal}",
                    disk.p50.as_secs_f64() * 1e3,
                    disk.p99.as_secs_f64() * 1e3,
                    disk.cpu.as_secs_f64() * 1e6,
                    disk.syncs
                ),
                None,
            ));
        }
        if let Some(crash) = &t.crash {
            let example = crash
                .first_missing
                .as_ref()
                .map(|id| format!(" (e.g. {id})"))
                .unwrap_or_default();
            out.push((
                "kill -9 at peak load, restart on the same files: every exchange answered 200 \
                 has its record, once"
                    .to_owned(),
                format!(
                    "{} rounds, {} acknowledged exchanges: {} missing{example}, {} twice",
                    crash.rounds,
                    thousands(crash.acknowledged),
                    crash.missing,
                    crash.twice
                ),
                Some(crash.held()),
            ));
        }
        if let Some(cold) = t.cold.first() {
            out.push((
                "cold path: first exchange (discovery + JWKS + key parsing)".to_owned(),
                format!(
                    "{:.2} ms vs {:.2} ms warm ({} issuer requests)",
                    cold.first.as_secs_f64() * 1e3,
                    cold.second.as_secs_f64() * 1e3,
                    cold.fetches
                ),
                None,
            ));
        }
        self.table.targets = out;
    }
}

/// What one phase cost the server, and what it left of the machine.
struct Observed {
    cpu: Duration,
    /// The machine's idle share of its CPU time.
    idle: Option<f64>,
    rss_kib: (u64, u64),
    durability: Option<Durability>,
}

/// The ideal handler with the durability requirement added.
const IDEAL_AUDIT: &str = "ideal + durable journal";

/// The durable journal row's cost, split: the mechanics and a sync's latency, then the
/// disk's work into new space (as the journal), then into space written before.
const FLOORS: [(&str, Floor, &str); 3] = [
    (
        "ideal + bare wait",
        Floor::Wait,
        "as ideal, + a wait per exchange for a group commit thread by the journal's mechanics (channel, 200 µs gather, oneshot answer) that sleeps 0.2 ms, a sync's wall time, instead of any I/O",
    ),
    (
        "ideal + bare fsync",
        Floor::Fsync,
        "as bare wait, but the thread writes 512 B per exchange into a preallocated file and fdatasyncs once per group, as the journal must: no encoding, framing or index",
    ),
    (
        "ideal + bare fsync, written blocks",
        Floor::Overwrite,
        "as bare fsync, into blocks written before: no sync converts a preallocated extent",
    ),
];

/// Whether `--only` selects this variant (every variant without it).
fn chosen(args: &Args, variant: &str) -> bool {
    args.only
        .as_ref()
        .is_none_or(|o| variant.contains(o.as_str()))
}

fn ideal_rate(table: &Table) -> f64 {
    table.row("ideal").map_or(f64::NAN, |r| r.rate)
}

/// `10000` as `10,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The `sts-broker` binary: `--broker-bin`, else the one beside this binary, which is built
/// first when cargo runs the benchmark (so `cargo run --release --bin bench` is enough).
fn broker_bin(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(bin) = &args.broker_bin {
        return Ok(bin.clone());
    }
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("sts-broker");
    if let (Some(cargo), Some(manifest)) = (
        std::env::var_os("CARGO"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
    ) {
        let release = exe
            .parent()
            .and_then(|d| d.file_name())
            .is_some_and(|d| d == "release");
        eprintln!("bench: building sts-broker…");
        let mut build = std::process::Command::new(cargo);
        build.current_dir(manifest).args([
            "build",
            "--quiet",
            "-p",
            "sts-broker",
            "--bin",
            "sts-broker",
        ]);
        if release {
            build.arg("--release");
        }
        let status = build.status().context("running cargo build")?;
        if !status.success() {
            bail!("cargo build --bin sts-broker failed");
        }
    }
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release --bins` or pass --broker-bin",
            bin.display()
        );
    }
    Ok(bin)
}
