//! Cursors of the list's cursor variant (`Nex-Api-Version: v20240412`, CONTRACT §4).
//!
//! A cursor names a position in the list's order — (`updated_at` desc, `id` desc) — not an
//! offset, so pages stay stable while other conversations gain activity: a conversation that
//! moves to the front is met again only by a client that starts over (or polls
//! `updated_since`), and none that stayed put is skipped or repeated. Opaque to clients
//! (base64url of a versioned text); a forged cursor only moves within the key's own scope.

use crate::time::Millis;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A conversation's place in the list order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub updated_at: Millis,
    pub id: i64,
}

const PREFIX: &str = "c1:";

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{PREFIX}{}:{}", self.updated_at.0, self.id))
    }

    /// The same instant, `by` ids along: the position just before or after this one.
    pub fn shifted(self, by: i64) -> Cursor {
        Cursor {
            id: self.id.saturating_add(by),
            ..self
        }
    }

    /// `None` for anything `encode` did not produce.
    pub fn decode(text: &str) -> Option<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let (at, id) = text.strip_prefix(PREFIX)?.split_once(':')?;
        let parse = |s: &str| {
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse::<i64>().ok()
        };
        Some(Cursor {
            updated_at: Millis(parse(at)?),
            id: parse(id).filter(|&id| id >= 1)?,
        })
    }
}

/// Where a cursor page starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CursorPaging {
    /// The newest conversations (no cursor given).
    First,
    /// Those after this position (`end_cursor`: forward).
    After(Cursor),
    /// Those just before this position (`start_cursor`: backward).
    Before(Cursor),
}

/// The `page_info` of a cursor page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageInfo {
    pub has_previous_page: bool,
    pub has_next_page: bool,
    /// The first and last conversation of the page; `None` on an empty page.
    pub start_cursor: Option<Cursor>,
    pub end_cursor: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_refusals() {
        let c = Cursor {
            updated_at: Millis(1_717_000_000_123),
            id: 42,
        };
        let text = c.encode();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "URL-safe: {text}"
        );
        assert_eq!(Cursor::decode(&text), Some(c));
        for bad in [
            "",
            "!!!",
            "AAAA",
            &URL_SAFE_NO_PAD.encode("c1:1:0"),
            &URL_SAFE_NO_PAD.encode("c1:x:5"),
            &URL_SAFE_NO_PAD.encode("c1:1:+5"),
            &URL_SAFE_NO_PAD.encode("c2:1:5"),
            &URL_SAFE_NO_PAD.encode("c1:99999999999999999999:5"),
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_position_round_trips(at in any::<i64>(), id in 1..i64::MAX) {
            let c = Cursor { updated_at: Millis(at), id };
            prop_assert_eq!(Cursor::decode(&c.encode()), Some(c));
        }

        #[test]
        fn any_text_decodes_or_is_refused_without_panicking(text in ".{0,64}") {
            let _ = Cursor::decode(&text);
        }
    }
}
