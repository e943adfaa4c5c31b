use super::*;
use std::collections::HashMap;

fn spec(conversations: u32, seed: u64) -> Spec {
    Spec {
        conversations,
        seed,
        until: Millis(1_790_000_000_000),
        days: 730,
    }
}

fn records(spec: Spec) -> Vec<Record> {
    let mut out = Vec::new();
    Plan::new(spec)
        .emit(|r| {
            out.push(r);
            Ok::<_, ()>(())
        })
        .expect("emit into a Vec cannot fail");
    out
}

fn lines(spec: Spec) -> Vec<String> {
    records(spec)
        .iter()
        .map(|r| serde_json::to_string(r).expect("records serialise"))
        .collect()
}

#[test]
fn same_seed_same_file_other_seed_other_file() {
    assert_eq!(lines(spec(300, 7)), lines(spec(300, 7)));
    assert_ne!(lines(spec(300, 7)), lines(spec(300, 8)));
}

#[test]
fn every_line_parses_back_to_the_record_it_came_from() {
    for record in records(spec(200, 3)) {
        let line = serde_json::to_string(&record).expect("serialise");
        assert!(line.starts_with(r#"{"type":""#), "{line}");
        assert_eq!(Record::parse_line(&line), Ok(record), "{line}");
    }
}

#[test]
fn shape_matches_the_practice_group() {
    let plan = Plan::new(spec(10_000, 1));
    let all = records(spec(10_000, 1));
    assert_eq!(all.len(), plan.record_count());
    let mut per_location: HashMap<i64, usize> = HashMap::new();
    let mut started: HashMap<i64, i64> = HashMap::new();
    let mut threads: HashMap<i64, usize> = HashMap::new();
    let (mut last_id, mut last_at) = (0, i64::MIN);
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    let (mut seen, mut attachments) = (0, 0);
    for record in &all {
        match record {
            Record::Conversation(c) => {
                *per_location.entry(c.location_id).or_default() += 1;
                started.insert(c.id, c.created_at.0.0);
                assert_eq!(c.patient_id, c.id);
            }
            Record::Message(m) => {
                assert!(m.id > last_id && m.created_at.0.0 >= last_at, "time order");
                (last_id, last_at) = (m.id, m.created_at.0.0);
                assert!(m.created_at.0.0 >= started[&m.conversation_id]);
                assert!(m.created_at.0.0 < 1_790_000_000_000);
                assert!(m.updated_at.expect("always written").0 >= m.created_at.0);
                *threads.entry(m.conversation_id).or_default() += 1;
                *kinds.entry(m.sender.kind.as_str()).or_default() += 1;
                if m.sender.kind == SenderKind::Patient {
                    assert_eq!(m.sender.id, Some(m.conversation_id));
                }
                seen += usize::from(!m.seen_by.is_empty());
                attachments += usize::from(m.attachment.is_some());
            }
            _ => {}
        }
    }
    assert_eq!(
        [1, 2, 3, 4].map(|l| per_location[&l]),
        [4_000, 3_000, 2_000, 1_000]
    );
    let mut lengths: Vec<usize> = threads.values().copied().collect();
    lengths.sort_unstable();
    assert_eq!(lengths.len(), 10_000, "every conversation has messages");
    let median = lengths[lengths.len() / 2];
    assert!((10..=14).contains(&median), "median thread {median}");
    assert!(lengths[lengths.len() - 1] >= 200, "a long tail");
    let total: usize = lengths.iter().sum();
    assert!(
        (170_000..=230_000).contains(&total),
        "about 20 per thread: {total}"
    );
    assert!(kinds.len() == 3 && kinds.values().all(|&n| n > total / 10));
    assert!(seen > total / 5 && attachments > total / 100);
}
