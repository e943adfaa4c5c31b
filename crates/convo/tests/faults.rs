//! The fault harness (issue 11): concurrent staff sends and signed inbound webhooks against the
//! real binary, SIGKILL at a random moment, restart, repeat. After every kill each write the
//! server acknowledged with a 2xx is in the database; after every restart each acknowledged send
//! reaches the (fake) provider, and how long that took is recorded; duplicate texts are counted.
//!
//! CI runs a few trials. `bench/faults.sh` runs many on the release build:
//! `CONVO_FAULT_TRIALS=100 cargo test --release -p convo --test faults -- --nocapture`.

mod common;

use common::fake_twilio::FakeTwilio;
use common::{TestDb, practice, start_server, terminate, token_for, twilio_env};
use convo_core::write::InboundSms;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PATIENTS: i64 = 20;
const SENDERS: usize = 3;
const REPLIERS: usize = 3;

/// A request on a fresh connection; `None` once the server is gone.
fn try_http(addr: &str, request: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn phone(patient: i64) -> String {
    format!("+1516555{:04}", patient)
}

fn patients() -> String {
    (1..=PATIENTS)
        .map(|i| {
            let id = 1000 + i;
            format!(
                "{{\"type\":\"patient\",\"id\":{id},\"institution_id\":1,\"first_name\":\"P{i}\",\"bio\":{{\"cell_phone_number\":\"{}\"}}}}\n",
                phone(id)
            )
        })
        .collect()
}

/// A small deterministic generator (the kill moments must differ per trial, not per run).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[derive(Default)]
struct Acknowledged {
    /// Bodies, as the provider receives them.
    sends: Vec<String>,
    /// The delivery id (`sms_msg_id`) each 201 named.
    deliveries: Vec<i64>,
    /// `(MessageSid, From, Body)` of each webhook answered 200.
    inbound: Vec<(String, String, String)>,
    /// How many of `inbound` an earlier check found stored (a committed write stays committed).
    inbound_checked: usize,
}

/// The `sms_msg_id` of a 201 answer to `POST /messages`.
fn delivery_id(response: &str) -> i64 {
    let at = response.find("\"sms_msg_id\":").expect("a delivery id") + "\"sms_msg_id\":".len();
    let digits: String = response[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().expect("a delivery id")
}

fn load(
    addr: &str,
    token: &str,
    trial: usize,
    stop: &Arc<AtomicBool>,
    acked: &Arc<Mutex<Acknowledged>>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    for t in 0..SENDERS {
        let (addr, token, stop, acked) = (
            addr.to_string(),
            token.to_string(),
            stop.clone(),
            acked.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let body = format!("trial {trial} send {t}-{n}");
                let patient = 1001 + (n % PATIENTS);
                let json = format!(
                    r#"{{"message":{{"patient_id":{patient},"user_id":5,"body":"{body}"}}}}"#
                );
                let request = format!(
                    "POST /messages?subdomain=acme&location_id=10 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                    json.len()
                );
                match try_http(&addr, &request) {
                    Some(r) if r.starts_with("HTTP/1.1 201") => {
                        let mut acked = acked.lock().expect("lock");
                        acked.sends.push(body);
                        acked.deliveries.push(delivery_id(&r));
                    }
                    Some(r) if r.starts_with("HTTP/1.1 ") && !r.is_empty() => {
                        panic!("a send was refused: {r}")
                    }
                    _ => return,
                }
            }
        }));
    }
    for t in 0..REPLIERS {
        let (addr, stop, acked) = (addr.to_string(), stop.clone(), acked.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let sid = format!("SMt{trial}r{t}n{n}");
                let (from, body) = (phone(1001 + (n % PATIENTS)), format!("reply {sid}"));
                let params: Vec<(String, String)> = [
                    ("From", from.clone()),
                    ("To", "+15551230000".to_string()),
                    ("Body", body.clone()),
                    ("MessageSid", sid.clone()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
                let signature =
                    convo_server::twilio::signature("tok", "http://x/sms/inbound", &params);
                let form = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(params.iter())
                    .finish();
                let request = format!(
                    "POST /sms/inbound HTTP/1.1\r\nHost: x\r\nX-Twilio-Signature: {signature}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
                    form.len()
                );
                match try_http(&addr, &request) {
                    Some(r) if r.starts_with("HTTP/1.1 200") => {
                        acked.lock().expect("lock").inbound.push((sid, from, body))
                    }
                    Some(r) if r.starts_with("HTTP/1.1 ") => {
                        panic!("a webhook was refused: {r}")
                    }
                    _ => return,
                }
            }
        }));
    }
    threads
}

