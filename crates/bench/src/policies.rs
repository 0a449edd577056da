//! Policy documents shaped like a GitHub Actions deployment: per organisation one shared
//! issuer (owner pinned, RS256 only), per repository one trust policy that pins
//! `repository_id` and `repository_owner_id` and matches with a literal, a glob or a regex.

use std::fmt::Write;

use crate::issuer::{
    audience, grant_audience, issuer_url, org, owner_id, repo_name, repository_id,
};

/// How many issuers, and how many policies each.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Issuers (organisations).
    pub issuers: usize,
    /// Trust policies per issuer (one per repository).
    pub per_issuer: usize,
}

impl Shape {
    /// Every policy.
    pub fn total(&self) -> usize {
        self.issuers * self.per_issuer
    }
}

/// The policies folder: one file per issuer (the broker caps a file at 4 MiB).
pub fn files(base: &str, shape: Shape) -> Vec<(String, String)> {
    (0..shape.issuers)
        .map(|i| {
            let mut out = String::new();
            let _ = write!(
                out,
                "kind: Issuer\nname: gha-{i}\nurl: \"{url}\"\naudiences: [\"{aud}\"]\n\
                 algorithms: [RS256]\nsubject_prefix: \"gha:\"\nshared: true\n\
                 max_token_lifetime: 2h\n",
                url = issuer_url(base, i),
                aud = audience(i),
            );
            for r in 0..shape.per_issuer {
                out.push_str("---\n");
                out.push_str(&policy(i, r));
            }
            (format!("gha-{i}.yaml"), out)
        })
        .collect()
}

/// Repository `r`'s policy: three styles in turn, so every matcher kind is exercised.
fn policy(i: usize, r: usize) -> String {
    let repo = format!("{}/{}", org(i), repo_name(r));
    let subject = match r % 3 {
        0 => format!("\"repo:{repo}:ref:refs/heads/main\""),
        1 => format!("{{glob: \"repo:{repo}:ref:refs/heads/*\"}}"),
        _ => format!("{{glob: \"repo:{repo}:**\"}}"),
    };
    let extra = match r % 3 {
        0 => "  workflow: {regex: \"deploy|release\"}\n  ref: refs/heads/main\n".to_owned(),
        1 => format!(
            "  job_workflow_ref: {{regex: '{}/workflows/\\.github/workflows/deploy\\.yml@refs/tags/v[0-9]+\\.[0-9]+\\.[0-9]+'}}\n",
            org(i)
        ),
        _ => "  event_name: {one_of: [push, workflow_dispatch]}\n  ref_type: branch\n".to_owned(),
    };
    format!(
        "kind: TrustPolicy\nname: gha-{i:03}-{r:05}\nissuer: gha-{i}\nsubject: {subject}\n\
         claims:\n  repository_id: \"{rid}\"\n  repository_owner_id: \"{oid}\"\n{extra}\
         grant:\n  audience: [\"{gaud}\"]\n  scopes: [read, \"deploy:write\"]\n  ttl: 15m\n\
         \x20 subject: \"{{repository}}@{{ref}}\"\n\
         \x20 claims: {{repository: \"{{repository}}\", repository_id: \"{{repository_id}}\", \
         sha: \"{{sha}}\", run_id: \"{{run_id}}\"}}\n",
        rid = repository_id(i, r),
        oid = owner_id(i),
        gaud = grant_audience(r),
    )
}
