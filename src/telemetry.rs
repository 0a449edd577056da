//! Logging: text or JSON lines via tracing, level from `RUST_LOG` (default `info`).
//!
//! Log values come from tokens (an issued `sub` rendered from inbound claims is an admin's
//! name), from upstream issuers' answers and from clients. A newline in one would start a
//! forged log line, and an escape sequence would rewrite a terminal. So text logs escape
//! control characters in every field, message included, in one place ([`EscapedFields`]);
//! JSON logs are escaped by the JSON encoder.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};

use crate::config::LogFormat;

/// Installs the global subscriber once; later calls do nothing.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: in a file or a log pipeline they are
    // noise, and cost formatting on every line.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.fmt_fields(EscapedFields).try_init(),
    };
}

/// The text formatter's fields, with control characters escaped.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        // The default layout, written through the escaper (so without ANSI styling of field
        // names: an escape sequence in a value must not survive, and the escaper cannot tell
        // one the formatter wrote from one a value carried).
        let mut escaping = Escaping(&mut writer);
        DefaultFields::new().format_fields(Writer::new(&mut escaping), fields)
    }
}

/// Passes text on with control characters escaped.
struct Escaping<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(needs_escape) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write_escaped(self.0, c)?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// Control characters (C0, DEL, C1: newlines, escape sequences), the Unicode line and
/// paragraph separators, and the bidirectional overrides that reorder how a line reads.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn write_escaped(out: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        other => write!(out, "\\u{{{:x}}}", u32::from(other)),
    }
}

/// `text` with control characters escaped as the text log writes them: for a value that
/// becomes a name shown elsewhere (an admin actor taken from a token's `sub`).
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(needs_escape) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let _ = Escaping(&mut out).write_str(text);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("repo:acme/api"), "repo:acme/api");
        assert_eq!(
            printable("a\nINFO forged\r\t\u{1b}[31mred\u{7f}\u{85}"),
            "a\\nINFO forged\\r\\t\\u{1b}[31mred\\u{7f}\\u{85}"
        );
        assert_eq!(printable("x\u{2028}y\u{202e}z"), "x\\u{2028}y\\u{202e}z");
        assert_eq!(printable("héllo ✓"), "héllo ✓");
    }

    #[test]
    fn text_log_lines_cannot_be_split_by_a_value() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .fmt_fields(EscapedFields)
            .finish();
        let name = "mallory\n2026-01-01T00:00:00Z  INFO admin change actor=bootstrap-admin";
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", sub = %name);
            let _entered = span.enter();
            tracing::info!(actor = %name, quoted = name, "admin change by {name}\u{1b}[2J");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert_eq!(text.matches("mallory\\n2026").count(), 4, "{text}");
    }
}
