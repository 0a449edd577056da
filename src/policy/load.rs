//! Reading policy documents from YAML files, with the file and line of every error.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use super::document::{GitHubAppDoc, IssuerDoc, Kind, TEST_KIND, TrustPolicyDoc};
use super::parse::{self, ParseError};
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

    /// The document's text.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// An error about `path` (a dotted field path) of this document, at that field's line.
    pub fn error_at(&self, path: &str, reason: impl Into<String>) -> LoadError {
        LoadError {
            file: self.file.display().to_string(),
            line: self.line_of(Some(path)),
            path: Some(path.to_owned()),
            reason: reason.into(),
        }
    }

    /// A parse error of this document, placed in its file.
    pub(crate) fn locate(&self, e: ParseError) -> LoadError {
        LoadError {
            file: self.file.display().to_string(),
            line: e.line.map_or(self.line, |l| self.line + l - 1),
            path: e.path,
            reason: e.reason,
        }
    }
}

/// An error in a policy file, located.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadError {
    /// The file (or a description of the source).
    pub file: String,
    /// 1-based line; 0 when the error is about the whole source.
    pub line: usize,
    /// The field path inside the document (`grant.audience`), when there is one.
    pub path: Option<String>,
    /// Why.
    pub reason: String,
}

impl fmt::Display for LoadError {
    /// `file:line: path: reason`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if let Some(path) = &self.path {
            write!(f, ": {path}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Documents read from files, each with its origin.
#[derive(Debug, Default)]
pub struct Bundle {
    /// `kind: GitHubApp` documents.
    pub apps: Vec<(GitHubAppDoc, Origin)>,
    /// `kind: Issuer` documents.
    pub issuers: Vec<(IssuerDoc, Origin)>,
    /// `kind: TrustPolicy` documents.
    pub policies: Vec<(TrustPolicyDoc, Origin)>,
}

/// What reading files gave: the documents that could be read, and an error for each that
/// could not, so one run can report every error of every file.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The documents that could be read.
    pub bundle: Bundle,
    /// Every error found while reading, in file order.
    pub errors: Vec<LoadError>,
    /// `kind: PolicyTest` documents, unread: only `policy test` and `policy lint` read them;
    /// the broker itself never does.
    pub tests: Vec<Origin>,
    /// Names of Issuer documents that could not be read: a policy that names one is not
    /// also reported as naming an unknown issuer.
    broken_issuers: HashSet<String>,
}

impl Loaded {
    /// Compiles what could be read over `base` (see [`Bundle::compile_over`]). With read
    /// errors there is no set, but the errors hold those and every validation error of the
    /// documents that were read, sorted by file and line.
    pub fn compile_over(
        &self,
        base_issuers: &[IssuerDoc],
        base_policies: &[TrustPolicyDoc],
        limits: &Limits,
    ) -> Result<PolicySet, Vec<LoadError>> {
        self.compile_over_all((&[], base_issuers, base_policies), limits)
    }

    /// [`Loaded::compile_over`], with stored GitHub Apps in the base too.
    pub fn compile_over_all(
        &self,
        base: (&[GitHubAppDoc], &[IssuerDoc], &[TrustPolicyDoc]),
        limits: &Limits,
    ) -> Result<PolicySet, Vec<LoadError>> {
        let orphans: HashSet<&str> = (self.bundle.policies.iter())
            .filter(|(d, _)| self.broken_issuers.contains(&d.issuer))
            .map(|(d, _)| d.name.as_str())
            .collect();
        let consequence = |e: &DocError| {
            e.kind == Kind::TrustPolicy
                && e.field.as_deref() == Some("issuer")
                && orphans.contains(e.name.as_str())
        };
        let compiled = self.bundle.compile_filtered(base, limits, consequence);
        if self.errors.is_empty() {
            return compiled;
        }
        let mut errors = self.errors.clone();
        errors.extend(compiled.err().into_iter().flatten());
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        Err(errors)
    }

    fn add_text(&mut self, file: &Path, text: &str) {
        if let Some(e) = foreign_line_break(file, text) {
            self.errors.push(e);
            return;
        }
        for (line, chunk) in split_documents(text) {
            self.add_document(Origin {
                file: file.to_path_buf(),
                line,
                text: chunk.to_owned(),
            });
        }
    }

