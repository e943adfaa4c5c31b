//! Serialising one list page in the contract's shape: 20 conversations × 5 messages, the
//! ~70 KB body the load benchmark fetches. `cargo bench -p convo-server`.

use convo_core::tz::Zone;
use convo_core::{
    Attachment, Conversation, ConversationPage, Message, Millis, Patient, Sender, SenderKind,
};
use convo_server::encode_list;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn page() -> ConversationPage {
    let conversations = (0..20)
        .map(|i| {
            let at = 1_790_000_000_000 - i * 3_600_000;
            Conversation {
                id: 40_000 + i,
                created_at: Millis(at - 86_400_000 * 30),
                updated_at: Millis(at),
                patient: Patient {
                    id: 40_000 + i,
                    email: Some(format!("olivia.nguyen{i}@mail.example")),
                    first_name: Some("Olivia".into()),
                    middle_name: (i % 3 == 0).then(|| "Marie".into()),
                    last_name: Some("Nguyen".into()),
                    created_at: Millis(at - 86_400_000 * 400),
                    updated_at: Millis(at - 86_400_000 * 20),
                    institution_id: 1,
                    foreign_id: Some(format!("{}", 140_000 + i)),
                    foreign_id_type: Some("msg-opendental-DataSource-35".into()),
                    bio: r#"{"cell_phone_number":"+12125550140"}"#.into(),
                    inactive: false,
                    last_sync_time: Some(Millis(at - 86_400_000)),
                    guarantor_id: None,
                    unsubscribe_sms: false,
                },
                messages: (0..5)
                    .map(|j| {
                        let patient = j % 2 == 0;
                        Message {
                            id: 1_900_000 + i * 10 + j,
                            conversation_id: 40_000 + i,
                            body: if patient {
                                "My tooth has been sensitive since the filling, is that normal?"
                                    .into()
                            } else {
                                "Hi Olivia, we have an opening tomorrow at 10am if you'd like \
                                 to come in earlier."
                                    .into()
                            },
                            created_at: Millis(at - j * 600_000),
                            updated_at: Millis(at - j * 600_000),
                            seen_by: if patient { r#"["3"]"# } else { "[]" }.into(),
                            sender: Sender {
                                kind: if patient {
                                    SenderKind::Patient
                                } else {
                                    SenderKind::User
                                },
                                id: Some(if patient { 40_000 + i } else { 3 }),
                                name: Some(
                                    if patient { "Olivia Nguyen" } else { "Sam Lee" }.into(),
                                ),
                                image: None,
                            },
                            attachment: (j == 4).then(|| Attachment {
                                file_name: Some("photo.jpg".into()),
                                content_type: Some("image/jpeg".into()),
                                file_size: Some(1_234_567),
                                url: Some("https://files.example.com/m/1/photo.jpg".into()),
                                updated_at: Some(Millis(at)),
                            }),
                            sms_msg_id: None,
                            is_custom_reminder_response: false,
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    ConversationPage {
        conversations,
        paging: convo_core::Paging::Count(40_000),
    }
}

fn encode(c: &mut Criterion) {
    let page = page();
    let zone = Zone::get("America/New_York").expect("bundled zone");
    let size = encode_list("Success", &page, &zone).len();
    let mut g = c.benchmark_group("encode_list");
    g.throughput(Throughput::Bytes(size as u64));
    g.bench_function("20 conversations x 5 messages", |b| {
        b.iter(|| encode_list("Success", black_box(&page), &zone))
    });
    g.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
