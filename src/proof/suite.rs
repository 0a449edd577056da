//! A suite: every test document found, each either a runnable case or a broken document
//! that counts as failed, so that one run reports every case.

use std::collections::HashMap;

use super::expect::differences;
use super::{Case, Minting};
use crate::policy::PolicySet;
use crate::policy::load::{LoadError, Origin};
use crate::policy::test_case::{self, TEST_KIND};

/// The cases of a suite, in the order their documents were found.
#[derive(Debug)]
pub struct Suite {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    /// The test's name, or `file:line` when the document has no usable one.
    name: String,
    file: String,
    line: usize,
    case: Result<Case, LoadError>,
}

/// How one case ended.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// The test's name (`file:line` for a document without a usable one).
    pub name: String,
    /// The file of its document.
    pub file: String,
    /// The line of its name (or where its document starts).
    pub line: usize,
    /// What differed, or why its document is invalid; `None`: passed.
    pub failure: Option<String>,
}

impl Suite {
    /// The cases of `tests` against `set`; see [`Case::compile`] for `wall_now`.
    pub fn load(tests: &[Origin], set: &PolicySet, wall_now: i64) -> Self {
        let mut names = Names::default();
        let entries = tests
            .iter()
            .map(|origin| {
                let case = test_case::read(origin)
                    .and_then(|doc| names.claim(&doc.name, origin).map(|()| doc))
                    .and_then(|doc| Case::compile(doc, origin, set, wall_now));
                Entry {
                    name: name_of(origin),
                    file: origin.file.display().to_string(),
                    // The line of its name, not of the comments above the document.
                    line: origin.line_of(Some("name")),
                    case,
                }
            })
            .collect();
        Self { entries }
    }

    /// Runs every case.
    pub fn run(&self, set: &PolicySet, minting: &Minting) -> Vec<CaseResult> {
        self.entries
            .iter()
            .map(|entry| CaseResult {
                name: entry.name.clone(),
                file: entry.file.clone(),
                line: entry.line,
                failure: match &entry.case {
                    Err(e) => Some(e.to_string()),
                    Ok(case) => {
                        let found = differences(case.expect(), &case.run(set, minting));
                        (!found.is_empty()).then(|| found.join("; "))
                    }
                },
            })
            .collect()
    }
}

/// Every error of the test documents `tests`, for `policy lint`: their shape, unique names,
/// and, when the policies compiled (`set`), the issuers and policies they name.
pub fn check(tests: &[Origin], set: Option<&PolicySet>) -> Vec<LoadError> {
    let mut names = Names::default();
    tests
        .iter()
        .filter_map(|origin| {
            test_case::read(origin)
                .and_then(|doc| names.claim(&doc.name, origin).map(|()| doc))
                .and_then(|doc| super::case::check(&doc, origin, set))
                .err()
        })
        .collect()
}

/// Test names seen so far, with where each was first defined.
#[derive(Default)]
struct Names(HashMap<String, String>);

impl Names {
    fn claim(&mut self, name: &str, origin: &Origin) -> Result<(), LoadError> {
        let here = format!("{}:{}", origin.file.display(), origin.line_of(Some("name")));
        match self.0.get(name) {
            Some(first) => Err(origin.error_at(
                "name",
                format!("duplicate {TEST_KIND} name {name:?} (first defined at {first})"),
            )),
            None => {
                self.0.insert(name.to_owned(), here);
                Ok(())
            }
        }
    }
}

fn name_of(origin: &Origin) -> String {
    test_case::name_of(origin)
        .unwrap_or_else(|| format!("{}:{}", origin.file.display(), origin.line))
}
