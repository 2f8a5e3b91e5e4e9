#!/usr/bin/env bash
# Fuzzes the wire layer with libFuzzer (and AddressSanitizer) for a bounded time:
#   bash Tests/Fuzz/run.sh [SECONDS]        (default 60)
# Seeds come from Tests/Fuzz/corpus; what the fuzzer finds goes to a scratch corpus. A crash stops the run with
# status 1 and leaves its input in .build-fuzz/crashes/: turn it into a test in EphemeralWireTests, then fix it.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
EPHEMERAL_FUZZ=1 swift build --scratch-path .build-fuzz --product eb-fuzz --sanitize=fuzzer --sanitize=address >&2
corpus=$(mktemp -d /tmp/eb-fuzz-corpus-XXXXXX)
trap 'rm -rf "$corpus"' EXIT
cp Tests/Fuzz/corpus/* "$corpus/"
mkdir -p .build-fuzz/crashes
log=.build-fuzz/fuzz.log
status=0
.build-fuzz/debug/eb-fuzz "$corpus" -max_total_time="$seconds" -max_len=2048 -print_final_stats=1 \
    -artifact_prefix=.build-fuzz/crashes/ >"$log" 2>&1 || status=$?
grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb)|^Done|ERROR|SUMMARY" "$log" || true
if [ "$status" -ne 0 ]; then
    tail -40 "$log"
    echo "fuzz: FAILED (status $status); the input is in .build-fuzz/crashes/" >&2
    exit 1
fi
runs=$(awk '/^stat::number_of_executed_units/ {print $NF}' "$log")
echo "fuzz: ${runs:-?} inputs in ${seconds}s, no crash"
