#!/usr/bin/env bash
# The fault harness at scale (issue 11): TRIALS (100) rounds of concurrent staff sends and
# signed inbound webhooks against the release binary, SIGKILL at a random moment, restart.
# Prints one RESULT line: writes acknowledged, lost (must be 0), duplicate texts, and the worst
# time from a restart to the last pending send reaching the provider.
#
#   bench/faults.sh                 # 100 trials
#   TRIALS=20 SEED=3 bench/faults.sh
#
# The same harness runs in CI with 3 trials (crates/convo/tests/faults.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS=${TRIALS:-100}
SEED=${SEED:-11}
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
status=0
CONVO_FAULT_TRIALS=$TRIALS CONVO_FAULT_SEED=$SEED \
    cargo test --release --locked -q -p convo --test faults -- --nocapture >"$OUT" 2>&1 || status=$?
grep -E '^RESULT' "$OUT" || { tail -40 "$OUT" >&2; }
exit "$status"