    /// Reads one document: its shape (nesting, duplicate keys) first, then its type. A
    /// document with a duplicate key is still read, to report its other errors too.
    fn add_document(&mut self, origin: Origin) {
        let shape = parse::yaml_shape(&origin.text);
        // Only a duplicate key leaves the document readable; its path, to leave out the
        // errors of reading it that only repeat it.
        let duplicate = shape
            .error
            .as_ref()
            .map(|e| e.path.clone().unwrap_or_default());
        let failed = duplicate.is_some();
        if shape.kind.as_deref() == Some(TEST_KIND) {
            // Test cases are not part of the policy set: a broken one is the business of
            // `policy test` and `policy lint`, never a reason to refuse policies.
            self.tests.push(origin);
            return;
        }
        if let Some(e) = shape.error {
            self.errors.push(origin.locate(e));
        }
        let kind = shape.kind.as_deref().map(Kind::parse);
        if !shape.readable {
            if let (Some(Some(Kind::Issuer)), Some(name)) = (kind, shape.name) {
                self.broken_issuers.insert(name);
            }
            return;
        }
        let kind = match kind {
            Some(Some(kind)) => kind,
            Some(None) => {
                let line = origin.line_of(Some("kind"));
                self.fail(
                    &origin,
                    line,
                    "kind",
                    "unknown kind: expected `Issuer`, `TrustPolicy`, `GitHubApp` or `PolicyTest`",
                );
                return;
            }
            None => {
                self.fail(
                    &origin,
                    origin.line,
                    "kind",
                    "missing field: expected `Issuer`, `TrustPolicy`, `GitHubApp` or `PolicyTest`",
                );
                return;
            }
        };
        // serde's "duplicate field", or a matcher's "one key too many", at or above the
        // duplicate the walk reported, is that duplicate again.
        let repeats = |e: &ParseError| {
            duplicate.as_deref().is_some_and(|d| {
                e.path.as_deref().is_some_and(|p| {
                    d.strip_prefix(p)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
                })
            })
        };
        let typed_error = |e: ParseError, errors: &mut Vec<LoadError>| {
            if !repeats(&e) {
                errors.push(origin.locate(e));
            }
        };
        match kind {
            Kind::Issuer => match parse::from_yaml::<IssuerDoc>(&origin.text) {
                Ok(doc) if !failed => return self.bundle.issuers.push((doc, origin)),
                Ok(_) => {}
                Err(e) => typed_error(e, &mut self.errors),
            },
            Kind::TrustPolicy => match parse::from_yaml::<TrustPolicyDoc>(&origin.text) {
                Ok(doc) if !failed => return self.bundle.policies.push((doc, origin)),
                Ok(_) => {}
                Err(e) => typed_error(e, &mut self.errors),
            },
            Kind::GitHubApp => match parse::from_yaml::<GitHubAppDoc>(&origin.text) {
                Ok(doc) if !failed => return self.bundle.apps.push((doc, origin)),
                Ok(_) => {}
                Err(e) => typed_error(e, &mut self.errors),
            },
        }
        if kind == Kind::Issuer
            && let Some(name) = shape.name
        {
            self.broken_issuers.insert(name);
        }
    }

    fn fail(&mut self, origin: &Origin, line: usize, path: &str, reason: &str) {
        self.errors.push(LoadError {
            file: origin.file.display().to_string(),
            line,
            path: Some(path.into()),
            reason: reason.into(),
        });
    }
}

impl Bundle {
    /// Reads every `*.yaml`/`*.yml` file of `dir` (not recursive), in name order; any error
    /// in any file refuses the whole folder, and every one of them is returned.
    pub fn load_dir(dir: &Path) -> Result<Self, Vec<LoadError>> {
        let loaded = Self::read_dir(dir);
        if loaded.errors.is_empty() {
            Ok(loaded.bundle)
        } else {
            Err(loaded.errors)
        }
    }

    /// Reads `dir` like [`Bundle::load_dir`], keeping the documents that could be read beside
    /// the errors (for `policy lint`, which reports every error in one run).
    pub fn read_dir(dir: &Path) -> Loaded {
        match yaml_files(dir) {
            Ok(files) => Self::read_files(&files),
            Err(e) => Loaded {
                errors: vec![e],
                ..Loaded::default()
            },
        }
    }

