#!/usr/bin/env bash
# Write-side throughput (issue 6): staff sends (POST /messages) and signed inbound webhooks
# (POST /sms/inbound) against the practice-group database that bench/run.sh leaves behind,
# release build, loopback, wrk -t2 -c16, log provider (the outbox worker runs, calls nothing).
#
#   bench/run.sh && bench/write.sh
#   ENGINE=postgres bench/run.sh && ENGINE=postgres PROCESSES=2 bench/write.sh
#
# PATIENT_OFFSET=N sends to the 20,000 patients after the first N (default 0): a run on patients
# no earlier run wrote to, whose threads are older (or new), as a practice's sends mostly are.
#
# PROCESSES=N (PostgreSQL only) starts N servers on one database and loads them all at once,
# each with its own share of the requests; the table shows their sum.
#
# Every request is distinct: bodies (and inbound MessageSids) are generated up front, signed
# with the auth token the server runs with. The database is modified; run.sh rebuilds it.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-15}
PORT=${PORT:-8092}
BENCH_DIR=${BENCH_DIR:-target/bench}
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
ENGINE=${ENGINE:-sqlite}
PROCESSES=${PROCESSES:-1}
PG_ADMIN=${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}
if [ "$ENGINE" = postgres ]; then
    DB=${PG_ADMIN%/*}/convo_bench
    psql -tA "$DB" -F $'\t' -c "SELECT id, bio::json->>'cell_phone_number' FROM patients
        WHERE NOT unsubscribe_sms AND institution_id = 1 ORDER BY id
        LIMIT 20000 OFFSET ${PATIENT_OFFSET:-0}" \
        >"$BENCH_DIR/patients.tsv" || { echo "no convo_bench: run ENGINE=postgres bench/run.sh" >&2; exit 1; }
else
    DB=$BENCH_DIR/practice-group.db
    [ -f "$DB" ] || { echo "no $DB: run bench/run.sh first" >&2; exit 1; }
    [ "$PROCESSES" = 1 ] || { echo "SQLite has one server per database" >&2; exit 1; }
    python3 - "$DB" "$BENCH_DIR/patients.tsv" "${PATIENT_OFFSET:-0}" <<'PY'
import sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute(
    "SELECT id, json_extract(bio, '$.cell_phone_number') FROM patients "
    "WHERE unsubscribe_sms = 0 AND institution_id = 1 ORDER BY id LIMIT 20000 OFFSET ?",
    (int(sys.argv[3]),)).fetchall()
open(sys.argv[2], "w").writelines(f"{i}\t{p}\n" for i, p in rows)
PY
fi
command -v wrk >/dev/null || { echo "wrk is missing (bench/run.sh installs it)" >&2; exit 1; }
cargo build --release --locked -q -p convo
BIN=$PWD/target/release/convo
AUTH=bench-auth-token
LOCATION_PHONE=+12125550140
REQUESTS=${REQUESTS:-120000}

echo "== generating $REQUESTS distinct requests of each kind" >&2
python3 - "$BENCH_DIR/patients.tsv" "$BENCH_DIR" "$AUTH" "$PORT" "$LOCATION_PHONE" "$REQUESTS" "${PATIENT_OFFSET:-0}" <<'PY'
import base64, hashlib, hmac, json, sys, urllib.parse
patients, out, token, port, to, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
run = sys.argv[7]  # PATIENT_OFFSET: a run on other patients also texts with other MessageSids
rows = [(int(i), p) for i, p in (l.rstrip("\n").split("\t") for l in open(patients) if l.strip())]
url = f"http://bench.local/sms/inbound"
with open(f"{out}/sends.txt", "w") as sends, open(f"{out}/inbound.txt", "w") as inbound:
    for i in range(n):
        pid, phone = rows[(i * 7919) % len(rows)]
        body = {"message": {"patient_id": pid, "user_id": 1 + i % 25,
                            "body": f"Hi! Your appointment is confirmed ({i})."}}
        sends.write("\t" + json.dumps(body) + "\n")
        params = {"From": phone, "To": to, "Body": f"Thanks, see you then ({i})",
                  "MessageSid": f"SMbench{run}x{i:08d}", "NumMedia": "0"}
        signed = url + "".join(k + v for k, v in sorted(params.items()))
        sig = base64.b64encode(hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()).decode()
        inbound.write(sig + "\t" + urllib.parse.urlencode(params) + "\n")
PY

KEY=$("$BIN" --database-url "$DB" api-key create --subdomain summit-dental 2>/dev/null)
LOG=$BENCH_DIR/write-server.log
: >"$LOG"
SERVERS=()
trap 'kill "${SERVERS[@]}" 2>/dev/null || true' EXIT
for p in $(seq 0 $((PROCESSES - 1))); do
    CONVO_TWILIO_AUTH_TOKEN=$AUTH RUST_LOG=warn "$BIN" --database-url "$DB" serve \
        --listen "127.0.0.1:$((PORT + p))" >>"$LOG" 2>&1 &
    SERVERS+=($!)
    for _ in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$((PORT + p))/" && break
        sleep 0.05
    done
done
TOKEN=$(curl -sf -X POST -H "Authorization: $KEY" "http://127.0.0.1:$PORT/authenticates" |
    sed -n 's/.*"token":"\([^"]*\)".*/\1/p')

ROWS=()
# run NAME FILE PATH TYPE TOKEN: every process gets its own share of FILE's lines and
# 16/PROCESSES connections, all at once; req/s is their sum, latencies the worst's.
run() {
    local name=$1 file=$2 path=$3 type=$4 token=$5
    echo "== $name ($PROCESSES process(es))" >&2
    local conns=$((16 / PROCESSES)) p pids=()
    # An earlier run with more processes leaves more result files: sum only this run's.
    rm -f "$file".*.result
    for p in $(seq 0 $((PROCESSES - 1))); do
        awk -v n="$PROCESSES" -v k="$p" 'NR % n == k' "$file" >"$file.$p"
        CONVO_REQUESTS=$file.$p CONVO_PATH=$path CONVO_TYPE=$type CONVO_TOKEN=$token \
            wrk -t1 -c"$conns" -d"${DURATION}s" --latency -s bench/write.lua \
            "http://127.0.0.1:$((PORT + p))" | grep '^RESULT' >"$file.$p.result" &
        pids+=($!)
    done
    wait "${pids[@]}"
    local line
    line=$(cat "$file".*.result | awk '{rps += $2; if ($3 > p50) p50 = $3; if ($4 > p99) p99 = $4;
        err += $6; req += $7} END {printf "%.1f %s %s %d %d", rps, p50, p99, err, req}')
    read -r rps p50 p99 errors requests <<<"$line"
    ROWS+=("| $name | $PROCESSES | 16 | $rps | $p50 | $p99 | $errors | $requests |")
}
run "staff sends (POST /messages)" "$BENCH_DIR/sends.txt" \
    "/messages?subdomain=summit-dental&location_id=1" application/json "$TOKEN"
run "inbound webhooks (POST /sms/inbound)" "$BENCH_DIR/inbound.txt" \
    /sms/inbound application/x-www-form-urlencoded ""
{
    echo "| run | processes | conns | req/s | p50 ms | p99 ms | errors | requests |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
} | tee "$BENCH_DIR/write-results-$ENGINE-$PROCESSES.md"
