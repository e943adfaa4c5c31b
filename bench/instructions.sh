#!/usr/bin/env bash
# Instructions per request under valgrind's callgrind: a repeatable figure where wall-clock A/B
# runs on a shared 2-core machine differ by ±10 % between rounds.
#
#   bench/instructions.sh BIN [N] [MODE]     # after bench/run.sh; MODE random (default), pageK
#                                            # (page1, page500, …) or polling (updated_since = an
#                                            # hour before the newest activity)
#
# Starts BIN on a copy of the practice-group database under callgrind with instrumentation off,
# warms it with 20 requests, then counts the instructions of N (200) list requests sent one
# after another on one keep-alive connection (`per_page=20&messages=5`, pages spread over 1–2000
# or page K). Compare two binaries' figures; the ratio is the hot path's cost change.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "$1"); N=${2:-200}; MODE=${3:-random}; PORT=${PORT:-8098}
BENCH_DIR=${BENCH_DIR:-target/bench}
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
DB=$BENCH_DIR/instructions.db
rm -f "$DB" "$DB-wal" "$DB-shm"
cp "$BENCH_DIR/practice-group.db" "$DB"
KEY=$("$BIN" --database-url "$DB" api-key create --subdomain summit-dental 2>/dev/null)
OUT=$BENCH_DIR/callgrind
rm -rf "$OUT"; mkdir -p "$OUT"
RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/cg.%p" \
    "$BIN" --database-url "$DB" serve --listen "127.0.0.1:$PORT" >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1200); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
TOKEN=$(curl -sf -X POST -H "Authorization: $KEY" "http://127.0.0.1:$PORT/authenticates" |
    sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
# Polling asks for what changed in the hour before the data's newest activity.
SINCE=$(python3 -c 'import datetime, sqlite3, sys
ms = sqlite3.connect(sys.argv[1]).execute("SELECT max(updated_at) FROM conversations").fetchone()[0]
t = datetime.datetime.fromtimestamp(ms / 1000 - 3600, datetime.timezone.utc)
print(t.strftime("%Y-%m-%dT%H:%M:%SZ"))' "$DB")
requests() {
    python3 - "$PORT" "$TOKEN" "$1" "$MODE" "$SINCE" <<'PY'
import socket, sys
port, token, n, mode, since = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
s = socket.create_connection(("127.0.0.1", port))
for i in range(n):
    if mode == "polling":
        which = f"updated_since={since}"
    else:
        which = f"page={mode[4:] if mode[4:].isdigit() else (i * 7919) % 2000 + 1}"
    s.sendall((f"GET /conversations?subdomain=summit-dental&location_id=1&per_page=20&messages=5"
               f"&{which} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, body = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n")
                  if l.lower().startswith(b"content-length"))
    while len(body) < length:
        body += s.recv(65536)
PY
}
requests 20
callgrind_control -i on "$SERVER" >/dev/null
requests "$N"
callgrind_control -i off "$SERVER" >/dev/null
callgrind_control -d "$SERVER" >/dev/null
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
TOTAL=$(cat "$OUT"/cg.* | awk '/^totals:/ {s += $2} END {print s}')
echo "$(basename "$BIN") $MODE: $(( TOTAL / N )) instructions per request ($N requests)"
