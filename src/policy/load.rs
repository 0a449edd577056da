//! Reading policy documents from YAML files, with the file and line of every error.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::document::{IssuerDoc, Kind, TrustPolicyDoc};
use super::set::{DocError, Limits, PolicySet};

/// Policy files larger than this are refused (a policy file is hand-written text).
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Where a document came from.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The file.
    pub file: PathBuf,
    /// 1-based line of the document's first line.
    pub line: usize,
    /// The document's text, to find a field's line.
    text: String,
}

impl Origin {
    /// The line of a (dotted) field inside the document, or the document's first line.
    pub fn line_of(&self, field: Option<&str>) -> usize {
        let Some(field) = field else { return self.line };
        let lines: Vec<&str> = self.text.lines().collect();
        let mut from = 0;
        for key in field.split('.') {
            let found = lines[from..].iter().position(|l| {
                let t = l.trim_start().trim_start_matches("- ");
                t.strip_prefix(key)
                    .is_some_and(|r| r.trim_start().starts_with(':'))
            });
            match found {
                Some(i) => from += i,
                None => break,
            }
        }
        self.line + from
    }
}

/// An error in a policy file, located.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadError {
    /// The file (or a description of the source).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// Why.
    pub reason: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// Documents read from files, each with its origin.
#[derive(Debug, Default)]
pub struct Bundle {
    /// `kind: Issuer` documents.
    pub issuers: Vec<(IssuerDoc, Origin)>,
    /// `kind: TrustPolicy` documents.
    pub policies: Vec<(TrustPolicyDoc, Origin)>,
}

impl Bundle {
    /// Reads every `*.yaml`/`*.yml` file of `dir` (not recursive), in name order.
    pub fn load_dir(dir: &Path) -> Result<Self, Vec<LoadError>> {
        let io_err = |reason: String| {
            vec![LoadError {
                file: dir.display().to_string(),
                line: 0,
                reason,
            }]
        };
        let entries = std::fs::read_dir(dir).map_err(|e| io_err(format!("cannot read: {e}")))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        let mut bundle = Bundle::default();
        let mut errors = Vec::new();
        for file in files {
            match read_file(&file) {
                Ok(text) => bundle.add_text(&file, &text, &mut errors),
                Err(reason) => errors.push(LoadError {
                    file: file.display().to_string(),
                    line: 0,
                    reason,
                }),
            }
        }
        bundle.check_duplicates(&mut errors);
        if errors.is_empty() {
            Ok(bundle)
        } else {
            Err(errors)
        }
    }

    /// Parses one file's text (multi-document YAML).
    pub fn parse_str(file: &Path, text: &str) -> Result<Self, Vec<LoadError>> {
        let mut bundle = Bundle::default();
        let mut errors = Vec::new();
        bundle.add_text(file, text, &mut errors);
        bundle.check_duplicates(&mut errors);
        if errors.is_empty() {
            Ok(bundle)
        } else {
            Err(errors)
        }
    }

    fn add_text(&mut self, file: &Path, text: &str, errors: &mut Vec<LoadError>) {
        if let Some(e) = foreign_line_break(file, text) {
            errors.push(e);
            return;
        }
        for (line, chunk) in split_documents(text) {
            let origin = Origin {
                file: file.to_path_buf(),
                line,
                text: chunk.to_owned(),
            };
            if let Err(e) = self.add_document(origin) {
                errors.push(e);
            }
        }
    }

    fn add_document(&mut self, origin: Origin) -> Result<(), LoadError> {
        #[derive(Deserialize)]
        struct Probe {
            kind: Option<String>,
        }
        let fail = |line: usize, reason: String| LoadError {
            file: origin.file.display().to_string(),
            line,
            reason,
        };
        let located = |e: serde_yaml_ng::Error| {
            let line = e
                .location()
                .map_or(origin.line, |l| origin.line + l.line() - 1);
            fail(line, strip_location(&e.to_string()))
        };
        let probe: Probe = serde_yaml_ng::from_str(&origin.text).map_err(located)?;
        match probe.kind.as_deref().map(Kind::parse) {
            Some(Some(Kind::Issuer)) => {
                let doc: IssuerDoc = serde_yaml_ng::from_str(&origin.text).map_err(located)?;
                self.issuers.push((doc, origin));
            }
            Some(Some(Kind::TrustPolicy)) => {
                let doc: TrustPolicyDoc = serde_yaml_ng::from_str(&origin.text).map_err(located)?;
                self.policies.push((doc, origin));
            }
            Some(None) => {
                return Err(fail(
                    origin.line_of(Some("kind")),
                    "unknown kind: expected `Issuer` or `TrustPolicy`".into(),
                ));
            }
            None => {
                return Err(fail(
                    origin.line,
                    "missing `kind` (Issuer or TrustPolicy)".into(),
                ));
            }
        }
        Ok(())
    }

