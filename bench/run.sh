#!/usr/bin/env bash
# The practice-group benchmark (issue 5): build, generate, import, serve, load, one table.
#
#   bench/run.sh                   # the full run: 100,000 conversations, 15 s per load run
#   CONVERSATIONS=20000 DURATION=5 bench/run.sh   # a quick look
#   ENGINE=postgres bench/run.sh   # the same on PostgreSQL (database convo_bench on PG_ADMIN's
#                                  # server, dropped and created; default the local one)
#   SCALE_TO=1000000 bench/run.sh  # then the same runs again at 1,000,000 conversations (~20 M
#                                  # messages, ~7 GB of NDJSON and ~3.6 GB of database under
#                                  # $BENCH_DIR/scale-1000000) and a scaling table, both sizes
#                                  # side by side (issue 14)
#
# Everything it writes goes under $BENCH_DIR (default target/bench); the table is printed and
# also saved as $BENCH_DIR/results.md. See bench/README.md for what each row means.
set -euo pipefail

cd "$(dirname "$0")/.."
CONVERSATIONS=${CONVERSATIONS:-100000}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-5}
PORT=${PORT:-8091}
SEED=${SEED:-1}
ENGINE=${ENGINE:-sqlite}
PG_ADMIN=${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}
BENCH_DIR=${BENCH_DIR:-target/bench}
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)

need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "installing $2 (for $1)" >&2
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq "$2" >/dev/null
    fi
}
need wrk wrk
need curl curl
[ -x /usr/bin/time ] || need /usr/bin/time time

