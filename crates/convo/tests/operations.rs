//! Operations end to end on the real binary: crash recovery in seconds (kill -9 after a claim
//! and before one), a bounded graceful stop, one server per SQLite file, a backup taken during
//! writes, and an accept loop that survives running out of file descriptors.

mod common;

use common::fake_twilio::FakeTwilio;
use common::{
    TestDb, convo, http, practice, send, start_server, start_server_with, terminate, text,
    token_for, twilio_env,
};
use std::process::Command;
use std::time::{Duration, Instant};

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while started.elapsed() < within {
        if done() {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what}: not within {within:?}");
}

/// (status, claimed by a worker) of the delivery of the message with this body.
fn delivery(db: &TestDb, body: &str) -> (String, bool) {
    let d = common::delivery_of(db, body);
    (d.status.as_str().to_string(), d.claimed_by.is_some())
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn sends_claimed_or_queued_by_a_killed_server_go_out_within_seconds_of_the_restart_once() {
    let db = TestDb::new("r");
    let key = practice(&db, "");
    let fake = FakeTwilio::start();
    // The provider hangs on the first send: the worker holds that claim, and its batch.
    fake.fake
        .hold_next
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let env = twilio_env(&fake);
    let (mut server, addr, drain) = start_server(&db, &env_refs(&env));
    let token = token_for(&addr, &key);
    assert!(send(&addr, &token, 100, "claimed then killed").starts_with("HTTP/1.1 201"));
    wait_for(
        "the provider sees the first send",
        Duration::from_secs(10),
        || fake.received("claimed then killed") == 1,
    );
    // The worker is stuck in its batch: the second send is queued, not claimed.
    assert!(send(&addr, &token, 100, "queued then killed").starts_with("HTTP/1.1 201"));
    assert_eq!(
        delivery(&db, "claimed then killed"),
        ("queued".into(), true)
    );
    assert_eq!(
        delivery(&db, "queued then killed"),
        ("queued".into(), false)
    );
    server.kill().expect("SIGKILL");
    let _ = server.wait();
    let _ = drain.join();

    let restarted = Instant::now();
    let (server, _addr, drain) = start_server(&db, &env_refs(&env));
    // The restarted server takes back the dead one's claims at once: on SQLite every claim (one
    // server per file); on PostgreSQL those of workers that ran here and whose process is gone
    // (others may be alive elsewhere).
    let bound = Duration::from_secs(10);
    wait_for("both sends go out after the restart", bound, || {
        fake.answered("claimed then killed") == 1 && fake.answered("queued then killed") == 1
    });
    let recovery = restarted.elapsed();
    assert!(recovery < bound, "{recovery:?}");
    // Once each: nothing more arrives while the new server runs.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fake.answered_all().len(), 2, "{:?}", fake.received_all());
    assert_eq!(fake.received("queued then killed"), 1);
    assert_eq!(delivery(&db, "claimed then killed"), ("sent".into(), false));
    assert_eq!(delivery(&db, "queued then killed"), ("sent".into(), false));
    let (status, logs) = terminate(server, drain);
    assert!(status.success(), "{status:?}\n{logs}");
    assert!(logs.contains("took back the claims"), "{logs}");
}

#[test]
fn sigterm_waits_for_sends_with_the_provider_then_releases_what_is_left_and_exits_0() {
    let db = TestDb::new("g");
    let key = practice(&db, "");
    let fake = FakeTwilio::start();
    let env = twilio_env(&fake);

    // A slow provider (1.5 s) inside the grace period: the send is recorded before the exit.
    fake.fake
        .delay_ms
        .store(1_500, std::sync::atomic::Ordering::SeqCst);
    let (server, addr, drain) =
        start_server_with(&db, &env_refs(&env), &["--shutdown-timeout", "10"]);
    let token = token_for(&addr, &key);
    assert!(send(&addr, &token, 100, "slow but in time").starts_with("HTTP/1.1 201"));
    wait_for(
        "the provider sees the send",
        Duration::from_secs(10),
        || fake.received("slow but in time") == 1,
    );
    let stopping = Instant::now();
    let (status, logs) = terminate(server, drain);
    assert!(status.success(), "{status:?}\n{logs}");
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "{:?}",
        stopping.elapsed()
    );
    assert_eq!(delivery(&db, "slow but in time"), ("sent".into(), false));

    // A provider that hangs past the grace period: the exit still comes, the claim is released,
    // and the next start sends it.
    fake.fake
        .delay_ms
        .store(0, std::sync::atomic::Ordering::SeqCst);
    fake.fake
        .hold_next
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let (server, addr, drain) =
        start_server_with(&db, &env_refs(&env), &["--shutdown-timeout", "1"]);
    let token = token_for(&addr, &key);
    assert!(send(&addr, &token, 100, "hung at the stop").starts_with("HTTP/1.1 201"));
    wait_for(
        "the provider sees the send",
        Duration::from_secs(10),
        || fake.received("hung at the stop") == 1,
    );
    let stopping = Instant::now();
    let (status, logs) = terminate(server, drain);
    assert!(status.success(), "{status:?}\n{logs}");
    assert!(
        stopping.elapsed() < Duration::from_secs(6),
        "{:?}",
        stopping.elapsed()
    );
    assert!(logs.contains("released and will be sent again"), "{logs}");
    assert_eq!(delivery(&db, "hung at the stop"), ("queued".into(), false));
    let (server, _, drain) = start_server(&db, &env_refs(&env));
    wait_for(
        "the released send goes out",
        Duration::from_secs(10),
        || fake.answered("hung at the stop") == 1,
    );
    let (status, _) = terminate(server, drain);
    assert!(status.success());
}

