//! Several `convo serve` processes on one PostgreSQL database are one server (CONTRACT §9):
//! real processes, a fake provider that counts what it is sent. PostgreSQL only (SQLite has one
//! server per file, as `operations.rs` shows).

mod common;

use common::fake_twilio::FakeTwilio;
use common::{
    TestDb, http, messages_of_location, on_store, practice, send, start_server, terminate, text,
    token_for, twilio_env,
};
use std::process::Command;
use std::time::{Duration, Instant};

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn list(addr: &str, token: &str) -> String {
    http(
        addr,
        &format!(
            "GET /conversations?subdomain=acme&location_id=10&messages=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        ),
    )
}

#[test]
fn three_processes_starting_on_an_empty_database_migrate_it_once_and_serve_as_one() {
    let db = TestDb::postgres(true);
    let servers: Vec<_> = std::thread::scope(|s| {
        let starting: Vec<_> = (0..3).map(|_| s.spawn(|| start_server(&db, &[]))).collect();
        starting
            .into_iter()
            .map(|h| h.join().expect("start"))
            .collect()
    });
    let versions = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(connection);
            client
                .query("SELECT version, count(*) FROM convo_schema GROUP BY 1", &[])
                .await
                .expect("versions")
                .iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
                .collect::<Vec<_>>()
        });
    assert!(!versions.is_empty());
    assert!(versions.iter().all(|&(_, n)| n == 1), "{versions:?}");
    // A token from one process works on every other.
    let key = practice(&db, "");
    let token = token_for(&servers[0].1, &key);
    for (_, addr, _) in &servers {
        assert!(list(addr, &token).starts_with("HTTP/1.1 200"));
    }
    for (server, _, drain) in servers {
        let (status, _) = terminate(server, drain);
        assert!(status.success());
    }
}

#[test]
fn sends_through_three_processes_are_each_texted_once() {
    let db = TestDb::postgres(false);
    let key = practice(&db, "");
    let fake = FakeTwilio::start();
    let env = twilio_env(&fake);
    let servers: Vec<_> = (0..3).map(|_| start_server(&db, &env_refs(&env))).collect();
    let token = token_for(&servers[0].1, &key);
    let addrs: Vec<String> = servers.iter().map(|s| s.1.clone()).collect();
    std::thread::scope(|s| {
        for t in 0..6 {
            let (addrs, token) = (&addrs, &token);
            s.spawn(move || {
                for i in 0..10 {
                    let n = t * 10 + i;
                    let reply = send(&addrs[n % 3], token, 100, &format!("multi {n}"));
                    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
                }
            });
        }
    });
    wait_for("every send texted", Duration::from_secs(30), || {
        fake.answered_all().len() >= 60
    });
    // Nothing more comes: each went out once.
    std::thread::sleep(Duration::from_millis(1_000));
    for n in 0..60 {
        let body = format!("multi {n}");
        assert_eq!(fake.received(&body), 1, "{body}: {:?}", fake.received_all());
    }
    assert_eq!(fake.received_all().len(), 60);
    for (server, _, drain) in servers {
        let (status, _) = terminate(server, drain);
        assert!(status.success());
    }
}

#[test]
fn a_killed_process_leaves_its_claimed_text_to_another_within_30_seconds() {
    let db = TestDb::postgres(false);
    let key = practice(&db, "");
    let fake = FakeTwilio::start();
    fake.fake
        .hold_next
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let env = twilio_env(&fake);
    let (mut doomed, addr, doomed_drain) = start_server(&db, &env_refs(&env));
    let token = token_for(&addr, &key);
    assert!(send(&addr, &token, 100, "claimed by the one killed").starts_with("HTTP/1.1 201"));
    wait_for("the provider sees it", Duration::from_secs(10), || {
        fake.received("claimed by the one killed") == 1
    });
    let (survivor, survivor_addr, survivor_drain) = start_server(&db, &env_refs(&env));
    // The survivor sends its own texts at once; the held one stays with its live owner.
    assert!(send(&survivor_addr, &token, 100, "through the survivor").starts_with("HTTP/1.1 201"));
    wait_for("the survivor's own text", Duration::from_secs(10), || {
        fake.answered("through the survivor") == 1
    });
    assert_eq!(fake.received("claimed by the one killed"), 1);
    doomed.kill().expect("SIGKILL");
    let _ = doomed.wait();
    let _ = doomed_drain.join();
    let killed = Instant::now();
    wait_for(
        "the survivor takes the claim over",
        Duration::from_secs(30),
        || fake.answered("claimed by the one killed") == 1,
    );
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(30), "{took:?}");
    let record = common::delivery_of(&db, "claimed by the one killed");
    assert_eq!(record.status.as_str(), "sent");
    let (status, _) = terminate(survivor, survivor_drain);
    assert!(status.success());
}

#[test]
fn one_message_sid_posted_to_two_processes_at_once_is_stored_once() {
    let db = TestDb::postgres(false);
    practice(&db, "");
    let env = [("CONVO_TWILIO_AUTH_TOKEN", "tok".to_string())];
    let a = start_server(&db, &env_refs(&env));
    let b = start_server(&db, &env_refs(&env));
    let inbound = |addr: &str, n: usize| {
        Command::new(env!("CARGO_BIN_EXE_convo"))
            .args([
                "sms",
                "inbound",
                "--from",
                "+15163042196",
                "--to",
                "+15551230000",
                "--body",
                &format!("twice {n}"),
                "--sid",
                &format!("SMtwice{n}"),
                "--url",
                &format!("http://{addr}"),
            ])
            .env_remove("CONVO_PUBLIC_URL")
            .env("CONVO_TWILIO_AUTH_TOKEN", "tok")
            .spawn()
            .expect("spawn")
    };
    let mut posts = Vec::new();
    for n in 0..15 {
        posts.push(inbound(&a.1, n));
        posts.push(inbound(&b.1, n));
    }
    for mut p in posts {
        assert!(p.wait().expect("wait").success());
    }
    let bodies: Vec<String> = on_store(&db, |store| async move {
        messages_of_location(store.as_ref())
            .await
            .into_iter()
            .map(|m| m.body)
            .filter(|b| b.starts_with("twice "))
            .collect()
    });
    for n in 0..15 {
        let body = format!("twice {n}");
        assert_eq!(
            bodies.iter().filter(|b| **b == body).count(),
            1,
            "{body}: {bodies:?}"
        );
    }
    for (server, _, drain) in [a, b] {
        let (status, logs) = terminate(server, drain);
        assert!(status.success(), "{}", text(logs.as_bytes()));
    }
}