    fn check_duplicates(&self, errors: &mut Vec<LoadError>) {
        let mut seen: HashMap<(Kind, &str), &Origin> = HashMap::new();
        let all = self
            .issuers
            .iter()
            .map(|(d, o)| (Kind::Issuer, d.name.as_str(), o))
            .chain(
                self.policies
                    .iter()
                    .map(|(d, o)| (Kind::TrustPolicy, d.name.as_str(), o)),
            );
        for (kind, name, origin) in all {
            if let Some(first) = seen.insert((kind, name), origin) {
                errors.push(LoadError {
                    file: origin.file.display().to_string(),
                    line: origin.line_of(Some("name")),
                    reason: format!(
                        "duplicate {} name {name:?} (first defined at {}:{})",
                        kind.as_str(),
                        first.file.display(),
                        first.line_of(Some("name"))
                    ),
                });
            }
        }
    }

    /// Compiles these documents over `base` (documents already in force, e.g. from the
    /// database); a file's document replaces the base document of the same kind and name.
    pub fn compile_over(
        &self,
        base_issuers: &[IssuerDoc],
        base_policies: &[TrustPolicyDoc],
        limits: &Limits,
    ) -> Result<PolicySet, Vec<LoadError>> {
        let issuers = overlay(base_issuers, &self.issuers, |d| &d.name);
        let policies = overlay(base_policies, &self.policies, |d| &d.name);
        PolicySet::compile(&issuers, &policies, limits)
            .map_err(|errs| errs.into_iter().map(|e| self.locate(e)).collect())
    }

    /// Finds the file and line of a validation error.
    pub fn locate(&self, e: DocError) -> LoadError {
        let origin = match e.kind {
            Kind::Issuer => self
                .issuers
                .iter()
                .find(|(d, _)| d.name == e.name)
                .map(|(_, o)| o),
            Kind::TrustPolicy => self
                .policies
                .iter()
                .find(|(d, _)| d.name == e.name)
                .map(|(_, o)| o),
        };
        match origin {
            Some(o) => LoadError {
                file: o.file.display().to_string(),
                line: o.line_of(e.field.as_deref()),
                reason: e.to_string(),
            },
            None => LoadError {
                file: "(stored document)".into(),
                line: 0,
                reason: e.to_string(),
            },
        }
    }
}

/// The documents in force once `files` are applied over `base`: borrowed, not cloned (with
/// 10,000 policies a copy of every document was the largest allocation of start-up), and
/// matched by name through a set, not by scanning the files for each base document.
fn overlay<'a, T>(
    base: &'a [T],
    files: &'a [(T, Origin)],
    name: impl Fn(&T) -> &String,
) -> Vec<&'a T> {
    let from_files: HashSet<&String> = files.iter().map(|(f, _)| name(f)).collect();
    base.iter()
        .filter(|b| !from_files.contains(name(b)))
        .chain(files.iter().map(|(f, _)| f))
        .collect()
}

fn read_file(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))
}

/// YAML (1.1, as the parser reads it) also breaks lines at a lone `\r`, U+0085, U+2028 and
/// U+2029, which editors, diffs and our line numbers do not: a reviewer would see one line
/// where the parser sees two. Policy files must use `\n` or `\r\n`.
fn foreign_line_break(file: &Path, text: &str) -> Option<LoadError> {
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let lone_cr = c == '\r' && chars.peek().map(|&(_, n)| n) != Some('\n');
        if lone_cr || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}') {
            return Some(LoadError {
                file: file.display().to_string(),
                line: text[..at].matches('\n').count() + 1,
                reason: format!(
                    "line break {:?} is not allowed; use \\n or \\r\\n line endings",
                    c
                ),
            });
        }
    }
    None
}

/// Splits multi-document YAML at `---` lines, keeping each document's first line number.
/// Documents that hold only comments or blank lines are skipped.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let is_marker = line.starts_with("---")
            && line[3..]
                .chars()
                .next()
                .is_none_or(|c| c.is_whitespace() || c == '#');
        if is_marker {
            docs.push((start_line, &text[start_byte..offset]));
            start_byte = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start_byte..]));
    docs.into_iter().filter(|(_, d)| has_content(d)).collect()
}

fn has_content(doc: &str) -> bool {
    doc.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#') && t != "..."
    })
}