/// Acknowledged writes missing from the database (must be none), read through the store traits
/// of whatever engine `db` is: every acknowledged send's delivery is listed, and every
/// acknowledged SMS not yet checked is already stored (the provider's retry of it is a
/// duplicate).
fn lost(db: &TestDb, acked: &mut Acknowledged) -> usize {
    common::on_store(db, |store| async move {
        store.check_ready().await.expect("the database reads whole");
        let listed: HashSet<i64> = store
            .list_deliveries(None, i64::MAX)
            .await
            .expect("deliveries")
            .into_iter()
            .map(|d| d.id)
            .collect();
        let mut missing = acked
            .deliveries
            .iter()
            .filter(|id| !listed.contains(id))
            .count();
        for (sid, from, body) in &acked.inbound[acked.inbound_checked..] {
            let retry = InboundSms {
                to: "+15551230000".into(),
                from: from.clone(),
                body: body.clone(),
                sid: sid.clone(),
                media: None,
            };
            if !store.receive_sms(retry).await.expect("receive").duplicate {
                missing += 1;
            }
        }
        acked.inbound_checked = acked.inbound.len();
        missing
    })
}

/// How long until every acknowledged send has reached the provider (at least once).
fn until_delivered(fake: &FakeTwilio, sends: &[String], from: Instant) -> Duration {
    loop {
        let received = fake.received_all();
        let set: HashSet<&String> = received.iter().collect();
        if sends.iter().all(|s| set.contains(s)) {
            return from.elapsed();
        }
        assert!(
            from.elapsed() < Duration::from_secs(60),
            "{} acknowledged sends never reached the provider",
            sends.iter().filter(|s| !set.contains(s)).count()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn acknowledged_writes_survive_sigkill_at_random_moments() {
    let trials: usize = std::env::var("CONVO_FAULT_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("CONVO_FAULT_SEED")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(11);
    let db = TestDb::new("faults");
    let key = practice(&db, &patients());
    let fake = FakeTwilio::start();
    // Answers take 0–40 ms, so kills land while sends are with the provider.
    fake.fake.jitter_ms.store(40, Ordering::SeqCst);
    let env = twilio_env(&fake);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut rng = Lcg(seed);
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let (mut lost_total, mut worst) = (0, Duration::ZERO);
    for trial in 0..trials {
        let restarted = Instant::now();
        let (mut server, addr, drain) = start_server(&db, &env);
        let pending = acked.lock().expect("lock").sends.clone();
        worst = worst.max(until_delivered(&fake, &pending, restarted));
        let token = token_for(&addr, &key);
        let stop = Arc::new(AtomicBool::new(false));
        let threads = load(&addr, &token, trial, &stop, &acked);
        std::thread::sleep(Duration::from_millis(150 + rng.below(1_000)));
        server.kill().expect("SIGKILL");
        let _ = server.wait();
        let _ = drain.join();
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().expect("load thread");
        }
        let lost_now = lost(&db, &mut acked.lock().expect("lock"));
        lost_total += lost_now;
        assert_eq!(lost_now, 0, "trial {trial}: acknowledged writes lost");
    }
    let restarted = Instant::now();
    let (server, _addr, drain) = start_server(&db, &env);
    let acked = acked.lock().expect("lock");
    worst = worst.max(until_delivered(&fake, &acked.sends, restarted));
    let (status, logs) = terminate(server, drain);
    assert!(status.success(), "{status:?}\n{logs}");
    let mut times: HashMap<&String, usize> = HashMap::new();
    let received = fake.received_all();
    for r in &received {
        *times.entry(r).or_default() += 1;
    }
    let duplicates: usize = acked
        .sends
        .iter()
        .map(|s| times.get(s).copied().unwrap_or(0).saturating_sub(1))
        .sum();
    println!(
        "RESULT trials={trials} acknowledged_sends={} acknowledged_inbound={} lost={lost_total} \
         duplicate_texts={duplicates} worst_restart_to_all_sent_ms={}",
        acked.sends.len(),
        acked.inbound.len(),
        worst.as_millis()
    );
    assert!(!acked.sends.is_empty() && !acked.inbound.is_empty());
    assert_eq!(lost_total, 0);
    // A restart takes the dead server's claims back at once (on PostgreSQL: those of workers
    // that ran here and whose process is gone).
    let bound = Duration::from_secs(10);
    assert!(
        worst < bound,
        "a restart took {worst:?} to send what was pending"
    );
}
