//! Error text that never quotes a request body.
//!
//! serde's messages quote the value they refused (`invalid type: string "…", expected
//! a map`), and `Deserialize` impls may put input into custom messages. A review body
//! carries object metadata, and metadata can carry secrets: kubectl's
//! `last-applied-configuration` annotation holds a whole applied object, a Secret's
//! data included. Every error text about a body that reaches a log line or a 400
//! answer is built here: serde_json's syntax messages (fixed texts) are kept; data
//! messages keep only what the schema expected; everything is one line and bounded.

use serde_json::error::Category;

/// Longest error text, in characters (longer ones are cut and end in `…`).
pub const MAX_ERROR_CHARS: usize = 240;

/// What stands for a value taken out of a message.
const REDACTED: &str = "…";

/// A serde_json error as one bounded line with no input in it.
pub fn json_error(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let location = if e.line() > 0 {
        format!(" at line {} column {}", e.line(), e.column())
    } else {
        String::new()
    };
    let message = full.strip_suffix(location.as_str()).unwrap_or(&full);
    let safe = match e.classify() {
        // serde_json's own texts ("expected value", "EOF while parsing a string", …).
        Category::Syntax | Category::Eof | Category::Io => message.to_string(),
        Category::Data => data_message(message),
    };
    bounded(&format!("{safe}{location}"))
}

/// serde's own messages: `invalid type: string "<input>", expected a map` →
/// `invalid value, expected a map` (what was expected comes from the schema);
/// `missing field` and `duplicate field` name schema fields and are kept. Any other
/// message is a `Deserialize` impl's own (a timestamp parser's, say) and may say
/// anything about the input: only `invalid value` is kept of it.
fn data_message(message: &str) -> String {
    const WITH_EXPECTED: [&str; 5] = [
        "invalid type: ",
        "invalid value: ",
        "invalid length ",
        "unknown variant `",
        "unknown field `",
    ];
    if message.starts_with("missing field `") || message.starts_with("duplicate field `") {
        return without_quoted_input(message);
    }
    if WITH_EXPECTED.iter().any(|p| message.starts_with(p)) {
        if let Some(i) = message.rfind(", expected ") {
            return format!("invalid value{}", without_quoted_input(&message[i..]));
        }
    }
    "invalid value".to_string()
}

/// Replaces `"…"` strings and backquoted text that is not a plain identifier (serde's
/// variant and field names are) by `…`. Also what makes an unbalanced quote harmless:
/// everything after it goes.
fn without_quoted_input(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['"', '`']) {
        out.push_str(&rest[..i]);
        let quote = rest.as_bytes()[i];
        let after = &rest[i + 1..];
        let end = if quote == b'"' {
            closing_double_quote(after)
        } else {
            after.find('`')
        };
        match end {
            Some(j) => {
                let inner = &after[..j];
                if quote == b'`' && is_identifier(inner) {
                    out.push('`');
                    out.push_str(inner);
                    out.push('`');
                } else {
                    out.push(quote as char);
                    out.push_str(REDACTED);
                    out.push(quote as char);
                }
                rest = &after[j + 1..];
            }
            None => {
                out.push_str(REDACTED);
                return out;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Index of the `"` closing a Debug-escaped string (`\"` and `\\` skipped).
fn closing_double_quote(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
}

/// At most `max_chars` characters of `s`, with `…` when cut.
pub fn truncated(s: &str, max_chars: usize) -> String {
    let mut cut: String = s.chars().take(max_chars).collect();
    if cut.len() < s.len() {
        cut.push_str(REDACTED);
    }
    cut
}

/// [`truncated`], Debug-quoted (control characters escaped): for echoing short
/// identifiers such as an unexpected `kind`.
pub fn excerpt(s: &str, max_chars: usize) -> String {
    format!("{:?}", truncated(s, max_chars))
}

/// One line (no CR, LF or other control characters) of at most [`MAX_ERROR_CHARS`].
pub fn bounded(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_ERROR_CHARS * 4));
    for (n, c) in s.chars().enumerate() {
        if n == MAX_ERROR_CHARS {
            out.push_str(REDACTED);
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<T: serde::de::DeserializeOwned + std::fmt::Debug>(json: &str) -> String {
        json_error(&serde_json::from_str::<T>(json).expect_err("must fail"))
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Meta {
        labels: std::collections::BTreeMap<String, String>,
        op: Op,
    }

    #[derive(Debug, serde::Deserialize)]
    enum Op {
        #[serde(rename = "DELETE")]
        Delete,
    }

    #[test]
    fn values_never_appear() {
        let secret = "hunter2-top-secret";
        for json in [
            format!(r#"{{"labels": "{secret}", "op": "DELETE"}}"#),
            format!(r#"{{"labels": {{"a": 1}}, "op": "{secret}"}}"#),
            format!(r#"{{"labels": {{"a": "{secret}\", expected x"}}, "op": 7}}"#),
            format!(r#"{{"labels": {{"a": ["{secret}"]}}, "op": "DELETE"}}"#),
            format!(r#"{{"labels": {{}}, "op": "{secret}`, expected `x"}}"#),
        ] {
            let text = err::<Meta>(&json);
            assert!(!text.contains(secret), "{json} → {text}");
            assert!(text.contains("line 1"), "{text}");
        }
        let text = err::<Meta>(r#"{"labels": "x", "op": "DELETE"}"#);
        assert_eq!(text, "invalid value, expected a map at line 1 column 14");
        let text = err::<Meta>(r#"{"labels": {}, "op": "x"}"#);
        assert_eq!(
            text, "invalid value, expected `DELETE` at line 1 column 24",
            "schema names kept"
        );
        assert!(err::<Meta>(r#"{"labels": {}}"#).starts_with("missing field `op`"));
    }

    #[test]
    fn syntax_errors_are_kept_and_everything_is_bounded() {
        assert_eq!(
            err::<serde_json::Value>("{nope"),
            "key must be a string at line 1 column 2"
        );
        let long = format!("line one\nline two {}", "x".repeat(10_000));
        let b = bounded(&long);
        assert!(!b.contains('\n') && b.chars().count() == MAX_ERROR_CHARS + 1);
        assert_eq!(excerpt("Pod", 64), "\"Pod\"");
        assert_eq!(excerpt(&"k".repeat(100), 3), "\"kkk…\"");
        assert_eq!(
            without_quoted_input("a \"b\\\"c\" d `e f` `G_h`"),
            "a \"…\" d `…` `G_h`"
        );
        assert_eq!(without_quoted_input("open \"never closed"), "open …");
    }
}