/// serde_yaml appends "at line X column Y"; we print our own file:line instead.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LIMITS: Limits = Limits {
        max_ttl: Duration::from_secs(3600),
        allow_insecure_loopback_issuers: false,
    };

    fn compile(text: &str) -> Result<PolicySet, Vec<String>> {
        let strs = |v: Vec<LoadError>| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        Bundle::parse_str(Path::new("p.yaml"), text)
            .map_err(strs)?
            .compile_over(&[], &[], &LIMITS)
            .map_err(strs)
    }

    const ISSUER: &str = "kind: Issuer\nname: gh\nurl: https://token.actions.githubusercontent.com\naudiences: [sts]\n";

    #[test]
    fn parses_multi_document_files() {
        let text = format!(
            "# comment\n{ISSUER}---\nkind: TrustPolicy\nname: p\nissuer: gh\nsubject: repo:acme/api:ref:refs/heads/main\ngrant:\n  audience: api\n  scopes: [read]\n"
        );
        let set = compile(&text).unwrap();
        assert_eq!(set.policies_for("gh").len(), 1);
        assert_eq!(set.issuer("gh").unwrap().subject_prefix, "gh:");
    }

    #[test]
    fn errors_name_file_line_and_reason() {
        let cases = [
            (
                format!(
                    "{ISSUER}---\nkind: TrustPolicy\nname: p\nissuer: gh\nsubject: x\ngrant:\n  audience: a\n  ttl: 2h\n"
                ),
                "p.yaml:12:",
                "exceeds max_ttl",
            ),
            (
                format!(
                    "{ISSUER}---\nkind: TrustPolicy\nname: p\nissuer: nope\nsubject: x\ngrant: {{audience: a}}\n"
                ),
                "p.yaml:8:",
                "unknown issuer",
            ),
            (
                format!(
                    "{ISSUER}---\nkind: TrustPolicy\nname: p\nissuer: gh\nsubjekt: x\ngrant: {{audience: a}}\n"
                ),
                "p.yaml:9:",
                "unknown field `subjekt`",
            ),
            (
                format!(
                    "{ISSUER}---\nkind: TrustPolicy\nname: p\nissuer: gh\nsubject: {{regex: \"(\"}}\ngrant: {{audience: a}}\n"
                ),
                "p.yaml:9:",
                "does not compile",
            ),
            (
                format!(
                    "{ISSUER}---\nkind: TrustPolicy\nname: p\nissuer: gh\nsubject: x\ngrant: {{audience: []}}\n"
                ),
                "p.yaml:10:",
                "empty grant",
            ),
            (
                format!("{ISSUER}---\n{ISSUER}"),
                "p.yaml:7:",
                "duplicate Issuer name",
            ),
            (
                "kind: Isuer\nname: x\n".to_string(),
                "p.yaml:1:",
                "unknown kind",
            ),
            (
                "kind: Issuer\nname: x\nurl: https://a\n".to_string(),
                "p.yaml:1:",
                "missing field `audiences`",
            ),
            (
                "kind: Issuer\nname: x\nurl: https://a\naudiences: [a]\nalgorithms: [HS256]\n"
                    .to_string(),
                "p.yaml:5:",
                "never none or HMAC",
            ),
        ];
        for (text, location, reason) in cases {
            let errs = compile(&text).unwrap_err();
            assert!(
                errs.iter()
                    .any(|e| e.starts_with(location) && e.contains(reason)),
                "{location} {reason}: {errs:?}"
            );
        }
    }

    #[test]
    fn shared_issuers_need_an_owner_pin() {
        let shared = ISSUER.replace("audiences", "shared: true\naudiences");
        let policy = |subject: &str, claims: &str| {
            format!(
                "{shared}---\nkind: TrustPolicy\nname: p\nissuer: gh\nsubject: {subject}\n{claims}grant: {{audience: a}}\n"
            )
        };
        assert!(compile(&policy("{glob: \"repo:*/api:*\"}", "")).is_err());
        assert!(compile(&policy("{glob: \"repo:acme*:**\"}", "")).is_err());
        assert!(compile(&policy("{regex: \"repo:acme/.*|.*\"}", "")).is_err());
        assert!(compile(&policy("{glob: \"repo:acme/*:**\"}", "")).is_ok());
        assert!(compile(&policy("repo:acme/api:ref:refs/heads/main", "")).is_ok());
        assert!(
            compile(&policy(
                "{glob: \"**\"}",
                "claims:\n  repository_owner_id: \"123\"\n"
            ))
            .is_ok()
        );
        assert!(
            compile(&policy(
                "{glob: \"**\"}",
                "claims:\n  repository_owner_id: {glob: \"1*\"}\n"
            ))
            .is_err()
        );
    }
}
