//! Moving a practice from SQLite to PostgreSQL (CONTRACT §9): `convo export` on the one,
//! `convo import` into an empty other, and every API answer is the same.

mod common;

use common::{TestDb, convo, http, send, start_server, terminate, text, token_for};
use std::process::Command;

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn get(addr: &str, token: &str, path: &str, version: Option<&str>) -> String {
    let accept = version.map_or(String::new(), |v| format!("Nex-Api-Version: {v}\r\n"));
    let reply = http(
        addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{accept}Connection: close\r\n\r\n"
        ),
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{path}: {reply}");
    reply
}

/// A new key of `acme`, made while no server runs on `db`: on SQLite the command and a server
/// starting its worker raced for the write lock, and a lost race printed no key (a 401 later,
/// seen once in CI).
fn key(db: &TestDb) -> String {
    let out = convo(db, &["api-key", "create", "--subdomain", "acme"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

fn inbound(addr: &str, from: &str, body: &str, sid: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_convo"))
        .args([
            "sms",
            "inbound",
            "--from",
            from,
            "--to",
            "+15551230000",
            "--body",
            body,
            "--sid",
            sid,
            "--url",
            &format!("http://{addr}"),
        ])
        .env_remove("CONVO_PUBLIC_URL")
        .env("CONVO_TWILIO_AUTH_TOKEN", "tok")
        .output()
        .expect("run");
    assert!(
        text(&out.stdout).starts_with("200 "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn export_from_sqlite_then_import_into_postgres_answers_every_call_the_same() {
    let from = TestDb::sqlite("from");
    let fixture = from.scratch().path().join("fixture.ndjson");
    std::fs::write(&fixture, convo_store_tests::fixture::PRACTICE).expect("write");
    assert!(
        convo(&from, &["import", fixture.to_str().expect("path")])
            .status
            .success()
    );
    // Activity through the API too: staff sends, texts from a patient and a new number, seen.
    let env = [("CONVO_TWILIO_AUTH_TOKEN", "tok")];
    let from_key = key(&from);
    let (server, addr, drain) = start_server(&from, &env);
    let token = token_for(&addr, &from_key);
    for body in ["Your cleaning is booked", "See you then"] {
        assert!(send(&addr, &token, 100, body).starts_with("HTTP/1.1 201"));
    }
    inbound(&addr, "+15163042196", "Thanks!", "SMmove1");
    inbound(&addr, "+12025550187", "Who is this?", "SMmove2");
    let seen = http(
        &addr,
        "POST /messages/50001/seen?subdomain=acme&location_id=10 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer TOKEN\r\nContent-Type: application/json\r\nContent-Length: 13\r\nConnection: close\r\n\r\n{\"user_id\":5}"
            .replace("TOKEN", &token)
            .as_str(),
    );
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    let (status, _) = terminate(server, drain);
    assert!(status.success());

    let exported = from.scratch().path().join("practice.ndjson");
    let out = convo(
        &from,
        &["export", "--out", exported.to_str().expect("path")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Never over an existing file.
    let again = convo(
        &from,
        &["export", "--out", exported.to_str().expect("path")],
    );
    assert!(!again.status.success());

    let to = TestDb::postgres(true);
    let out = convo(&to, &["import", exported.to_str().expect("path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The same records come back out, byte for byte.
    let back = convo(&to, &["export"]);
    assert!(back.status.success(), "{}", text(&back.stderr));
    assert_eq!(
        text(&back.stdout),
        std::fs::read_to_string(&exported).expect("read")
    );

    let (a_key, b_key) = (key(&from), key(&to));
    let (a, a_addr, a_drain) = start_server(&from, &env);
    let (b, b_addr, b_drain) = start_server(&to, &env);
    let (a_token, b_token) = (token_for(&a_addr, &a_key), token_for(&b_addr, &b_key));
    let scope = "subdomain=acme&location_id=10";
    let calls: Vec<(String, Option<&str>)> = vec![
        (
            format!("/conversations?{scope}&per_page=2&messages=5"),
            None,
        ),
        (
            format!("/conversations?{scope}&per_page=2&page=2&messages=5"),
            None,
        ),
        (
            format!("/conversations?{scope}&updated_since=2024-03-01T00:00:00Z&messages=100"),
            None,
        ),
        (
            "/conversations?subdomain=acme&location_id=11&messages=3".to_string(),
            None,
        ),
        (
            format!("/conversations?{scope}&per_page=3&messages=2"),
            Some("v20240412"),
        ),
        (format!("/conversations/1000?{scope}&messages=100"), None),
    ];
    for (path, version) in calls {
        let (x, y) = (
            get(&a_addr, &a_token, &path, version),
            get(&b_addr, &b_token, &path, version),
        );
        assert_eq!(body(&x), body(&y), "{path}");
    }
    for (server, drain) in [(a, a_drain), (b, b_drain)] {
        let (status, _) = terminate(server, drain);
        assert!(status.success());
    }
}
