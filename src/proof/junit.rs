//! JUnit XML, the report format CI systems show test results from: one `<testcase>` per
//! case, a `<failure>` with the message for each that failed.

use std::fmt::Write;

use super::CaseResult;

/// The report of `results` as a JUnit XML document.
pub fn report(results: &[CaseResult]) -> String {
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let counts = format!(
        "tests=\"{}\" failures=\"{failed}\" errors=\"0\"",
        results.len()
    );
    let _ = writeln!(xml, "<testsuites name=\"policy test\" {counts}>");
    let _ = writeln!(xml, "  <testsuite name=\"policy test\" {counts}>");
    for r in results {
        let _ = write!(
            xml,
            "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" line=\"{}\"",
            escape(&r.name),
            escape(&r.file),
            escape(&r.file),
            r.line
        );
        match &r.failure {
            None => xml.push_str("/>\n"),
            Some(message) => {
                let _ = writeln!(
                    xml,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                    escape(message),
                    escape(message)
                );
            }
        }
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

/// Text as XML character data or an attribute value. Characters that XML 1.0 cannot hold
/// at all (most control characters) become U+FFFD: a test name or a claim value may hold
/// them, and the report must still parse.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Kept literally, a line break or tab in an attribute is read back as a space.
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if allowed_in_xml(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

/// XML 1.0 `Char`.
fn allowed_in_xml(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_it_writes() {
        let results = [
            CaseResult {
                name: "a <b> & \"c\" 'd'".into(),
                file: "t&.yaml".into(),
                line: 3,
                failure: None,
            },
            CaseResult {
                name: "e".into(),
                file: "t.yaml".into(),
                line: 9,
                failure: Some("token.sub: expected \"<x>\"\u{1}, got \"]]>\"".into()),
            },
        ];
        let xml = report(&results);
        assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
        assert!(
            xml.contains("name=\"a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos;\""),
            "{xml}"
        );
        assert!(xml.contains("classname=\"t&amp;.yaml\""), "{xml}");
        assert!(
            xml.contains(">token.sub: expected &quot;&lt;x&gt;&quot;\u{FFFD}, got &quot;]]&gt;&quot;</failure>"),
            "{xml}"
        );
        assert!(!xml.contains('\u{1}'));
    }
}
