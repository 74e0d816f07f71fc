//! JSON string escaping, as serde_json escapes: `"`, `\` and the control characters
//! below U+0020 (the short forms `\b \f \n \r \t`, else `\u00XX`); everything else as it
//! is. Shared by the log line (src/logging.rs) and the review's answer (src/review.rs),
//! which both write JSON straight into their buffers instead of through serde.

use std::{convert::Infallible, fmt};

/// Hands `s` to `out` in pieces, escaped: runs of bytes that need no escape, and each
/// escape.
pub fn escape<E>(s: &str, mut out: impl FnMut(&str) -> Result<(), E>) -> Result<(), E> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while let Some(found) = next_escape(bytes, i) {
        i = found;
        let byte = bytes[i];
        let short = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            _ => "",
        };
        // `i` is at an ASCII byte, so both slices end on character boundaries.
        out(&s[start..i])?;
        if short.is_empty() {
            let long = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ];
            // Six ASCII bytes.
            out(std::str::from_utf8(&long).unwrap_or("\\ufffd"))?;
        } else {
            out(short)?;
        }
        start = i + 1;
        i += 1;
    }
    out(&s[start..])
}

/// Whether `b` is written escaped.
fn must_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The first byte at or after `from` that is written escaped. Eight bytes at a time: the
/// answer's and the log line's texts are long runs that need none (a byte at a time was
/// about a tenth of an answered review's instructions).
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // A lane of `v` is zero / below `n` (n <= 0x80): its high bit in the result.
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let below = |v: u64, n: u8| v.wrapping_sub(ONES * u64::from(n)) & !v & HIGH;
    let rest = bytes.get(from..)?;
    let (words, tail) = rest.as_chunks::<8>();
    for (w, word) in words.iter().enumerate() {
        let v = u64::from_ne_bytes(*word);
        let hit = below(v, 0x20)
            | zero(v ^ (ONES * u64::from(b'"')))
            | zero(v ^ (ONES * u64::from(b'\\')));
        if hit != 0 {
            // The flags can be set in a lane after a real hit (a borrow), never before
            // it: find the first lane that really needs one.
            if let Some(lane) = word.iter().position(|&b| must_escape(b)) {
                return Some(from + w * 8 + lane);
            }
        }
    }
    tail.iter()
        .position(|&b| must_escape(b))
        .map(|lane| from + words.len() * 8 + lane)
}

/// Writes what it is given JSON-escaped ([`escape`]).
pub struct Escaped<W>(pub W);

impl<W: fmt::Write> fmt::Write for Escaped<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape(s, |piece| self.0.write_str(piece))
    }
}

/// Appends `s` to `out` as a JSON string, quotes included.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let written: Result<(), Infallible> = escape(s, |piece| {
        out.extend_from_slice(piece.as_bytes());
        Ok(())
    });
    match written {
        Ok(()) => {}
        Err(never) => match never {},
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_text_is_escaped_as_serde_json_does(
            s in proptest::string::string_regex("(.|[\\x00-\\x1f\"\\\\\\x7f-\\x{ff}]){0,80}").expect("regex"),
        ) {
            let mut ours = Vec::new();
            push_str(&mut ours, &s);
            proptest::prop_assert_eq!(ours, serde_json::to_vec(&s).expect("a string serializes"));
        }
    }

    #[test]
    fn escapes_as_serde_json_does() {
        let mut every: String = (0u8..0x80).map(char::from).collect();
        every.push_str("é→🚀\u{2028}\u{7f}");
        for s in [every.as_str(), "", "plain", "\"\\", "a\u{1}b\u{1f}"] {
            let mut ours = Vec::new();
            push_str(&mut ours, s);
            let theirs = serde_json::to_vec(s).expect("a string serializes");
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs)
            );
            let mut via_fmt = String::new();
            fmt::Write::write_str(&mut Escaped(&mut via_fmt), s).expect("a String takes it");
            assert_eq!(format!("\"{via_fmt}\"").as_bytes(), theirs.as_slice());
        }
    }
}
