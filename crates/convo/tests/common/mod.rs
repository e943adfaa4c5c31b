//! Helpers for driving the real binary: run a subcommand, start a server on a free port, speak
//! HTTP/1.1 to it, and a fake of Twilio's Messages API that records what it was sent.
#![allow(dead_code)]

pub mod fake_twilio;

use convo_core::TenantCtx;
use convo_core::outbox::DeliveryRecord;
use convo_core::tz::Zone;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A database of the engine under test (`CONVO_TEST_ENGINE`: `sqlite`, the default, or
/// `postgres`), named by the URL the binary takes, with a scratch directory beside it for the
/// test's other files. A PostgreSQL one is dropped with it; PostgreSQL not reachable fails the
/// test.
pub struct TestDb {
    url: String,
    scratch: tempfile::TempDir,
    _postgres: Option<convo_store_postgres::scratch::ScratchDb>,
}

impl TestDb {
    pub fn new(name: &str) -> Self {
        match std::env::var("CONVO_TEST_ENGINE").as_deref() {
            Ok("sqlite") | Err(_) => Self::sqlite(name),
            Ok("postgres") => Self::postgres(false),
            Ok(other) => panic!("CONVO_TEST_ENGINE={other}: the engines are sqlite, postgres"),
        }
    }

    /// A SQLite file whatever the engine under test.
    pub fn sqlite(name: &str) -> Self {
        let scratch = tempfile::tempdir().expect("tempdir");
        Self {
            url: scratch
                .path()
                .join(format!("{name}.db"))
                .to_str()
                .expect("path")
                .to_string(),
            scratch,
            _postgres: None,
        }
    }

    /// A PostgreSQL database whatever the engine under test (for what only it can do):
    /// migrated, or `empty` as a first deployment finds it.
    pub fn postgres(empty: bool) -> Self {
        use convo_store_postgres::scratch::ScratchDb;
        let db = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                if empty {
                    ScratchDb::create_empty().await
                } else {
                    ScratchDb::create().await
                }
            })
            .expect("scratch database");
        Self {
            url: db.url().to_string(),
            scratch: tempfile::tempdir().expect("tempdir"),
            _postgres: Some(db),
        }
    }

    /// `--database-url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A directory for the test's files (import files, backups).
    pub fn scratch(&self) -> &tempfile::TempDir {
        &self.scratch
    }

    /// The SQLite file at `path` (a backup of this one, say).
    pub fn sqlite_copy(&self, path: &std::path::Path) -> TestDb {
        TestDb {
            url: path.to_str().expect("path").to_string(),
            scratch: tempfile::tempdir().expect("tempdir"),
            _postgres: None,
        }
    }

    pub fn is_sqlite(&self) -> bool {
        self._postgres.is_none()
    }
}