    /// Reads these files in the order given, as [`Bundle::read_dir`] reads a folder's.
    pub fn read_files(files: &[PathBuf]) -> Loaded {
        let mut loaded = Loaded::default();
        for file in files {
            match read_file(file) {
                Ok(text) => loaded.add_text(file, &text),
                Err(reason) => loaded.errors.push(LoadError {
                    file: file.display().to_string(),
                    line: 0,
                    path: None,
                    reason,
                }),
            }
        }
        loaded.bundle.check_duplicates(&mut loaded.errors);
        loaded
    }

    /// Reads one file's text (multi-document YAML), keeping what could be read beside the
    /// errors, as [`Bundle::read_dir`] does.
    pub fn read_text(file: &Path, text: &str) -> Loaded {
        let mut loaded = Loaded::default();
        loaded.add_text(file, text);
        loaded.bundle.check_duplicates(&mut loaded.errors);
        loaded
    }

    /// Parses one file's text (multi-document YAML).
    pub fn parse_str(file: &Path, text: &str) -> Result<Self, Vec<LoadError>> {
        let mut loaded = Loaded::default();
        loaded.add_text(file, text);
        loaded.bundle.check_duplicates(&mut loaded.errors);
        if loaded.errors.is_empty() {
            Ok(loaded.bundle)
        } else {
            Err(loaded.errors)
        }
    }

    fn check_duplicates(&self, errors: &mut Vec<LoadError>) {
        let mut seen: HashMap<(Kind, &str), &Origin> = HashMap::new();
        let all = self
            .issuers
            .iter()
            .map(|(d, o)| (Kind::Issuer, d.name.as_str(), o))
            .chain(
                self.apps
                    .iter()
                    .map(|(d, o)| (Kind::GitHubApp, d.name.as_str(), o)),
            )
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
                    path: Some("name".into()),
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
        self.compile_filtered((&[], base_issuers, base_policies), limits, |_| false)
    }

    /// [`Bundle::compile_over`], with stored GitHub Apps in the base too.
    pub fn compile_over_all(
        &self,
        base: (&[GitHubAppDoc], &[IssuerDoc], &[TrustPolicyDoc]),
        limits: &Limits,
    ) -> Result<PolicySet, Vec<LoadError>> {
        self.compile_filtered(base, limits, |_| false)
    }

    /// [`Bundle::compile_over`], leaving out the errors that `skip` says follow from another.
    fn compile_filtered(
        &self,
        (base_apps, base_issuers, base_policies): (
            &[GitHubAppDoc],
            &[IssuerDoc],
            &[TrustPolicyDoc],
        ),
        limits: &Limits,
        skip: impl Fn(&DocError) -> bool,
    ) -> Result<PolicySet, Vec<LoadError>> {
        let apps = overlay(base_apps, &self.apps, |d| &d.name);
        let issuers = overlay(base_issuers, &self.issuers, |d| &d.name);
        let policies = overlay(base_policies, &self.policies, |d| &d.name);
        PolicySet::compile_with_apps(&apps, &issuers, &policies, limits).map_err(|errs| {
            errs.into_iter()
                .filter(|e| !skip(e))
                .map(|e| self.locate(e))
                .collect()
        })
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
            Kind::GitHubApp => self
                .apps
                .iter()
                .find(|(d, _)| d.name == e.name)
                .map(|(_, o)| o),
        };
        match origin {
            Some(o) => LoadError {
                file: o.file.display().to_string(),
                line: o.line_of(e.field.as_deref()),
                path: e.field,
                reason: e.reason,
            },
            None => LoadError {
                file: format!("stored {} {:?}", e.kind.as_str(), e.name),
                line: 0,
                path: e.field,
                reason: e.reason,
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

/// The `*.yaml`/`*.yml` files of `dir` (not recursive), in name order.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|e| LoadError {
        file: dir.display().to_string(),
        line: 0,
        path: None,
        reason: format!("cannot read: {e}"),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    Ok(files)
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
                path: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LIMITS: Limits = Limits {
        max_ttl: Duration::from_secs(3600),
        allow_insecure_loopback_issuers: false,
        read_app_keys: false,
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
                "subjekt: unknown field",
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
                "audiences: missing field",
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