echo "== building the release binary" >&2
cargo build --release --locked -q -p convo
BIN=$PWD/target/release/convo
DATA=$BENCH_DIR/practice-group.ndjson
case $ENGINE in
    sqlite) DB=$BENCH_DIR/practice-group.db ;;
    postgres) DB=${PG_ADMIN%/*}/convo_bench ;;
    *) echo "ENGINE is sqlite or postgres" >&2; exit 1 ;;
esac
SERVER_LOG=$BENCH_DIR/server-$ENGINE.log
TABLE=$BENCH_DIR/results-$ENGINE.md

# The data ends now, so that "the last hour" is a real polling window.
UNTIL=$(date -u +%Y-%m-%dT%H:%M:%SZ)
SINCE=$(date -u -d "$UNTIL - 1 hour" +%Y-%m-%dT%H:%M:%SZ)

echo "== generating $CONVERSATIONS conversations (seed $SEED, until $UNTIL)" >&2
/usr/bin/time -f "%e %M" -o "$BENCH_DIR/generate.time" \
    "$BIN" generate --conversations "$CONVERSATIONS" --seed "$SEED" --until "$UNTIL" --out "$DATA"
read -r GEN_SECS _ <"$BENCH_DIR/generate.time"

echo "== importing into a fresh $ENGINE database" >&2
if [ "$ENGINE" = postgres ]; then
    psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS convo_bench WITH (FORCE)" \
        -c "CREATE DATABASE convo_bench"
else
    rm -f "$DB" "$DB-wal" "$DB-shm"
fi
/usr/bin/time -f "%e %M" -o "$BENCH_DIR/import.time" \
    "$BIN" --database-url "$DB" import "$DATA" >"$BENCH_DIR/import.out"
read -r IMPORT_SECS IMPORT_KB <"$BENCH_DIR/import.time"
MESSAGES=$(grep -o '[0-9]* messages' "$BENCH_DIR/import.out" | cut -d' ' -f1)
if [ "$ENGINE" = postgres ]; then
    DB_MB=$(psql -tA "$DB" -c "SELECT pg_database_size(current_database()) / 1048576")
else
    DB_MB=$(( $(stat -c %s "$DB") / 1048576 ))
fi
KEY=$("$BIN" --database-url "$DB" api-key create --subdomain summit-dental 2>/dev/null)

echo "== starting the server" >&2
: >"$SERVER_LOG"
START_NS=$(date +%s%N)
"$BIN" --database-url "$DB" serve --listen "127.0.0.1:$PORT" >>"$SERVER_LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
until grep -q "listening on" "$SERVER_LOG"; do
    kill -0 $SERVER 2>/dev/null || { cat "$SERVER_LOG" >&2; exit 1; }
    sleep 0.005
done
START_MS=$(( ($(date +%s%N) - START_NS) / 1000000 ))

ACCEPT='Accept: application/vnd.Nexhealth+json;version=2'
TOKEN=$(curl -sf -X POST -H "Authorization: Bearer $KEY" -H "$ACCEPT" \
    "http://127.0.0.1:$PORT/authenticates" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
[ -n "$TOKEN" ] || { echo "could not get a token" >&2; exit 1; }
export CONVO_TOKEN=$TOKEN

LIST="/conversations?subdomain=summit-dental&location_id=1&per_page=20&messages=5"
PAGES=$(( CONVERSATIONS * 40 / 100 / 20 ))
export CONVO_PAGES=$PAGES
TICKS=$(getconf CLK_TCK)

# The process a run measures: the convo server, or RUN_PID (the Datasette comparison).
cpu_ticks() { awk '{print $14 + $15}' "/proc/${RUN_PID:-$SERVER}/stat"; }
# PostgreSQL's own processes (the server's work moves there): their CPU is reported too.
db_ticks() {
    [ "$ENGINE" = postgres ] || { echo 0; return; }
    local t=0 p
    for p in $(pgrep -x postgres); do
        t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0) ))
    done
    echo "$t"
}
rss_mb() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/${RUN_PID:-$SERVER}/status"; }

# run NAME CONNECTIONS PATH [KEY]: KEY also records req/s and p99 for the scaling table.
ROWS=()
FIGURES=()
run() {
    local name=$1 conns=$2 path=$3 key=${4:-}
    echo "== $name, $conns connections" >&2
    export CONVO_PATH=$path
    local port=${RUN_PORT:-$PORT}
    wrk -t2 -c"$conns" -d"${WARMUP}s" -s bench/report.lua "http://127.0.0.1:$port" >/dev/null
    local before after db_before db_after line
    before=$(cpu_ticks)
    db_before=$(db_ticks)
    line=$(wrk -t2 -c"$conns" -d"${DURATION}s" --latency -s bench/report.lua \
        "http://127.0.0.1:$port" | grep '^RESULT')
    after=$(cpu_ticks)
    db_after=$(db_ticks)
    read -r _ rps p50 p99 bytes errors requests <<<"$line"
    local cpu=$(( (after - before) * 100 / TICKS / DURATION ))
    local db_cpu=$(( (db_after - db_before) * 100 / TICKS / DURATION ))
    ROWS+=("| $name | $conns | $rps | $p50 | $p99 | $bytes | $errors | $cpu % | $db_cpu % | $(rss_mb) |")
    [ -z "$key" ] || FIGURES+=("$key $conns	$rps req/s, p99 $p99 ms")
    [ "$errors" = 0 ] || echo "!! $errors errors in $name" >&2
}

# Sanity: the list answers 200 with the expected page before anything is timed.
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H "$ACCEPT" "http://127.0.0.1:$PORT$LIST"

for c in 16 64; do run "page 1" "$c" "$LIST&page=1" "page 1"; done
for c in 16 64; do run "page 500" "$c" "$LIST&page=500" "page 500"; done
for c in 16 64; do
    run "polling (updated_since = last hour)" "$c" "$LIST&updated_since=$SINCE" "polling"
done
for c in 16 64; do run "random page 1–$PAGES" "$c" "$LIST&page={page}" "random page"; done

# The comparison issue 14 measures against: Datasette (from PyPI, in a venv of its own) serving
# the same SQLite file, the same page as one canned query (bench/datasette.yaml), page 1 and
# page 500 at 64 connections. SQLite runs only (Datasette reads SQLite files); DATASETTE=0
# skips it.
RATIOS=""
if [ "$ENGINE" = sqlite ] && [ "${DATASETTE:-1}" = 1 ]; then
    VENV=$BENCH_DIR/datasette-venv
    if [ ! -x "$VENV/bin/datasette" ]; then
        echo "== installing datasette into $VENV" >&2
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q "datasette==0.65.5"
    fi
    DS_PORT=$((PORT + 2))
    "$VENV/bin/datasette" serve -i "$DB" --metadata bench/datasette.yaml -p "$DS_PORT" \
        --setting sql_time_limit_ms 30000 >"$BENCH_DIR/datasette.log" 2>&1 &
    DATASETTE_PID=$!
    trap 'kill $SERVER $DATASETTE_PID 2>/dev/null || true' EXIT
    DS_PAGE="/practice-group/conversations.json?location_id=1&_shape=array&_json=patient&_json=messages"
    for _ in $(seq 200); do
        curl -sf -o /dev/null "http://127.0.0.1:$DS_PORT$DS_PAGE&offset=0" && break
        sleep 0.1
    done
    RUN_PORT=$DS_PORT RUN_PID=$DATASETTE_PID run "Datasette page 1" 64 "$DS_PAGE&offset=0"
    RUN_PORT=$DS_PORT RUN_PID=$DATASETTE_PID run "Datasette page 500" 64 "$DS_PAGE&offset=9980"
    kill "$DATASETTE_PID" 2>/dev/null || true
    # convo's 64-connection page 1 and page 500 over Datasette's (req/s is column 4).
    rate() { printf '%s\n' "${ROWS[@]}" | awk -F' [|] ' -v n="$1" '$1 == "| " n && $2 == 64 {print $3}'; }
    RATIOS=$(awk -v a="$(rate 'page 1')" -v b="$(rate 'Datasette page 1')" \
        -v c="$(rate 'page 500')" -v d="$(rate 'Datasette page 500')" \
        'BEGIN {printf "convo / Datasette at 64 connections: page 1 %.1f×, page 500 %.1f×", a / b, c / d}')
fi

{
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); load generator (wrk -t2) on the same machine."
    echo "Date: $(date -u +%Y-%m-%d); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
    echo
    echo "Engine: $ENGINE. Dataset: $CONVERSATIONS conversations, $MESSAGES messages (seed $SEED); database ${DB_MB} MB."
    echo
    echo "| step | figure |"
    echo "|---|---|"
    echo "| generate | ${GEN_SECS} s |"
    echo "| import | ${IMPORT_SECS} s, peak RSS $(( IMPORT_KB / 1024 )) MB |"
    echo "| server start (exec → listening) | ${START_MS} ms |"
    echo
    echo "\`GET $LIST\`, ${DURATION} s per run after ${WARMUP} s of warm-up:"
    echo
    echo "| run | conns | req/s | p50 ms | p99 ms | bytes/resp | errors | server CPU | database CPU | server RSS MB |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    if [ -n "$RATIOS" ]; then
        echo
        echo "$RATIOS (the Datasette rows: bench/datasette.yaml, the same page as one canned query)."
    fi
} | tee "$TABLE"

# One figure per line, for the scaling table.
{
    echo "conversations	$CONVERSATIONS"
    echo "messages	$MESSAGES"
    echo "database	${DB_MB} MB"
    echo "import	${IMPORT_SECS} s, peak RSS $(( IMPORT_KB / 1024 )) MB"
    echo "import rate	$(awk -v m="$MESSAGES" -v s="$IMPORT_SECS" 'BEGIN {printf "%.0f messages/s", m / s}')"
    echo "server start	${START_MS} ms"
    printf '%s\n' "${FIGURES[@]}"
} >"$BENCH_DIR/figures-$ENGINE.tsv"

# The same runs at SCALE_TO conversations, and both sizes side by side.
if [ -n "${SCALE_TO:-}" ]; then
    kill $SERVER 2>/dev/null || true
    wait $SERVER 2>/dev/null || true
    SCALED=$BENCH_DIR/scale-$SCALE_TO
    CONVERSATIONS=$SCALE_TO DATASETTE=0 SCALE_TO= BENCH_DIR=$SCALED bench/run.sh >/dev/null
    SMALL=$BENCH_DIR/figures-$ENGINE.tsv LARGE=$SCALED/figures-$ENGINE.tsv
    {
        echo
        echo "Scaling ($ENGINE): the same runs at $CONVERSATIONS and $SCALE_TO conversations; random pages are any page of location 1 (2,000 of them at 100,000 conversations)."
        echo
        echo "| figure | $CONVERSATIONS conversations | $SCALE_TO conversations |"
        echo "|---|---|---|"
        awk -F'\t' 'NR == FNR {small[$1] = $2; order[++n] = $1; next}
                    {large[$1] = $2}
                    END {for (i = 1; i <= n; i++) printf "| %s | %s | %s |\n", order[i], small[order[i]], large[order[i]]}' \
            "$SMALL" "$LARGE"
    } | tee "$BENCH_DIR/scaling-$ENGINE.md"
fi