pub fn convo(db: &TestDb, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_convo"))
        .arg("--database-url")
        .arg(db.url())
        .args(args)
        .env_remove("CONVO_LISTEN")
        .env_remove("CONVO_JWT_SECRET")
        .output()
        .expect("run convo")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn http(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// `convo serve --listen 127.0.0.1:0` on `db`, not yet started.
pub fn serve_command(db: &TestDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_convo"));
    command.args([
        "--database-url",
        db.url(),
        "serve",
        "--listen",
        "127.0.0.1:0",
    ]);
    command
}

/// `convo serve` on a free port with extra environment; returns the child, its address and a
/// thread draining its logs (joined, it returns them).
pub fn start_server(
    db: &TestDb,
    env: &[(&str, &str)],
) -> (std::process::Child, String, std::thread::JoinHandle<String>) {
    start_server_with(db, env, &[])
}

/// `start_server` with extra `serve` arguments.
pub fn start_server_with(
    db: &TestDb,
    env: &[(&str, &str)],
    args: &[&str],
) -> (std::process::Child, String, std::thread::JoinHandle<String>) {
    let mut server = serve_command(db)
        .args(args)
        .env_remove("CONVO_JWT_SECRET")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let (addr, drain) = read_address(&mut server);
    (server, addr, drain)
}

/// A bearer token for `key` from a running server.
pub fn token_for(addr: &str, key: &str) -> String {
    let auth = http(
        addr,
        &format!(
            "POST /authenticates HTTP/1.1\r\nHost: x\r\nAuthorization: {key}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        ),
    );
    assert!(auth.starts_with("HTTP/1.1 201"), "{auth}");
    auth.split("\"token\":\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .expect("token")
        .to_string()
}

/// SIGTERM, then the exit status and the rest of the logs.
pub fn terminate(
    mut server: std::process::Child,
    drain: std::thread::JoinHandle<String>,
) -> (std::process::ExitStatus, String) {
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let status = server.wait().expect("wait");
    (status, drain.join().expect("drain"))
}

/// A staff send over HTTP; the raw response.
pub fn send(addr: &str, token: &str, patient: i64, body: &str) -> String {
    let json = format!(r#"{{"message":{{"patient_id":{patient},"user_id":5,"body":"{body}"}}}}"#);
    http(
        addr,
        &format!(
            "POST /messages?subdomain=acme&location_id=10 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
            json.len()
        ),
    )
}

/// The practice the write-side tests use: a location with a number, a user, a patient.
pub const PRACTICE: &str = r#"{"type":"institution","id":1,"subdomain":"acme","name":"Acme"}
{"type":"location","id":10,"institution_id":1,"name":"A","tz":"America/Chicago","phone_number":"+15551230000"}
{"type":"user","id":5,"institution_id":1,"first_name":"Sam","last_name":"Lee"}
{"type":"patient","id":100,"institution_id":1,"first_name":"Ana","bio":{"cell_phone_number":"+15163042196"}}
"#;

/// A database with `PRACTICE` and a key; returns the raw key.
pub fn practice(db: &TestDb, extra: &str) -> String {
    let file = db.scratch().path().join("practice.ndjson");
    std::fs::write(&file, format!("{PRACTICE}{extra}")).expect("write");
    let out = convo(db, &["import", file.to_str().expect("path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = text(&convo(db, &["api-key", "create", "--subdomain", "acme"]).stdout);
    key.trim().to_string()
}

/// The environment that points a server's Twilio provider at `fake`.
pub fn twilio_env(fake: &fake_twilio::FakeTwilio) -> Vec<(&'static str, String)> {
    vec![
        ("CONVO_SMS_PROVIDER", "twilio".into()),
        ("CONVO_TWILIO_ACCOUNT_SID", "ACtest".into()),
        ("CONVO_TWILIO_AUTH_TOKEN", "tok".into()),
        ("CONVO_TWILIO_BASE_URL", fake.url.clone()),
    ]
}

/// Reads a starting server's logs up to its `listening on` line; returns the address and a
/// thread that keeps draining the logs (joined, it returns all of them).
pub fn read_address(server: &mut std::process::Child) -> (String, std::thread::JoinHandle<String>) {
    let mut logs = BufReader::new(server.stderr.take().expect("stderr"));
    let mut addr = String::new();
    let mut line = String::new();
    let mut seen = String::new();
    while logs.read_line(&mut line).expect("log line") > 0 {
        seen.push_str(&line);
        if let Some(i) = line.find("listening on ") {
            addr = line[i + "listening on ".len()..].trim().to_string();
            break;
        }
        line.clear();
    }
    assert!(addr.starts_with("127.0.0.1:"), "no address logged:\n{seen}");
    // Keep draining logs so the server never blocks on a full pipe.
    let drain = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = logs.read_to_string(&mut rest);
        seen + &rest
    });
    (addr, drain)
}

/// Runs `f` on the database `db` names, opened through `convo::db::connect`: a test sees what a
/// server wrote through the store traits, whichever engine it is.
pub fn on_store<T, Fut>(
    db: &TestDb,
    f: impl FnOnce(std::sync::Arc<dyn convo_core::Store>) -> Fut,
) -> T
where
    Fut: std::future::Future<Output = T>,
{
    let url = db.url().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let store = convo::db::connect(&url).await.expect("connect");
        f(store).await
    })
}

/// The messages of location 10 (each conversation's newest 100).
pub async fn messages_of_location(store: &dyn convo_core::Store) -> Vec<convo_core::Message> {
    let here = TenantCtx::resolved(1, 10, Zone::utc());
    store
        .list_conversations(&here, &convo_store_tests::fixture::whole_list())
        .await
        .expect("list")
        .conversations
        .into_iter()
        .flat_map(|c| c.messages)
        .collect()
}

/// The delivery of the message with this body in location 10, as the server wrote it.
pub fn delivery_of(db: &TestDb, body: &str) -> DeliveryRecord {
    let body = body.to_string();
    on_store(db, |store| async move {
        let message = messages_of_location(store.as_ref())
            .await
            .into_iter()
            .find(|m| m.body == body)
            .unwrap_or_else(|| panic!("no message `{body}`"))
            .id;
        convo_store_tests::fixture::delivery_where(store.as_ref(), |d| d.message_id == message)
            .await
    })
}
