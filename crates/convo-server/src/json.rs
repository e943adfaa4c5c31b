//! A JSON writer for the response bodies the list sends (CONTRACT §3): values appended straight
//! into one buffer, in the order the caller writes them.
//!
//! Through serde_json, a list page spent about a fifth of its instructions deciding, byte by
//! byte, that strings needed no escaping (callgrind, page 1), and every timestamp went through a
//! temporary string first. Here clean text is checked eight bytes at a time and copied whole;
//! timestamps are formatted in place. The output is byte for byte what serde_json writes (a
//! property test holds the escaping to it).

use convo_core::Millis;
use serde_json::value::RawValue;

pub struct Json(String);

impl Json {
    pub fn with_capacity(bytes: usize) -> Self {
        Self(String::with_capacity(bytes))
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0.into_bytes()
    }

    /// JSON text as is: punctuation and `"key":` literals.
    pub fn raw(&mut self, text: &str) {
        self.0.push_str(text);
    }

    pub fn str(&mut self, s: &str) {
        self.0.push('"');
        escape_into(&mut self.0, s);
        self.0.push('"');
    }

    pub fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.raw("null"),
        }
    }

    pub fn int(&mut self, n: i64) {
        self.0.push_str(itoa::Buffer::new().format(n));
    }

    pub fn opt_int(&mut self, n: Option<i64>) {
        match n {
            Some(n) => self.int(n),
            None => self.raw("null"),
        }
    }

    pub fn bool(&mut self, b: bool) {
        self.raw(if b { "true" } else { "false" });
    }

    /// A stored time as the contract's UTC string.
    pub fn utc(&mut self, at: Millis) {
        self.0.push('"');
        at.write_utc(&mut self.0);
        self.0.push('"');
    }

    pub fn opt_utc(&mut self, at: Option<Millis>) {
        match at {
            Some(at) => self.utc(at),
            None => self.raw("null"),
        }
    }

    /// The time in the civil time `offset` seconds east of UTC, with that offset.
    pub fn local(&mut self, at: Millis, offset: i32) {
        self.0.push('"');
        at.write_local(offset, &mut self.0);
        convo_core::time::write_offset(offset, &mut self.0);
        self.0.push('"');
    }

    /// An offset alone: `-05:00`.
    pub fn offset(&mut self, offset: i32) {
        self.0.push('"');
        convo_core::time::write_offset(offset, &mut self.0);
        self.0.push('"');
    }

    /// Stored JSON text (a bio, `seen_by`), passed through once it parses; a corrupt value
    /// degrades to `fallback`.
    pub fn stored(&mut self, text: &str, fallback: &'static str) {
        match serde_json::from_str::<&RawValue>(text) {
            Ok(value) => self.raw(value.get()),
            Err(_) => {
                tracing::warn!("stored JSON value is corrupt; serving {fallback}");
                self.raw(fallback);
            }
        }
    }

    /// `[…]` of `items`, each written by `each`.
    pub fn list<T>(&mut self, items: &[T], mut each: impl FnMut(&mut Self, &T)) {
        self.0.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            each(self, item);
        }
        self.0.push(']');
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Whether any of eight bytes is a control byte, `"` or `\`: the classic "has a byte less than
/// n" and "has a zero byte" word tricks. Exact as a yes/no (a borrow only starts at a byte that
/// matches); bytes of multi-byte characters never match.
const fn needs_escape(w: u64) -> bool {
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    let q = w ^ (ONES * b'"' as u64);
    let quote = q.wrapping_sub(ONES) & !q;
    let b = w ^ (ONES * b'\\' as u64);
    let backslash = b.wrapping_sub(ONES) & !b;
    (control | quote | backslash) & HIGH != 0
}

/// Appends `s` escaped as serde_json escapes it: `\"`, `\\`, the five short control escapes,
/// `\u00xx` (lower-case hex) for the other control bytes, everything else as is.
pub fn escape_into(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    // `start..i` is clean and not yet copied.
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            if !needs_escape(u64::from_le_bytes(w)) {
                i += 8;
                continue;
            }
        }
        // A word with something to escape, or the tail: byte by byte until the next word.
        let end = (i + 8).min(bytes.len());
        while i < end {
            let escape: &str = match bytes[i] {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                c @ 0..0x20 => {
                    out.push_str(&s[start..i]);
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.push_str("\\u00");
                    out.push(char::from(HEX[usize::from(c >> 4)]));
                    out.push(char::from(HEX[usize::from(c & 0xf)]));
                    i += 1;
                    start = i;
                    continue;
                }
                _ => {
                    i += 1;
                    continue;
                }
            };
            out.push_str(&s[start..i]);
            out.push_str(escape);
            i += 1;
            start = i;
        }
    }
    out.push_str(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn escaped(s: &str) -> String {
        let mut j = Json::with_capacity(0);
        j.str(s);
        j.0
    }

    #[test]
    fn escapes_as_serde_json_does() {
        for s in [
            "",
            "plain",
            "eight by",
            "a \"quoted\" word",
            "back\\slash",
            "tab\tnew\nline\rret",
            "\u{0}\u{1}\u{8}\u{b}\u{c}\u{1f}",
            "caf\u{e9} \u{1f9b7} \u{7f}",
            "0123456\"",
            "01234567\"",
            "\\0123456789abcdef",
        ] {
            assert_eq!(
                escaped(s),
                serde_json::to_string(s).expect("serde"),
                "{s:?}"
            );
        }
    }

    #[test]
    fn the_word_test_finds_each_byte_at_each_position() {
        for pos in 0..8 {
            for byte in 0u8..=255 {
                let mut w = [b'a'; 8];
                w[pos] = byte;
                let expect = byte < 0x20 || byte == b'"' || byte == b'\\';
                assert_eq!(
                    needs_escape(u64::from_le_bytes(w)),
                    expect,
                    "{byte} at {pos}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn any_string_escapes_as_serde_json_does(s in any::<String>()) {
            prop_assert_eq!(escaped(&s), serde_json::to_string(&s).expect("serde"));
        }

        #[test]
        fn text_with_controls_escapes_as_serde_json_does(s in "[a-z\"\\\\\\x00-\\x1f\\u{e9}\\u{1f9b7}]{0,40}") {
            prop_assert_eq!(escaped(&s), serde_json::to_string(&s).expect("serde"));
        }

        #[test]
        fn integers_write_as_serde_json_does(n in any::<i64>()) {
            let mut j = Json::with_capacity(0);
            j.int(n);
            prop_assert_eq!(j.0, serde_json::to_string(&n).expect("serde"));
        }
    }
}
