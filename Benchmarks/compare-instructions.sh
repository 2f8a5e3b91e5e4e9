#!/usr/bin/env bash
# Instructions per ping, get and set (callgrind, one connection, 5,000 operations after 500 of warm-up: the method of
# run.sh), for two broker binaries side by side: a change's cost per request, which the machine's noise cannot move.
#   bash Benchmarks/compare-instructions.sh OLD_BROKER NEW_BROKER [EB_LOADGEN]
# Build each with `EPHEMERAL_BENCHMARKS=1 swift build -c release --static-swift-stdlib --scratch-path DIR` (in a
# `git worktree` of the older commit for OLD); eb-loadgen defaults to the one beside NEW_BROKER.
set -euo pipefail
old=$1 new=$2 gen=${3:-$(dirname "$2")/eb-loadgen}
dir=$(mktemp -d /tmp/ebcg-XXXXXX)
trap 'rm -rf "$dir"' EXIT
instructions() {  # BROKER WORKLOAD → instructions per operation
    local socket="$dir/cg.sock" out="$dir/cg.out"
    rm -f "$socket" "$out"*
    strip --strip-debug -o "$dir/cg-broker" "$1"  # valgrind cannot read a static binary's debug information
    valgrind --tool=callgrind --callgrind-out-file="$out" "$dir/cg-broker" serve --socket "$socket" \
        --max-items 1000000 --log-level error >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 600); do [ -S "$socket" ] && break; sleep 0.1; done
    "$gen" --socket "$socket" --workload "$2" --seconds 120 --count 500 >/dev/null
    callgrind_control -z $pid >/dev/null
    "$gen" --socket "$socket" --workload "$2" --seconds 120 --count 5000 --prefill 1 >/dev/null
    callgrind_control -d $pid >/dev/null
    kill $pid; wait $pid 2>/dev/null || true
    awk '/^summary:/ {print int($2 / 5000)}' "$out.1"
}
echo "| instructions per operation (callgrind, 1 connection) | before | after | change |"
echo "|---|---|---|---|"
for workload in ping get set; do
    a=$(instructions "$old" $workload)
    b=$(instructions "$new" $workload)
    echo "| $workload | $a | $b | $(python3 -c "print(f'{($b - $a) / $a * 100:+.1f} %')") |"
done
