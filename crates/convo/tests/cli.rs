//! The binary end to end: api-key create/list/revoke, import errors, serve on port 0 with
//! graceful shutdown, and the demo.

mod common;

use common::{PRACTICE, TestDb, convo, http, start_server, text, token_for};
use std::io::Write;
use std::process::{Command, Stdio};

const FIXTURE: &str = r#"{"type":"institution","id":1,"subdomain":"acme","name":"Acme"}
{"type":"location","id":10,"institution_id":1,"name":"A","tz":"America/Chicago"}
{"type":"patient","id":100,"institution_id":1,"first_name":"Ana"}
{"type":"conversation","id":1000,"location_id":10,"patient_id":100,"created_at":"2024-01-01T00:00:00Z"}
"#;

#[test]
fn api_keys_end_to_end() {
    let db = TestDb::new("c");
    let dir = db.scratch();
    let file = dir.path().join("f.ndjson");
    std::fs::write(&file, FIXTURE).expect("write");

    let out = convo(&db, &["api-key", "create", "--subdomain", "acme"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no institution has the subdomain `acme`"));

    let out = convo(&db, &["import", file.to_str().expect("path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(
            "1 institutions, 1 locations, 1 patients, 0 users, 1 conversations, 0 messages"
        )
    );

    let out = convo(&db, &["api-key", "create", "--subdomain", "acme"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = text(&out.stdout);
    let key = key.trim_end_matches('\n');
    assert!(
        key.starts_with("cvk_") && !key.contains(char::is_whitespace),
        "{key:?}"
    );
    assert!(text(&out.stderr).contains("created API key 1"));

    let list = text(&convo(&db, &["api-key", "list"]).stdout);
    assert!(list.contains("acme"), "{list}");
    assert!(!list.contains(key), "the raw key is never listed");

    // Serve on a free port and trade the key for a token.
    let (mut server, addr, drain) = start_server(&db, &[]);
    let token = token_for(&addr, key);
    let list_req = format!(
        "GET /conversations?subdomain=acme&location_id=10 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let listed = http(&addr, &list_req);
    assert!(listed.starts_with("HTTP/1.1 200"), "{listed}");
    assert!(listed.contains("\"count\":1"), "{listed}");

    // Revoking from the CLI cuts the running server's tokens off at once.
    let out = convo(&db, &["api-key", "revoke", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = http(&addr, &list_req);
    assert!(listed.starts_with("HTTP/1.1 401"), "{listed}");
    let list = text(&convo(&db, &["api-key", "list"]).stdout);
    assert!(
        list.lines().nth(1).is_some_and(|l| l.contains(" yes ")),
        "{list}"
    );
    assert!(!convo(&db, &["api-key", "revoke", "42"]).status.success());

    // SIGTERM: graceful shutdown, exit 0.
    let pid = server.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = server.wait().expect("wait");
    let logs = drain.join().expect("drain");
    assert!(status.success(), "{status:?}\n{logs}");
    assert!(logs.contains("shutting down"), "{logs}");
    // Never a secret or a body in the logs.
    assert!(!logs.contains(key) && !logs.contains(&token), "{logs}");
}

#[test]
fn import_reports_the_first_bad_line_and_writes_nothing() {
    let db = TestDb::new("c");
    let dir = db.scratch();
    let file = dir.path().join("bad.ndjson");
    std::fs::write(
        &file,
        format!("{FIXTURE}\n{{\"type\":\"patient\",\"id\":1}}\n"),
    )
    .expect("write");
    let out = convo(&db, &["import", file.to_str().expect("path")]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("line 6: missing field `institution_id`"),
        "{}",
        text(&out.stderr)
    );
    let out = convo(&db, &["api-key", "create", "--subdomain", "acme"]);
    assert!(!out.status.success(), "nothing was imported");
    let out = convo(
        &db,
        &[
            "import",
            dir.path().join("missing.ndjson").to_str().expect("path"),
        ],
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cannot open"));
}

#[test]
fn import_reads_stdin() {
    let db = TestDb::new("c");
    let mut child = Command::new(env!("CARGO_BIN_EXE_convo"))
        .args(["--database-url", db.url(), "import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(FIXTURE.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("1 conversations"));
}

#[test]
fn demo_fills_once_and_prints_a_working_curl_line() {
    let db = TestDb::new("demo");
    let out = convo(&db, &["demo"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("curl -s -H 'Authorization: Bearer "),
        "{stdout}"
    );
    assert!(
        stdout.contains("/conversations?subdomain=bright-smiles&location_id=1"),
        "{stdout}"
    );
    assert!(text(&out.stderr).contains("demo practice loaded"));
    let again = convo(&db, &["demo"]);
    assert!(again.status.success());
    assert!(
        text(&again.stderr).contains("adds nothing"),
        "{}",
        text(&again.stderr)
    );
}

#[test]
fn generate_writes_the_same_importable_file_for_the_same_seed() {
    let db = TestDb::new("g");
    let dir = db.scratch();
    let (a, b) = (dir.path().join("a.ndjson"), dir.path().join("b.ndjson"));
    for file in [&a, &b] {
        let out = convo(
            &db,
            &[
                "generate",
                "--conversations",
                "50",
                "--seed",
                "9",
                "--until",
                "2026-01-01T00:00:00Z",
                "--out",
                file.to_str().expect("path"),
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("50 conversations"));
    }
    let bytes = std::fs::read(&a).expect("read");
    assert_eq!(bytes, std::fs::read(&b).expect("read"));
    let out = convo(&db, &["import", a.to_str().expect("path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("4 locations, 50 patients, 25 users, 50 conversations"));

    let out = convo(&db, &["generate", "--until", "last tuesday"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--until `last tuesday` is not an RFC 3339 timestamp"));
}

#[test]
fn a_signed_reply_arrives_and_a_killed_server_loses_nothing_it_acknowledged() {
    let db = TestDb::new("w");
    let dir = db.scratch();
    let file = dir.path().join("p.ndjson");
    std::fs::write(&file, PRACTICE).expect("write");
    assert!(
        convo(&db, &["import", file.to_str().expect("path")])
            .status
            .success()
    );
    let key = text(&convo(&db, &["api-key", "create", "--subdomain", "acme"]).stdout);
    let key = key.trim().to_string();
    let env = [("CONVO_TWILIO_AUTH_TOKEN", "tok-cli")];
    let (mut server, addr, drain) = start_server(&db, &env);
    let token = token_for(&addr, &key);

    // `convo sms inbound` signs with the same token and the reply lands first.
    let out = Command::new(env!("CARGO_BIN_EXE_convo"))
        .args([
            "sms",
            "inbound",
            "--from",
            "(516) 304-2196",
            "--to",
            "+15551230000",
            "--body",
            "Running 10 minutes late",
            "--url",
            &format!("http://{addr}"),
        ])
        .env_remove("CONVO_PUBLIC_URL")
        .envs(env)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).starts_with("200 "),
        "{}",
        text(&out.stdout)
    );
    let list_req = format!(
        "GET /conversations?subdomain=acme&location_id=10&messages=5 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let listed = http(&addr, &list_req);
    assert!(listed.contains("Running 10 minutes late"), "{listed}");
    // A wrong token is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_convo"))
        .args([
            "sms",
            "inbound",
            "--from",
            "+15163042196",
            "--to",
            "+15551230000",
            "--body",
            "x",
            "--url",
            &format!("http://{addr}"),
        ])
        .env_remove("CONVO_PUBLIC_URL")
        .env("CONVO_TWILIO_AUTH_TOKEN", "not-the-token")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).starts_with("403 "),
        "{}",
        text(&out.stdout)
    );

    // A staff send acknowledged with 201, then SIGKILL at once: the message survives.
    let body = r#"{"message":{"patient_id":100,"user_id":5,"body":"Survives a crash"}}"#;
    let sent = http(
        &addr,
        &format!(
            "POST /messages?subdomain=acme&location_id=10 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(sent.starts_with("HTTP/1.1 201"), "{sent}");
    server.kill().expect("SIGKILL");
    let _ = server.wait();
    let first_logs = drain.join().expect("drain");

    let (mut server, addr, drain) = start_server(&db, &env);
    let listed = http(&addr, &list_req.replace(&token, &token_for(&addr, &key)));
    assert!(listed.contains("Survives a crash"), "{listed}");
    assert!(listed.contains("Running 10 minutes late"), "{listed}");
    // The operator's view of outgoing SMS: the record, never the body or a number.
    let listed = convo(&db, &["deliveries", "list"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let rows = text(&listed.stdout);
    assert!(rows.starts_with("id\tmessage_id\t"), "{rows}");
    assert_eq!(rows.lines().count(), 2, "{rows}");
    assert!(
        !rows.contains("Survives") && !rows.contains("5163042196"),
        "{rows}"
    );
    let id = rows
        .lines()
        .nth(1)
        .and_then(|l| l.split('\t').next())
        .expect("id");
    let refused = convo(&db, &["deliveries", "retry", id]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("only failed or undelivered"),
        "{}",
        text(&refused.stderr)
    );
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
    let logs = first_logs + &drain.join().expect("drain");
    // The send is not lost: it went out (before the kill or after the restart, which takes back
    // a claim the killed worker held), or it is still due if the stop came before the restarted
    // worker's first claim. Timing of the restart is tests/operations.rs's business.
    let record = common::delivery_of(&db, "Survives a crash");
    let (status, due) = (record.status.as_str(), record.next_attempt_at);
    assert!(
        (status == "sent" && logs.contains("sms recorded"))
            || (status == "queued" && due.is_some()),
        "{status} {due:?}\n{logs}"
    );
    // No body or number in the logs.
    assert!(
        !logs.contains("Survives a crash") && !logs.contains("5163042196"),
        "{logs}"
    );
}

/// `convo webhooks listen` takes a signed delivery (from the server's own attempt code), says
/// what arrived on stdout, and refuses one signed with another secret.
#[test]
fn webhooks_listen_prints_verified_deliveries() {
    use convo_server::webhooks::address::Cidr;
    use convo_server::webhooks::attempt::{Outcome, Rules, attempt};
    use convo_server::webhooks::{client, sign};
    use std::io::{BufRead, BufReader};
    use std::sync::Arc;
    use std::time::Duration;

    let secret = sign::new_secret().expect("secret");
    let mut child = Command::new(env!("CARGO_BIN_EXE_convo"))
        .args(["webhooks", "listen", "--port", "0", "--secret", &secret])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut first = String::new();
    stderr.read_line(&mut first).expect("read");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let allow: Arc<[Cidr]> = Arc::from(["127.0.0.0/8".parse::<Cidr>().expect("cidr")]);
    let rules = Rules {
        allow: Arc::clone(&allow),
        allow_http: true,
        timeout: Duration::from_secs(5),
    };
    let http = client::delivery_client(allow, rules.timeout).expect("client");
    let body = br#"{"resource_type":"Message","event_name":"message_created","subdomain":"demo","data":{"messages":[{"id":7,"body":"On my way","conversation_id":3,"sender_info":{"meta_type":"Patient"}}]},"event_id":"evt_5"}"#;
    let now = convo_core::Millis::now().0 / 1000;
    let (good, bad) = runtime.block_on(async {
        let good = attempt(&http, &rules, &url, &secret, 5, now, body.to_vec()).await;
        let other = sign::new_secret().expect("secret");
        let bad = attempt(&http, &rules, &url, &other, 6, now, body.to_vec()).await;
        (good, bad)
    });
    assert_eq!(good, Outcome::Delivered { status: 204 });
    assert!(
        matches!(bad, Outcome::Failed(ref f) if f.status == Some(401)),
        "{bad:?}"
    );
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read");
    assert_eq!(
        line.trim_end(),
        "evt_5 message_created: message 7 in conversation 3 from Patient: \"On my way\" \
         (both signatures verified)"
    );
    line.clear();
    stdout.read_line(&mut line).expect("read");
    assert!(line.starts_with("refused a delivery (evt_6)"), "{line}");
    let _ = child.kill();
    let _ = child.wait();
}
