//! The pure pieces every list request runs: query parsing, date parsing, time-zone rendering.
//! `cargo bench -p convo-core`; a regression here shows without a server or a database.

use convo_core::Millis;
use convo_core::params::ListParams;
use convo_core::time::{OffsetRule, parse_datetime, write_offset};
use convo_core::tz::Zone;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn params(c: &mut Criterion) {
    let mut g = c.benchmark_group("params");
    g.bench_function("page 500 with messages", |b| {
        b.iter(|| {
            ListParams::parse(black_box(Some(
                "subdomain=summit-dental&location_id=1&per_page=20&page=500&messages=5",
            )))
        })
    });
    g.bench_function("polling, encoded date", |b| {
        b.iter(|| {
            ListParams::parse(black_box(Some(
                "subdomain=summit-dental&location_id=1&per_page=20&messages=5\
                 &updated_since=2026-11-24T21%3A00%3A00.000%2B00%3A00&messages_since=2026-11-01",
            )))
        })
    });
    g.bench_function("bad input, four errors", |b| {
        b.iter(|| {
            ListParams::parse(black_box(Some(
                "subdomain=&location_id=x&per_page=-1&page=0&updated_since=yesterday",
            )))
        })
    });
    g.finish();
}

fn dates(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_datetime");
    for (name, text, rule) in [
        (
            "utc millis",
            "2026-11-24T21:00:00.123Z",
            OffsetRule::Required,
        ),
        (
            "offset nanos",
            "2026-11-24T21:00:00.123456789+05:30",
            OffsetRule::Required,
        ),
        ("date only", "2026-11-24", OffsetRule::Optional),
    ] {
        g.bench_function(name, |b| b.iter(|| parse_datetime(black_box(text), rule)));
    }
    g.finish();
}

fn zones(c: &mut Criterion) {
    let zone = Zone::get("America/New_York").expect("bundled zone");
    // A page's worth of instants spread over two years, across DST changes.
    let instants: Vec<Millis> = (0..100)
        .map(|i| Millis(1_730_000_000_000 + i * 631_152_000))
        .collect();
    let mut g = c.benchmark_group("tz");
    g.bench_function("render 100 created_at_with_tz", |b| {
        let mut buf = String::with_capacity(64);
        b.iter(|| {
            for &at in black_box(&instants) {
                buf.clear();
                let offset = zone.offset_at(at);
                at.write_local(offset, &mut buf);
                write_offset(offset, &mut buf);
            }
            buf.len()
        })
    });
    g.bench_function("resolve zone by name", |b| {
        b.iter(|| Zone::get(black_box("America/Los_Angeles")))
    });
    g.finish();
}

criterion_group!(benches, params, dates, zones);
criterion_main!(benches);
