//! Instants: the contract's date/time input formats and its UTC output format.
//!
//! Stored times are whole milliseconds (`Millis`). Query parameters may carry up to nine fraction
//! digits and are compared exactly (CONTRACT §7), so they parse to an exact `Instant` that knows
//! how to become the smallest stored millisecond at or after it.

use jiff::{Timestamp, civil::DateTime, tz::Offset};
use serde::{Serialize, Serializer};

/// Milliseconds since the Unix epoch: how every timestamp is stored and compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub i64);

/// An exact instant as a client wrote it: whole seconds plus 0..1e9 nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    secs: i64,
    nanos: u32,
}

impl Instant {
    pub fn from_parts(secs: i64, nanos: u32) -> Option<Self> {
        (nanos < 1_000_000_000).then_some(Self { secs, nanos })
    }

    /// The smallest whole millisecond `m` with `m >= self`: `created_at >= since` on stored
    /// millisecond values is exactly `created_at >= since.ceil_millis()`.
    pub fn ceil_millis(self) -> Millis {
        let extra = self.nanos.div_ceil(1_000_000);
        Millis(
            self.secs
                .saturating_mul(1000)
                .saturating_add(i64::from(extra)),
        )
    }

    /// Truncated to the millisecond, as the import stores timestamps (CONTRACT §7).
    pub fn floor_millis(self) -> Millis {
        Millis(
            self.secs
                .saturating_mul(1000)
                .saturating_add(i64::from(self.nanos / 1_000_000)),
        )
    }
}

impl Millis {
    pub fn now() -> Self {
        Millis(Timestamp::now().as_millisecond())
    }

    fn timestamp(self) -> Timestamp {
        // Out-of-range values cannot come from parsing (years 0000-9999); clamp rather than fail.
        Timestamp::from_millisecond(self.0).unwrap_or(if self.0 < 0 {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        })
    }

    /// Offset of this instant in `zone`, in seconds east of UTC.
    pub fn offset_in(self, zone: &jiff::tz::TimeZone) -> i32 {
        zone.to_offset(self.timestamp()).seconds()
    }

    /// `2024-05-01T16:30:00.000Z`
    pub fn write_utc(self, out: &mut String) {
        self.write_local(0, out);
        out.push('Z');
    }

    /// `2024-03-10T01:30:00.000` in the civil time `offset_secs` east of UTC (no suffix).
    pub fn write_local(self, offset_secs: i32, out: &mut String) {
        let offset = Offset::from_seconds(offset_secs).unwrap_or(Offset::UTC);
        write_civil(offset.to_datetime(self.timestamp()), out);
    }
}

fn push2(out: &mut String, v: i64) {
    out.push(char::from(b'0' + (v / 10 % 10) as u8));
    out.push(char::from(b'0' + (v % 10) as u8));
}

fn write_civil(dt: DateTime, out: &mut String) {
    let year = i64::from(dt.year());
    if year < 0 {
        out.push('-');
    }
    let y = year.abs();
    push2(out, y / 100);
    push2(out, y % 100);
    out.push('-');
    push2(out, i64::from(dt.month()));
    out.push('-');
    push2(out, i64::from(dt.day()));
    out.push('T');
    push2(out, i64::from(dt.hour()));
    out.push(':');
    push2(out, i64::from(dt.minute()));
    out.push(':');
    push2(out, i64::from(dt.second()));
    out.push('.');
    let ms = i64::from(dt.millisecond());
    out.push(char::from(b'0' + (ms / 100) as u8));
    push2(out, ms % 100);
}

/// `-08:00`, `+05:45`, `+00:00`; seconds appear only for historical offsets that have them.
pub fn write_offset(offset_secs: i32, out: &mut String) {
    out.push(if offset_secs < 0 { '-' } else { '+' });
    let abs = i64::from(offset_secs.unsigned_abs());
    push2(out, abs / 3600);
    out.push(':');
    push2(out, abs / 60 % 60);
    if abs % 60 != 0 {
        out.push(':');
        push2(out, abs % 60);
    }
}

/// Serializes a stored time as the contract's UTC string.
#[derive(Clone, Copy, Debug)]
pub struct Utc(pub Millis);

impl Serialize for Utc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = String::with_capacity(24);
        self.0.write_utc(&mut buf);
        s.serialize_str(&buf)
    }
}

impl Millis {
    pub fn to_utc_string(self) -> String {
        let mut s = String::with_capacity(24);
        self.write_utc(&mut s);
        s
    }
}

/// Whether the text after the time must name an offset.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OffsetRule {
    /// Query parameters: an offset is optional (UTC when absent) and a date alone is midnight UTC.
    Optional,
    /// Import files: RFC 3339, so a full date-time with an offset.
    Required,
}

/// Parses the contract's date/time formats (CONTRACT §3 and §7). `None` when malformed.
pub fn parse_datetime(s: &str, rule: OffsetRule) -> Option<Instant> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let year = num(0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let month = num(5, 2)?;
    let day = num(8, 2)?;
    let (hour, minute, second, nanos, rest) = if b.len() == 10 {
        if rule == OffsetRule::Required {
            return None;
        }
        (0, 0, 0, 0, &b[10..])
    } else {
        if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
            return None;
        }
        let hour = num(11, 2)?;
        let minute = num(14, 2)?;
        let second = num(17, 2)?;
        if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
            return None;
        }
        let mut i = 19;
        let mut nanos = 0i64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = i - start;
            if digits == 0 || digits > 9 {
                return None;
            }
            nanos = num(start, digits)? * 10i64.pow((9 - digits) as u32);
        }
        (hour, minute, second, nanos, &b[i..])
    };
    let offset_secs = parse_offset(rest, rule)?;
    let dt = DateTime::new(
        i16::try_from(year).ok()?,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second).ok()?,
        0,
    )
    .ok()?;
    let offset = Offset::from_seconds(offset_secs).ok()?;
    let ts = offset.to_timestamp(dt).ok()?;
    Instant::from_parts(ts.as_second(), u32::try_from(nanos).ok()?)
}

/// `Z`, `z`, `±hh:mm`, `±hhmm`, or nothing; a space stands for a `+` that arrived unencoded.
fn parse_offset(rest: &[u8], rule: OffsetRule) -> Option<i32> {
    match rest {
        [] => (rule == OffsetRule::Optional).then_some(0),
        [b'Z' | b'z'] => Some(0),
        [sign @ (b'+' | b'-' | b' '), tail @ ..] => {
            let (h, m) = match tail {
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => ([*h1, *h2], [*m1, *m2]),
                _ => return None,
            };
            let two = |d: [u8; 2]| -> Option<i32> {
                (d[0].is_ascii_digit() && d[1].is_ascii_digit())
                    .then(|| i32::from(d[0] - b'0') * 10 + i32::from(d[1] - b'0'))
            };
            let (h, m) = (two(h)?, two(m)?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            Some(if *sign == b'-' { -secs } else { secs })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
