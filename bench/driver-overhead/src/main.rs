//! Per-statement overhead: sqlx's SQLite driver vs rusqlite on tokio's blocking pool.
//! Same database, same statement (a primary-key point read), 16 concurrent tasks on 2 worker
//! threads, 4 connections each way. `cargo run --release -- target/bench/practice-group.db`
//! (from this directory, after bench/run.sh made the database).
use std::sync::{Arc, Mutex};
use std::time::Instant;

const SQL: &str = "SELECT id, updated_at, patient_id FROM conversations WHERE id = ?1";
const N: usize = 60_000;
const TASKS: usize = 16;
const PER_REQUEST: usize = 6;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let path = std::env::args().nth(1).expect("db path");
    // sqlx: a pool of 4 connections, each statement awaited (one worker-thread hop each).
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .connect(&format!("sqlite://{path}?mode=ro"))
        .await
        .expect("sqlx");
    for round in 0..2 {
        let t = Instant::now();
        let mut handles = Vec::new();
        for k in 0..TASKS {
            let pool = pool.clone();
            handles.push(tokio::spawn(async move {
                let mut sum = 0i64;
                for i in 0..N / TASKS {
                    let id = ((i * 7919 + k * 13) % 100_000 + 1) as i64;
                    let row: (i64, i64, i64) = sqlx::query_as(SQL).bind(id).fetch_one(&pool).await.expect("row");
                    sum += row.0;
                }
                sum
            }));
        }
        for h in handles { h.await.expect("join"); }
        let e = t.elapsed();
        println!("round {round} sqlx: {:.2} µs/statement, {:.0} statements/s", e.as_secs_f64() * 1e6 / N as f64, N as f64 / e.as_secs_f64());
    }
    // rusqlite: 4 connections behind a mutex each, PER_REQUEST statements per blocking hop
    // (the shape convo uses: one hop per request), and 1 per hop for comparison.
    let conns: Vec<Arc<Mutex<rusqlite::Connection>>> = (0..4)
        .map(|_| Arc::new(Mutex::new(rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX).expect("open"))))
        .collect();
    for per_hop in [1, PER_REQUEST] {
        for round in 0..2 {
            let t = Instant::now();
            let mut handles = Vec::new();
            for k in 0..TASKS {
                let conn = conns[k % 4].clone();
                handles.push(tokio::spawn(async move {
                    let mut sum = 0i64;
                    let mut i = 0;
                    while i < N / TASKS {
                        let conn = conn.clone();
                        let base = i;
                        sum += tokio::task::spawn_blocking(move || {
                            let c = conn.lock().expect("lock");
                            let mut stmt = c.prepare_cached(SQL).expect("prep");
                            let mut s = 0i64;
                            for j in 0..per_hop {
                                let id = (((base + j) * 7919 + k * 13) % 100_000 + 1) as i64;
                                s += stmt.query_row([id], |r| r.get::<_, i64>(0)).expect("row");
                            }
                            s
                        }).await.expect("join");
                        i += per_hop;
                    }
                    sum
                }));
            }
            for h in handles { h.await.expect("join"); }
            let e = t.elapsed();
            println!("round {round} rusqlite, {per_hop} per hop: {:.2} µs/statement, {:.0} statements/s", e.as_secs_f64() * 1e6 / N as f64, N as f64 / e.as_secs_f64());
        }
    }
}
