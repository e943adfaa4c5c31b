//! Query-string parameters of the read endpoints, parsed once at the edge (CONTRACT §3 and §7).
//!
//! Parsing collects every problem at once: a request with three bad parameters gets three error
//! strings. Handlers only ever see the typed result.

use crate::cursor::{Cursor, CursorPaging};
use crate::time::{Instant, OffsetRule, parse_datetime};
use crate::{ListQuery, MessageQuery};

pub const MAX_PER_PAGE: i64 = 100;
pub const DEFAULT_PER_PAGE: i64 = 5;
pub const MAX_MESSAGES: i64 = 100;
pub const DEFAULT_MESSAGES: i64 = 10;

/// A decoded query string: last value wins, names remembered in first-seen order so that the
/// unknown ones can be noted back to the client.
pub struct RawParams {
    pairs: Vec<(String, String)>,
    known: Vec<&'static str>,
}

impl RawParams {
    pub fn new(query: Option<&str>) -> Self {
        let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Self {
            pairs,
            known: Vec::new(),
        }
    }

    /// The last value of `name`, marking the name as known. Empty values count as given.
    fn raw(&mut self, name: &'static str) -> Option<&str> {
        self.known.push(name);
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Like `raw`, but an empty value means the parameter is absent (CONTRACT §7).
    fn opt(&mut self, name: &'static str) -> Option<&str> {
        self.raw(name).filter(|v| !v.is_empty())
    }

    /// Names given that no `raw`/`opt` call asked for, each once, in first-seen order.
    pub fn ignored(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for (k, _) in &self.pairs {
            if !k.is_empty() && !self.known.contains(&k.as_str()) && !out.contains(&k.as_str()) {
                out.push(k);
            }
        }
        out
    }
}

/// Decimal digits only (leading zeros allowed, no sign, no spaces), within a signed 64-bit integer.
pub fn parse_int(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.bytes().try_fold(0i64, |acc, b| {
        acc.checked_mul(10)?.checked_add(i64::from(b - b'0'))
    })
}

/// `true`/`false`/`1`/`0`, case-insensitive.
pub fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") || s == "1" {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") || s == "0" {
        Some(false)
    } else {
        None
    }
}

/// Where a request is scoped: the institution's subdomain and one of its locations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub subdomain: String,
    pub location_id: i64,
}

/// A valid `GET /conversations` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListParams {
    pub scope: Scope,
    pub query: ListQuery,
    /// Notes for `description`, in the contract's order.
    pub notes: Vec<String>,
}

/// The `description` of a successful answer: the notes joined by spaces, or `Success`.
pub fn description(notes: &[String]) -> String {
    if notes.is_empty() {
        "Success".to_string()
    } else {
        notes.join(" ")
    }
}

struct Collector {
    errors: Vec<String>,
}

impl Collector {
    fn int(&mut self, value: Option<&str>, min: i64, msg: &str) -> Option<i64> {
        let v = value?;
        match parse_int(v) {
            Some(n) if n >= min => Some(n),
            _ => {
                self.errors.push(msg.to_string());
                None
            }
        }
    }

    fn datetime(&mut self, value: Option<&str>, name: &str) -> Option<Instant> {
        let v = value?;
        let parsed = parse_datetime(v, OffsetRule::Optional);
        if parsed.is_none() {
            self.errors.push(format!("{name} is not a valid date/time"));
        }
        parsed
    }
}

fn scope(raw: &mut RawParams, c: &mut Collector) -> Option<Scope> {
    let subdomain = raw.opt("subdomain").map(str::to_string);
    if subdomain.is_none() {
        c.errors.push("subdomain is missing".into());
    }
    let location_id = match raw.opt("location_id") {
        None => {
            c.errors.push("location_id is missing".into());
            None
        }
        v => c.int(v, 1, "location_id must be a positive integer"),
    };
    Some(Scope {
        subdomain: subdomain?,
        location_id: location_id?,
    })
}