/// SQLite has one server per file; on PostgreSQL a second process is the same server: a
/// token from one works on the other, and a send through one is listed by the other.
#[test]
fn a_second_server_is_refused_on_sqlite_and_shares_the_database_on_postgres() {
    let db = TestDb::new("one");
    let key = practice(&db, "");
    let (server, addr, drain) = start_server(&db, &[]);
    if db.is_sqlite() {
        let second = common::serve_command(&db).output().expect("run");
        assert!(!second.status.success());
        assert!(
            text(&second.stderr).contains("another `convo serve` is running on"),
            "{}",
            text(&second.stderr)
        );
    } else {
        let (other, other_addr, other_drain) = start_server(&db, &[]);
        let token = token_for(&addr, &key);
        let sent = send(&other_addr, &token, 100, "through the second process");
        assert!(sent.starts_with("HTTP/1.1 201"), "{sent}");
        let listed = http(
            &addr,
            &format!(
                "GET /conversations?subdomain=acme&location_id=10&messages=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            ),
        );
        assert!(listed.contains("through the second process"), "{listed}");
        let (status, _) = terminate(other, other_drain);
        assert!(status.success());
    }
    let (status, _) = terminate(server, drain);
    assert!(status.success());
}

#[test]
fn a_backup_taken_during_writes_is_consistent_and_serves() {
    let db = TestDb::new("live");
    let dir = db.scratch();
    if !db.is_sqlite() {
        // PostgreSQL is backed up with its own tools; the command says which, and writes nothing.
        let copy = dir.path().join("copy.db");
        let out = convo(&db, &["backup", copy.to_str().expect("path")]);
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("pg_dump"),
            "{}",
            text(&out.stderr)
        );
        assert!(!copy.exists());
        return;
    }
    let key = practice(&db, "");
    let (server, addr, drain) = start_server(&db, &[]);
    let token = token_for(&addr, &key);
    let writer = {
        let (addr, token) = (addr.clone(), token.clone());
        std::thread::spawn(move || {
            let mut acknowledged = 0;
            for i in 0..300 {
                if send(&addr, &token, 100, &format!("during the backup {i}"))
                    .starts_with("HTTP/1.1 201")
                {
                    acknowledged += 1;
                }
            }
            acknowledged
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let copy = dir.path().join("copy.db");
    let out = convo(&db, &["backup", copy.to_str().expect("path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("backup written"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(writer.join().expect("writer"), 300);
    let (status, _) = terminate(server, drain);
    assert!(status.success());

    // Read through the store traits: the copy opens, and it is one snapshot, so every message
    // it holds has its delivery (written in one transaction each).
    let (copied, orphans) = common::on_store(&db.sqlite_copy(&copy), |store| async move {
        store.check_ready().await.expect("the copy reads whole");
        let deliveries: std::collections::HashSet<i64> = store
            .list_deliveries(None, i64::MAX)
            .await
            .expect("deliveries")
            .into_iter()
            .map(|d| d.id)
            .collect();
        let ours: Vec<_> = common::messages_of_location(store.as_ref())
            .await
            .into_iter()
            .filter(|m| m.body.starts_with("during the backup "))
            .collect();
        let orphans = ours
            .iter()
            .filter(|m| !m.sms_msg_id.is_some_and(|d| deliveries.contains(&d)))
            .count();
        (deliveries.len(), orphans)
    });
    assert!((0..=300).contains(&copied));
    assert_eq!(orphans, 0);
    // The copy serves: the same key, the same conversation.
    let (server, addr, drain) = start_server(&db.sqlite_copy(&copy), &[]);
    let token = token_for(&addr, &key);
    let listed = http(
        &addr,
        &format!(
            "GET /conversations?subdomain=acme&location_id=10 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(listed.starts_with("HTTP/1.1 200"), "{listed}");
    assert!(listed.contains(r#""count":1"#) == (copied > 0), "{listed}");
    let (status, _) = terminate(server, drain);
    assert!(status.success());
    // Never over an existing file.
    let again = convo(&db, &["backup", copy.to_str().expect("path")]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
}

#[test]
fn running_out_of_file_descriptors_pauses_the_accept_loop_and_it_recovers() {
    let db = TestDb::new("fd");
    let key = practice(&db, "");
    let bin = env!("CARGO_BIN_EXE_convo");
    // A soft limit of 64 descriptors, far below --max-connections.
    let mut server = Command::new("sh")
        .args([
            "-c",
            &format!(
                "ulimit -n 64 && exec '{bin}' --database-url '{}' serve --listen 127.0.0.1:0",
                db.url()
            ),
        ])
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let (addr, logs) = common::read_address(&mut server);
    let token = token_for(&addr, &key);
    let flood_started = Instant::now();
    let flood: Vec<_> = (0..150)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(1_500));
    drop(flood);
    let flood_secs = flood_started.elapsed().as_secs();
    // Answered again once descriptors are free.
    let request = format!(
        "GET /conversations?subdomain=acme&location_id=10 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let mut reply = String::new();
    wait_for("the server answers again", Duration::from_secs(10), || {
        reply = http(&addr, &request);
        reply.starts_with("HTTP/1.1 200")
    });
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let status = server.wait().expect("wait");
    let logs = logs.join().expect("logs");
    assert!(status.success(), "{status:?}\n{logs}");
    // The errors were seen, and logged at most about once a second (no spinning).
    let warnings = logs.matches("cannot accept a connection").count();
    assert!(warnings >= 1, "{logs}");
    assert!(
        warnings as u64 <= flood_secs + 12,
        "{warnings} warnings:\n{logs}"
    );
}
