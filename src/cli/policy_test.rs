//! `policy test DIR [PATH…]`: the PolicyTest cases of DIR and of each PATH, run offline
//! against the policies of DIR. One line per case, then `N passed, M failed`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::load_config;
use crate::config::Config;
use crate::exchange::Lifetimes;
use crate::policy::Limits;
use crate::policy::load::{Bundle, Origin, yaml_files};
use crate::proof::{CaseResult, Minting, Suite, junit};

/// What to test, and where to write a JUnit report.
#[derive(Debug)]
pub struct TestArgs {
    /// The policies folder (its PolicyTest documents run too).
    pub dir: PathBuf,
    /// More files or folders of PolicyTest documents.
    pub paths: Vec<PathBuf>,
    /// JUnit XML report file.
    pub junit: Option<PathBuf>,
}

/// Runs the suite. Exit 0 when every case passes, 1 when one fails (or a test document or
/// the policies are invalid), 2 on usage or environment errors.
pub fn run(config: Option<PathBuf>, args: &TestArgs) -> ExitCode {
    let config = match load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let extra = match test_files(&args.dir, &args.paths) {
        Ok(files) => files,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let loaded = Bundle::read_dir(&args.dir);
    let set = match loaded.compile_over(&[], &[], &limits(&config)) {
        Ok(set) => set,
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            eprintln!(
                "{} error(s) in the policies of {}: no test ran",
                errors.len(),
                args.dir.display()
            );
            return ExitCode::from(1);
        }
    };
    let more = Bundle::read_files(&extra);
    let tests: Vec<Origin> = loaded.tests.into_iter().chain(more.tests).collect();
    let suite = Suite::load(&tests, &set, crate::jose::unix_now());
    // A PATH is meant to hold tests: a document there that cannot be read might have been
    // one, and must not be skipped in silence.
    let mut results: Vec<CaseResult> = more.errors.iter().map(unreadable).collect();
    results.extend(suite.run(&set, &minting(&config)));
    report(&results, args.junit.as_deref())
}

/// Prints the results (and writes the JUnit report); the exit code they call for.
fn report(results: &[CaseResult], junit_file: Option<&Path>) -> ExitCode {
    for r in results {
        match &r.failure {
            None => println!("ok {}", r.name),
            Some(why) => println!("FAIL {}: {why}", r.name),
        }
    }
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    println!("{} passed, {failed} failed", results.len() - failed);
    if results.is_empty() {
        eprintln!("note: no PolicyTest documents were found");
    }
    if let Some(file) = junit_file
        && let Err(e) = std::fs::write(file, junit::report(results))
    {
        eprintln!("error: cannot write {}: {e}", file.display());
        return ExitCode::from(2);
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The files of each PATH (a file, or a folder's `*.yaml`/`*.yml`, not recursive) that are
/// not already among DIR's: a file named twice runs once.
fn test_files(dir: &Path, paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a folder", dir.display()));
    }
    let listed = |folder: &Path| yaml_files(folder).map_err(|e| e.to_string());
    let mut seen: HashSet<PathBuf> = listed(dir)?.iter().filter_map(canonical).collect();
    let mut files = Vec::new();
    for path in paths {
        let found = if path.is_dir() {
            listed(path)?
        } else if path.is_file() {
            vec![path.clone()]
        } else {
            return Err(format!("{} is neither a file nor a folder", path.display()));
        };
        for file in found {
            if canonical(&file).is_none_or(|c| seen.insert(c)) {
                files.push(file);
            }
        }
    }
    Ok(files)
}

fn canonical(path: &PathBuf) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok()
}

fn unreadable(e: &crate::policy::load::LoadError) -> CaseResult {
    CaseResult {
        name: format!("{}:{}", e.file, e.line),
        file: e.file.clone(),
        line: e.line,
        failure: Some(e.to_string()),
    }
}

fn limits(config: &Config) -> Limits {
    Limits {
        max_ttl: config.max_ttl.0,
        allow_insecure_loopback_issuers: config.allow_insecure_loopback_issuers,
        // Tests run offline: a GitHub grant is decided, never asked of GitHub.
        read_app_keys: false,
    }
}

/// The `iss` and lifetimes the configured broker would issue with.
fn minting(config: &Config) -> Minting {
    Minting {
        issuer_url: config.issuer_url(),
        lifetimes: Lifetimes {
            default_ttl: config.default_ttl.0,
            max_ttl: config.max_ttl.0,
        },
    }
}
