use super::*;
use proptest::prelude::*;

fn q(s: &str) -> Option<Instant> {
    parse_datetime(s, OffsetRule::Optional)
}

fn utc(s: &str) -> String {
    q(s).expect("valid").floor_millis().to_utc_string()
}

#[test]
fn date_only_is_midnight_utc() {
    assert_eq!(utc("2024-01-01"), "2024-01-01T00:00:00.000Z");
}

#[test]
fn separators_and_zulu() {
    for s in [
        "2024-05-01T16:30:00",
        "2024-05-01t16:30:00",
        "2024-05-01 16:30:00",
        "2024-05-01T16:30:00Z",
        "2024-05-01T16:30:00z",
        "2024-05-01T16:30:00+0000",
        "2024-05-01T16:30:00+00:00",
        "2024-05-01T16:30:00-00:00",
    ] {
        assert_eq!(utc(s), "2024-05-01T16:30:00.000Z", "{s}");
    }
}

#[test]
fn offsets_shift_the_instant() {
    assert_eq!(utc("2024-05-01T09:30:00-0700"), "2024-05-01T16:30:00.000Z");
    assert_eq!(utc("2024-05-01T09:30:00-07:00"), "2024-05-01T16:30:00.000Z");
    assert_eq!(utc("2024-05-01T22:00:00+05:30"), "2024-05-01T16:30:00.000Z");
}

#[test]
fn a_space_is_an_unencoded_plus() {
    assert_eq!(utc("2024-01-01T00:00:00 0000"), "2024-01-01T00:00:00.000Z");
    assert_eq!(utc("2024-01-01T05:30:00 05:30"), "2024-01-01T00:00:00.000Z");
    assert_eq!(utc("2024-01-01 05:30:00 0530"), "2024-01-01T00:00:00.000Z");
}

#[test]
fn fractions_are_exact() {
    let a = q("2024-01-01T00:00:56.1221Z").expect("valid");
    assert_eq!(
        a.ceil_millis(),
        q("2024-01-01T00:00:56.123Z").expect("valid").floor_millis()
    );
    assert_eq!(
        q("2024-01-01T00:00:56.122Z")
            .expect("valid")
            .ceil_millis()
            .0
            % 1000,
        122
    );
    assert_eq!(
        q("2024-01-01T00:00:56.123456789Z")
            .expect("valid")
            .ceil_millis()
            .0
            % 1000,
        124
    );
    assert_eq!(
        q("2024-01-01T00:00:56.5").expect("valid").floor_millis().0 % 1000,
        500
    );
}

#[test]
fn malformed_values_are_refused() {
    for s in [
        "",
        "2024",
        "2024-1-01",
        "2024-01-01Z",
        "2024-01-01+00:00",
        "2024-01-01T10:00",
        "2024-01-01T10:00Z",
        "2024-01-01T10:00:00.",
        "2024-01-01T10:00:00.1234567890Z",
        "2024-01-01T10:00:00+00",
        "2024-01-01T10:00:00+0",
        "2024-01-01T10:00:00 +00:00",
        "2024-01-01T10:00:00Zjunk",
        "2024-01-01T10:00:00 ",
        " 2024-01-01",
        "2024-01-01x",
        "2024-02-30",
        "2023-02-29T00:00:00",
        "2024-13-01",
        "2024-01-01T24:00:00",
        "2024-01-01T23:60:00",
        "2024-01-01T23:59:60",
        "2024-01-01T10:00:00+24:00",
        "2024-01-01T10:00:00+05:60",
        "yesterday",
        "1714581000",
        "２０２４-01-01",
    ] {
        assert!(q(s).is_none(), "accepted {s:?}");
    }
}

#[test]
fn import_needs_an_offset() {
    assert!(parse_datetime("2024-01-01T00:00:00Z", OffsetRule::Required).is_some());
    assert!(parse_datetime("2024-01-01T00:00:00+02:00", OffsetRule::Required).is_some());
    assert!(parse_datetime("2024-01-01T00:00:00", OffsetRule::Required).is_none());
    assert!(parse_datetime("2024-01-01", OffsetRule::Required).is_none());
}

#[test]
fn utc_output_format() {
    assert_eq!(Millis(0).to_utc_string(), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        Millis(1_714_581_000_007).to_utc_string(),
        "2024-05-01T16:30:00.007Z"
    );
    assert_eq!(Millis(-1).to_utc_string(), "1969-12-31T23:59:59.999Z");
}

#[test]
fn offsets_render_with_sign_and_colon() {
    let render = |s| {
        let mut out = String::new();
        write_offset(s, &mut out);
        out
    };
    assert_eq!(render(0), "+00:00");
    assert_eq!(render(-8 * 3600), "-08:00");
    assert_eq!(render(5 * 3600 + 45 * 60), "+05:45");
    assert_eq!(render(-(3 * 3600 + 30 * 60)), "-03:30");
    assert_eq!(render(-(4 * 3600 + 56 * 60 + 2)), "-04:56:02");
}

proptest! {
    /// Any instant we print, we parse back to the same millisecond.
    #[test]
    fn printed_times_parse_back(ms in -62_000_000_000_000i64..253_000_000_000_000i64) {
        let text = Millis(ms).to_utc_string();
        let back = parse_datetime(&text, OffsetRule::Required).expect("own output parses");
        prop_assert_eq!(back.floor_millis(), Millis(ms));
        prop_assert_eq!(back.ceil_millis(), Millis(ms));
    }

    /// The same instant written with any offset, in any accepted spelling, is the same instant.
    #[test]
    fn offsets_are_equivalent(
        ms in 0i64..4_000_000_000_000i64,
        off_min in -1439i32..1439,
        colon in any::<bool>(),
        space_plus in any::<bool>(),
        sep in prop::sample::select(vec!['T', 't', ' ']),
    ) {
        let secs = off_min * 60;
        let mut local = String::new();
        Millis(ms).write_local(secs, &mut local);
        local.replace_range(10..11, &sep.to_string());
        let (h, m) = (off_min.abs() / 60, off_min.abs() % 60);
        let sign = if off_min < 0 { "-" } else if space_plus { " " } else { "+" };
        let text = if colon { format!("{local}{sign}{h:02}:{m:02}") } else { format!("{local}{sign}{h:02}{m:02}") };
        let parsed = parse_datetime(&text, OffsetRule::Optional).expect("valid");
        prop_assert_eq!(parsed.floor_millis(), Millis(ms), "{}", text);
    }

    /// Arbitrary text never panics, and what parses has a valid shape.
    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,40}") {
        let _ = parse_datetime(&s, OffsetRule::Optional);
        let _ = parse_datetime(&s, OffsetRule::Required);
    }

    /// `ceil_millis` is the least stored millisecond not before the instant.
    #[test]
    fn ceil_is_exact(secs in -10_000_000_000i64..10_000_000_000i64, nanos in 0u32..1_000_000_000) {
        let i = Instant::from_parts(secs, nanos).expect("in range");
        let c = i.ceil_millis().0 as i128 * 1_000_000;
        let exact = secs as i128 * 1_000_000_000 + nanos as i128;
        prop_assert!(c >= exact && c - exact < 1_000_000);
    }
}
