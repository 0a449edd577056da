//! A unified diff of two texts, line by line (what `diff -u` prints), for `policy diff`.
//! Documents are small; the longest common subsequence is found by dynamic programming,
//! and past [`MAX_CELLS`] the whole old text is shown replaced by the new one.

use std::fmt::Write;

/// Lines of context around each change.
const CONTEXT: usize = 3;
/// Largest `old lines × new lines` table computed.
const MAX_CELLS: usize = 4_000_000;

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Same,
    Del,
    Add,
}

/// `old` → `new` as a unified diff with `--- old_name` / `+++ new_name` headers; empty when
/// the texts are equal.
pub fn diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    if old == new {
        return String::new();
    }
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let script = edit_script(&a, &b);
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    for (start, end) in hunks(&script) {
        let (mut i, mut j) = positions(&script, start);
        let (old_len, new_len) = script[start..end]
            .iter()
            .fold((0, 0), |(o, n), op| match op {
                Op::Same => (o + 1, n + 1),
                Op::Del => (o + 1, n),
                Op::Add => (o, n + 1),
            });
        let _ = writeln!(out, "@@ -{} +{} @@", range(i, old_len), range(j, new_len));
        for op in &script[start..end] {
            match op {
                Op::Same => {
                    let _ = writeln!(out, " {}", a[i]);
                    i += 1;
                    j += 1;
                }
                Op::Del => {
                    let _ = writeln!(out, "-{}", a[i]);
                    i += 1;
                }
                Op::Add => {
                    let _ = writeln!(out, "+{}", b[j]);
                    j += 1;
                }
            }
        }
    }
    out
}

/// `start,len` as `diff -u` writes it (1-based; an empty range names the line before).
fn range(start: usize, len: usize) -> String {
    match len {
        0 => format!("{start},0"),
        1 => format!("{}", start + 1),
        _ => format!("{},{len}", start + 1),
    }
}

/// Where the old and new texts are at step `k` of the script.
fn positions(script: &[Op], k: usize) -> (usize, usize) {
    script[..k].iter().fold((0, 0), |(i, j), op| match op {
        Op::Same => (i + 1, j + 1),
        Op::Del => (i + 1, j),
        Op::Add => (i, j + 1),
    })
}

/// The steps turning `a` into `b`, deletions before additions at each change.
fn edit_script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let (n, m) = (a.len(), b.len());
    if n.saturating_mul(m) > MAX_CELLS {
        return [vec![Op::Del; n], vec![Op::Add; m]].concat();
    }
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[at(i, j)] = if a[i] == b[j] {
                lcs[at(i + 1, j + 1)] + 1
            } else {
                lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut script = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            script.push(Op::Same);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[at(i, j + 1)] > lcs[at(i + 1, j)]) {
            script.push(Op::Add);
            j += 1;
        } else {
            script.push(Op::Del);
            i += 1;
        }
    }
    script
}

/// Ranges of the script to print: each change with [`CONTEXT`] lines around it, merged
/// where their contexts touch.
fn hunks(script: &[Op]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (k, op) in script.iter().enumerate() {
        if *op == Op::Same {
            continue;
        }
        let start = k.saturating_sub(CONTEXT);
        let end = (k + 1 + CONTEXT).min(script.len());
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = end,
            _ => out.push((start, end)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(diff("a\nb\n", "a\nb\n", "x", "y"), "");
    }

    #[test]
    fn a_changed_line_is_shown_with_context() {
        let old = "kind: TrustPolicy\nname: p\nissuer: gh\ngrant:\n  ttl: 10m\n";
        let new = "kind: TrustPolicy\nname: p\nissuer: gh\ngrant:\n  ttl: 5m\n";
        assert_eq!(
            diff(old, new, "stored", "dir"),
            "--- stored\n+++ dir\n@@ -2,4 +2,4 @@\n name: p\n issuer: gh\n grant:\n-  ttl: 10m\n+  ttl: 5m\n"
        );
    }

    #[test]
    fn a_new_document_is_all_additions() {
        assert_eq!(
            diff("", "a\nb\n", "/dev/null", "new"),
            "--- /dev/null\n+++ new\n@@ -0,0 +1,2 @@\n+a\n+b\n"
        );
    }

    #[test]
    fn distant_changes_are_separate_hunks() {
        let old: String = (0..20).map(|i| format!("l{i}\n")).collect();
        let new = old.replace("l1\n", "x1\n").replace("l18\n", "x18\n");
        let d = diff(&old, &new, "a", "b");
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
    }
}
