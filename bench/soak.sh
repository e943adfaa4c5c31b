#!/usr/bin/env bash
# The soak (issue 11): MINUTES (10) of mixed traffic — list pages, polling, staff sends, signed
# inbound webhooks, seen — at a paced rate (about half the measured peak), against the release
# binary on a copy of the practice-group database that bench/run.sh leaves. One wrk run per
# minute; prints a table: requests/s, p50/p99, errors (must be 0) and the server's RSS after
# each minute (flat means no leak).
#
#   bench/run.sh && bench/soak.sh
#   MINUTES=2 DELAY_MS=3 bench/soak.sh
set -euo pipefail

cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-10}
DELAY_MS=${DELAY_MS:-4}
CONNECTIONS=${CONNECTIONS:-8}
PORT=${PORT:-8093}
BENCH_DIR=${BENCH_DIR:-target/bench}
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
SOURCE=$BENCH_DIR/practice-group.db
[ -f "$SOURCE" ] || { echo "no $SOURCE: run bench/run.sh first" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is missing (bench/run.sh installs it)" >&2; exit 1; }
cargo build --release --locked -q -p convo
BIN=$PWD/target/release/convo
AUTH=bench-auth-token
DB=$BENCH_DIR/soak.db
rm -f "$DB" "$DB-wal" "$DB-shm"
"$BIN" --database-url "$SOURCE" backup "$DB" 2>/dev/null
WORK=$BENCH_DIR/soak
mkdir -p "$WORK"

echo "== generating distinct write requests" >&2
python3 - "$DB" "$WORK" "$AUTH" <<'PY'
import base64, hashlib, hmac, json, sqlite3, sys, urllib.parse
db, out, token = sys.argv[1], sys.argv[2], sys.argv[3]
n = 450000
c = sqlite3.connect(db)
to = c.execute("SELECT phone_number FROM locations WHERE id = 1").fetchone()[0]
rows = c.execute("SELECT id, json_extract(bio, '$.cell_phone_number') FROM patients "
                 "WHERE unsubscribe_sms = 0 AND institution_id = 1 ORDER BY id LIMIT 20000").fetchall()
messages = c.execute("SELECT m.id FROM messages m JOIN conversations v ON v.id = m.conversation_id "
                     "WHERE v.location_id = 1 ORDER BY m.id DESC LIMIT 20000").fetchall()
url = "http://bench.local/sms/inbound"
with open(f"{out}/sends.txt", "w") as sends, open(f"{out}/inbound.txt", "w") as inbound:
    for i in range(n):
        pid, phone = rows[(i * 7919) % len(rows)]
        body = {"message": {"patient_id": pid, "user_id": 1 + i % 25,
                            "body": f"Soak: your appointment is confirmed ({i})."}}
        sends.write("\t" + json.dumps(body) + "\n")
        params = {"From": phone, "To": to, "Body": f"Soak reply ({i})",
                  "MessageSid": f"SMsoak{i:08d}", "NumMedia": "0"}
        signed = url + "".join(k + v for k, v in sorted(params.items()))
        sig = base64.b64encode(hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()).decode()
        inbound.write(sig + "\t" + urllib.parse.urlencode(params) + "\n")
with open(f"{out}/seen.txt", "w") as seen:
    for i, (mid,) in enumerate(messages):
        seen.write(f"{mid}\t" + json.dumps({"user_id": 1 + i % 25}) + "\n")
PY

KEY=$("$BIN" --database-url "$DB" api-key create --subdomain summit-dental 2>/dev/null)
LOG=$BENCH_DIR/soak-server.log
CONVO_TWILIO_AUTH_TOKEN=$AUTH RUST_LOG=warn "$BIN" --database-url "$DB" serve \
    --listen "127.0.0.1:$PORT" >"$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 200); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
    sleep 0.05
done
TOKEN=$(curl -sf -X POST -H "Authorization: $KEY" "http://127.0.0.1:$PORT/authenticates" |
    sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
UNTIL=$(sqlite3 "$DB" "SELECT max(updated_at) FROM conversations" 2>/dev/null ||
    python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT max(updated_at) FROM conversations').fetchone()[0])" "$DB")
SINCE=$(date -u -d "@$(( UNTIL / 1000 - 3600 ))" +%Y-%m-%dT%H:%M:%SZ)
rss_mb() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$SERVER/status"; }
RSS_START=$(rss_mb)

ROWS=()
for m in $(seq 1 "$MINUTES"); do
    line=$(CONVO_TOKEN=$TOKEN CONVO_DIR=$WORK CONVO_SINCE=$SINCE CONVO_PAGES=2000 \
        CONVO_DELAY_MS=$DELAY_MS CONVO_MINUTE=$m \
        wrk -t2 -c"$CONNECTIONS" -d60s --latency -s bench/soak.lua "http://127.0.0.1:$PORT" |
        grep '^RESULT')
    read -r _ rps p50 p99 _ errors requests <<<"$line"
    ROWS+=("| $m | $rps | $p50 | $p99 | $errors | $requests | $(rss_mb) |")
    echo "minute $m: $rps req/s, p99 $p99 ms, $errors errors, RSS $(rss_mb) MB" >&2
done
{
    echo "Machine: $(nproc) cores; wrk -t2 -c$CONNECTIONS on the same machine, ${DELAY_MS} ms pause per request per connection."
    echo "Server RSS at start (after import and first token): ${RSS_START} MB."
    echo
    echo "| minute | req/s | p50 ms | p99 ms | errors | requests | RSS MB after |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
} | tee "$BENCH_DIR/soak-results.md"
