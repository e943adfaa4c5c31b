#!/usr/bin/env bash
# A/B of two convo binaries on the same data and machine, interleaved so drift in a shared
# machine's speed hits both alike (issue 11's "nothing on the hot path slows by more than 3 %").
#
#   bench/compare.sh OLD_BIN NEW_BIN        # after bench/run.sh (uses its database)
#   ROUNDS=5 DURATION=20 bench/compare.sh /tmp/convo-main target/release/convo
#
# Each round starts each binary on its own copy of the database and runs, 16 connections each:
# list page 1, random list pages, staff sends. Prints every run and the median req/s per binary.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$(realpath "$1")
NEW=$(realpath "$2")
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-5}
PORT=${PORT:-8094}
BENCH_DIR=${BENCH_DIR:-target/bench}
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
SOURCE=$BENCH_DIR/practice-group.db
[ -f "$SOURCE" ] || { echo "no $SOURCE: run bench/run.sh first" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is missing (bench/run.sh installs it)" >&2; exit 1; }
WORK=$BENCH_DIR/compare
mkdir -p "$WORK"

python3 - "$SOURCE" "$WORK" <<'PY'
import json, sqlite3, sys
db, out = sys.argv[1], sys.argv[2]
c = sqlite3.connect(db)
rows = c.execute("SELECT id FROM patients WHERE unsubscribe_sms = 0 AND institution_id = 1 "
                 "ORDER BY id LIMIT 20000").fetchall()
with open(f"{out}/sends.txt", "w") as sends:
    for i in range(200000):
        body = {"message": {"patient_id": rows[(i * 7919) % len(rows)][0], "user_id": 1 + i % 25,
                            "body": f"Compare run message ({i})."}}
        sends.write("\t" + json.dumps(body) + "\n")
PY

LIST="/conversations?subdomain=summit-dental&location_id=1&per_page=20&messages=5"
declare -A RESULTS
SERVER=
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true' EXIT
run_binary() {
    local label=$1 bin=$2 round=$3
    local db=$WORK/$label.db
    rm -f "$db" "$db-wal" "$db-shm"
    cp "$SOURCE" "$db"
    local key
    key=$("$bin" --database-url "$db" api-key create --subdomain summit-dental 2>/dev/null)
    RUST_LOG=warn "$bin" --database-url "$db" serve --listen "127.0.0.1:$PORT" >"$WORK/$label.log" 2>&1 &
    local server=$!
    SERVER=$server
    for _ in $(seq 400); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
        sleep 0.05
    done
    local token
    token=$(curl -sf -X POST -H "Authorization: $key" "http://127.0.0.1:$PORT/authenticates" |
        sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
    export CONVO_TOKEN=$token CONVO_PAGES=2000
    for kind in page1 random sends; do
        local line
        case $kind in
            page1) export CONVO_PATH="$LIST&page=1"; script=bench/report.lua ;;
            random) export CONVO_PATH="$LIST&page={page}"; script=bench/report.lua ;;
            sends) export CONVO_PATH="/messages?subdomain=summit-dental&location_id=1" \
                       CONVO_REQUESTS=$WORK/sends.txt CONVO_TYPE=application/json
                   script=bench/write.lua ;;
        esac
        wrk -t2 -c16 -d"${WARMUP}s" -s "$script" "http://127.0.0.1:$PORT" >/dev/null
        line=$(wrk -t2 -c16 -d"${DURATION}s" --latency -s "$script" "http://127.0.0.1:$PORT" | grep '^RESULT')
        read -r _ rps p50 p99 _ errors _ <<<"$line"
        echo "round $round $label $kind: $rps req/s p50 $p50 p99 $p99 errors $errors" >&2
        RESULTS[$label.$kind]+="$rps "
    done
    kill "$server"
    wait "$server" 2>/dev/null || true
}
for r in $(seq 1 "$ROUNDS"); do
    if (( r % 2 )); then run_binary old "$OLD" "$r"; run_binary new "$NEW" "$r"
    else run_binary new "$NEW" "$r"; run_binary old "$OLD" "$r"; fi
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "| run | old req/s (median of $ROUNDS) | new req/s | new/old |"
echo "|---|---|---|---|"
for kind in page1 random sends; do
    o=$(echo "${RESULTS[old.$kind]}" | median)
    n=$(echo "${RESULTS[new.$kind]}" | median)
    echo "| $kind | $o | $n | $(awk -v a="$n" -v b="$o" 'BEGIN {printf "%.3f", a/b}') |"
done