/// `include_messages`, `messages`, `messages_since` and the message half of `updated_since`.
/// Returns the message selection (None: messages not included) and the cap note, if any.
fn messages(
    raw: &mut RawParams,
    c: &mut Collector,
    updated_since: Option<Instant>,
) -> (Option<MessageQuery>, Option<String>) {
    let include = match raw.opt("include_messages") {
        None => None,
        Some(v) => match parse_bool(v) {
            Some(b) => Some(b),
            None => {
                c.errors
                    .push("include_messages must be true, false, 1 or 0".into());
                None
            }
        },
    };
    let count = c.int(
        raw.opt("messages"),
        0,
        "messages must be a non-negative integer",
    );
    let given = raw.opt("messages").is_some();
    let since = c.datetime(raw.opt("messages_since"), "messages_since");
    if !include.unwrap_or(given) {
        return (None, None);
    }
    let requested = count.unwrap_or(DEFAULT_MESSAGES);
    let note = (requested > MAX_MESSAGES).then(|| "messages is capped at 100.".to_string());
    let query = MessageQuery {
        limit: requested.min(MAX_MESSAGES),
        created_since: since.map(Instant::ceil_millis),
        updated_since: updated_since.map(Instant::ceil_millis),
    };
    (Some(query), note)
}

fn ignored_note(raw: &RawParams) -> Option<String> {
    let ignored = raw.ignored();
    (!ignored.is_empty()).then(|| {
        format!(
            "Note that following parameters are ignored: {}.",
            ignored.join(", ")
        )
    })
}

/// `start_cursor` / `end_cursor` of the cursor variant; at most one of them.
fn cursor_paging(raw: &mut RawParams, c: &mut Collector) -> CursorPaging {
    let mut one = |name: &'static str, c: &mut Collector| {
        let text = raw.opt(name)?;
        let cursor = Cursor::decode(text);
        if cursor.is_none() {
            c.errors.push(format!("{name} is not a valid cursor"));
        }
        cursor
    };
    let start = one("start_cursor", c);
    let end = one("end_cursor", c);
    match (start, end) {
        (Some(_), Some(_)) => {
            c.errors
                .push("start_cursor and end_cursor cannot be used together".into());
            CursorPaging::First
        }
        (Some(s), None) => CursorPaging::Before(s),
        (None, Some(e)) => CursorPaging::After(e),
        (None, None) => CursorPaging::First,
    }
}

impl ListParams {
    /// Parses a `GET /conversations` query string; `Err` lists every problem, one string each,
    /// in the order of the contract's parameter table.
    pub fn parse(query: Option<&str>) -> Result<ListParams, Vec<String>> {
        Self::parse_variant(query, false)
    }

    /// The cursor variant (`Nex-Api-Version: v20240412`): `start_cursor` / `end_cursor` in the
    /// place of `page` (which it does not know, so it is noted as ignored); everything else as
    /// in §3.
    pub fn parse_cursor(query: Option<&str>) -> Result<ListParams, Vec<String>> {
        Self::parse_variant(query, true)
    }

