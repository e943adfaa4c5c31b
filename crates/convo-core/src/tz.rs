//! A location's IANA time zone, resolved once per request, rendering `created_at_with_tz`.

use crate::time::{Millis, write_offset};
use jiff::tz::TimeZone;

/// A location's zone. Resolving it is a database lookup by name, so do it once per request.
#[derive(Clone, Debug)]
pub struct Zone(TimeZone);

impl Zone {
    /// `None` for a name the bundled tz database does not know.
    pub fn get(name: &str) -> Option<Zone> {
        jiff::tz::db().get(name).ok().map(Zone)
    }

    pub fn utc() -> Zone {
        Zone(TimeZone::UTC)
    }

    /// The instant's offset in this zone, seconds east of UTC (DST-aware).
    pub fn offset_at(&self, at: Millis) -> i32 {
        at.offset_in(&self.0)
    }

    /// `(created_at_with_tz, timezone_offset)`, e.g. `("2024-03-10T01:30:00.000-08:00", "-08:00")`.
    pub fn render(&self, at: Millis) -> (String, String) {
        let offset = self.offset_at(at);
        let mut off = String::with_capacity(6);
        write_offset(offset, &mut off);
        let mut local = String::with_capacity(29);
        at.write_local(offset, &mut local);
        local.push_str(&off);
        (local, off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{OffsetRule, parse_datetime};

    fn at(s: &str) -> Millis {
        parse_datetime(s, OffsetRule::Required)
            .expect("test timestamp")
            .floor_millis()
    }

    fn render(zone: &str, utc: &str) -> (String, String) {
        Zone::get(zone).expect("zone").render(at(utc))
    }

    fn check(zone: &str, utc: &str, local: &str, offset: &str) {
        assert_eq!(
            render(zone, utc),
            (local.to_string(), offset.to_string()),
            "{zone} at {utc}"
        );
    }

    #[test]
    fn us_spring_forward_both_sides() {
        // 2024-03-10 02:00 PST jumps to 03:00 PDT (10:00Z).
        check(
            "America/Los_Angeles",
            "2024-03-10T09:59:59.999Z",
            "2024-03-10T01:59:59.999-08:00",
            "-08:00",
        );
        check(
            "America/Los_Angeles",
            "2024-03-10T10:00:00.000Z",
            "2024-03-10T03:00:00.000-07:00",
            "-07:00",
        );
    }

    #[test]
    fn us_fall_back_repeats_the_hour() {
        // 2024-11-03 02:00 PDT falls back to 01:00 PST (09:00Z): 01:30 happens twice.
        check(
            "America/New_York",
            "2024-11-03T05:30:00.000Z",
            "2024-11-03T01:30:00.000-04:00",
            "-04:00",
        );
        check(
            "America/New_York",
            "2024-11-03T06:30:00.000Z",
            "2024-11-03T01:30:00.000-05:00",
            "-05:00",
        );
    }

    #[test]
    fn europe_transitions() {
        // EU: last Sunday of March at 01:00Z, last Sunday of October at 01:00Z.
        check(
            "Europe/Berlin",
            "2024-03-31T00:59:59.000Z",
            "2024-03-31T01:59:59.000+01:00",
            "+01:00",
        );
        check(
            "Europe/Berlin",
            "2024-03-31T01:00:00.000Z",
            "2024-03-31T03:00:00.000+02:00",
            "+02:00",
        );
        check(
            "Europe/London",
            "2024-10-27T00:59:59.000Z",
            "2024-10-27T01:59:59.000+01:00",
            "+01:00",
        );
        check(
            "Europe/London",
            "2024-10-27T01:00:00.000Z",
            "2024-10-27T01:00:00.000+00:00",
            "+00:00",
        );
    }

    #[test]
    fn southern_hemisphere_dst() {
        // Sydney leaves DST on 2024-04-07 at 03:00 local (16:00Z the day before).
        check(
            "Australia/Sydney",
            "2024-04-06T15:59:59.000Z",
            "2024-04-07T02:59:59.000+11:00",
            "+11:00",
        );
        check(
            "Australia/Sydney",
            "2024-04-06T16:00:00.000Z",
            "2024-04-07T02:00:00.000+10:00",
            "+10:00",
        );
    }

    #[test]
    fn thirty_minute_dst_shift() {
        // Lord Howe Island moves by 30 minutes: +10:30 standard, +11:00 summer.
        // DST ends 2024-04-07 02:00 local (+11:00) = 2024-04-06T15:00Z.
        check(
            "Australia/Lord_Howe",
            "2024-04-06T14:59:00.000Z",
            "2024-04-07T01:59:00.000+11:00",
            "+11:00",
        );
        check(
            "Australia/Lord_Howe",
            "2024-04-06T15:00:00.000Z",
            "2024-04-07T01:30:00.000+10:30",
            "+10:30",
        );
    }

    #[test]
    fn non_whole_hour_offsets() {
        check(
            "Asia/Kolkata",
            "2024-01-01T00:00:00.000Z",
            "2024-01-01T05:30:00.000+05:30",
            "+05:30",
        );
        check(
            "Asia/Kathmandu",
            "2024-07-01T12:00:00.000Z",
            "2024-07-01T17:45:00.000+05:45",
            "+05:45",
        );
        // Chatham Islands: +12:45 standard, +13:45 in (southern) summer.
        check(
            "Pacific/Chatham",
            "2024-01-15T00:00:00.000Z",
            "2024-01-15T13:45:00.000+13:45",
            "+13:45",
        );
        check(
            "Pacific/Chatham",
            "2024-07-15T00:00:00.000Z",
            "2024-07-15T12:45:00.000+12:45",
            "+12:45",
        );
    }

    #[test]
    fn date_line_crossing_day() {
        check(
            "Pacific/Honolulu",
            "2024-01-01T05:00:00.000Z",
            "2023-12-31T19:00:00.000-10:00",
            "-10:00",
        );
    }

    #[test]
    fn unknown_zone_is_none() {
        assert!(Zone::get("Mars/Olympus_Mons").is_none());
        assert!(Zone::get("UTC").is_some());
    }
}