    fn parse_variant(query: Option<&str>, cursors: bool) -> Result<ListParams, Vec<String>> {
        let mut raw = RawParams::new(query);
        let mut c = Collector { errors: Vec::new() };
        let scope = scope(&mut raw, &mut c);
        let (page, cursor) = if cursors {
            (1, Some(cursor_paging(&mut raw, &mut c)))
        } else {
            let page = c
                .int(raw.opt("page"), 1, "page must be a positive integer")
                .unwrap_or(1);
            (page, None)
        };
        let per_page = c
            .int(
                raw.opt("per_page"),
                1,
                "per_page must be a positive integer",
            )
            .unwrap_or(DEFAULT_PER_PAGE);
        // `updated_since` also filters messages, but its error comes last (the table's order).
        let updated = raw
            .opt("updated_since")
            .map(|v| parse_datetime(v, OffsetRule::Optional));
        let (messages, messages_note) = messages(&mut raw, &mut c, updated.flatten());
        if matches!(updated, Some(None)) {
            c.errors
                .push("updated_since is not a valid date/time".into());
        }
        let updated_since = updated.flatten();
        if !c.errors.is_empty() {
            return Err(c.errors);
        }
        let mut notes = Vec::new();
        notes.extend(ignored_note(&raw));
        if per_page > MAX_PER_PAGE {
            notes.push("per_page is capped at 100.".into());
        }
        notes.extend(messages_note);
        let limit = per_page.min(MAX_PER_PAGE);
        let query = ListQuery {
            limit,
            // A page past any possible end is simply empty; never overflow.
            offset: (page - 1).saturating_mul(limit),
            cursor,
            updated_since: updated_since.map(Instant::ceil_millis),
            messages,
        };
        match scope {
            Some(scope) => Ok(ListParams {
                scope,
                query,
                notes,
            }),
            None => Err(c.errors),
        }
    }
}

/// The query of a write endpoint or of `GET /conversations/{id}`: the scope, and (for the
/// latter) the message parameters of §3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopedParams {
    pub scope: Scope,
    pub messages: Option<MessageQuery>,
    pub notes: Vec<String>,
}

impl ScopedParams {
    /// `with_messages`: also read `include_messages`, `messages` and `messages_since` (which
    /// are otherwise ignored parameters).
    pub fn parse(query: Option<&str>, with_messages: bool) -> Result<ScopedParams, Vec<String>> {
        let mut raw = RawParams::new(query);
        let mut c = Collector { errors: Vec::new() };
        let scope = scope(&mut raw, &mut c);
        let (messages, messages_note) = if with_messages {
            messages(&mut raw, &mut c, None)
        } else {
            (None, None)
        };
        if !c.errors.is_empty() {
            return Err(c.errors);
        }
        let mut notes = Vec::new();
        notes.extend(ignored_note(&raw));
        notes.extend(messages_note);
        match scope {
            Some(scope) => Ok(ScopedParams {
                scope,
                messages,
                notes,
            }),
            None => Err(c.errors),
        }
    }
}

/// Which parameters a webhook management route reads (CONTRACT §8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookRoute {
    /// `GET /webhook_endpoints`: `active`.
    ListEndpoints,
    /// `GET …/webhook_subscriptions`: `subdomain`, `resource_type`, `event`, all optional.
    ListSubscriptions,
    /// Creating or changing a subscription: `subdomain`, required.
    Institution,
    /// Everything else: nothing (any parameter is noted as ignored).
    Bare,
}

/// A webhook management route's query, every problem collected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookParams {
    pub subdomain: Option<String>,
    pub active: Option<bool>,
    pub resource_type: Option<String>,
    pub event: Option<String>,
    pub notes: Vec<String>,
}

impl WebhookParams {
    pub fn parse(query: Option<&str>, route: WebhookRoute) -> Result<WebhookParams, Vec<String>> {
        let mut raw = RawParams::new(query);
        let mut errors = Vec::new();
        let mut out = WebhookParams::default();
        match route {
            WebhookRoute::ListEndpoints => {
                out.active = raw.opt("active").and_then(|v| {
                    let parsed = parse_bool(v);
                    if parsed.is_none() {
                        errors.push("active must be true or false".to_string());
                    }
                    parsed
                });
            }
            WebhookRoute::ListSubscriptions => {
                out.subdomain = raw.opt("subdomain").map(str::to_string);
                out.resource_type = raw.opt("resource_type").map(str::to_string);
                out.event = raw.opt("event").map(str::to_string);
            }
            WebhookRoute::Institution => {
                out.subdomain = raw.opt("subdomain").map(str::to_string);
                if out.subdomain.is_none() {
                    errors.push("subdomain is missing".to_string());
                }
            }
            WebhookRoute::Bare => {}
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        out.notes.extend(ignored_note(&raw));
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
