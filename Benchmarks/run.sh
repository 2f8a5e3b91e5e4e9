#!/usr/bin/env bash
# One side-by-side run: the floor, our broker and Redis on the same machine, same generator, same moment.
# Prints Markdown tables for BENCHMARKS.md. Takes about 10 minutes (15 with RUNS=5) plus a release build.
#   RUNS=5 bash Benchmarks/run.sh > /tmp/bench.md && python3 Benchmarks/ratios.py < /tmp/bench.md
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }
command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind; }
EPHEMERAL_BENCHMARKS=1 swift build -c release --static-swift-stdlib --scratch-path .build-release >&2
bin=.build-release/release
seconds=${SECONDS_PER_POINT:-2}
runs=${RUNS:-3}
dir=$(mktemp -d /tmp/ebbench-XXXXXX)
tick=$(getconf CLK_TCK)
pids=()
# Servers started inside $(…) cannot add to pids; they write their pids to $dir/pids instead.
cleanup() {
    for pid in "${pids[@]}" $(cat "$dir/pids" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT

await_socket() { for _ in $(seq 500); do [ -S "$1" ] && return 0; sleep 0.01; done; echo "no socket $1" >&2; exit 1; }
"$bin/eb-floor" "$dir/floor.sock" >/dev/null & pids+=($!); floor=$!
"$bin/ephemeral-broker" serve --socket "$dir/broker.sock" --max-items 1000000 --log-level error >/dev/null & pids+=($!); broker=$!
BROKER_SECRET=bench-secret "$bin/ephemeral-broker" serve --socket "$dir/signed.sock" --max-items 1000000 --log-level error >/dev/null & pids+=($!); signed=$!
redis-server --port 0 --unixsocket "$dir/redis.sock" --unixsocketperm 700 --save "" --appendonly no --logfile /dev/null & pids+=($!); redis=$!
for s in floor broker signed redis; do await_socket "$dir/$s.sock"; done

cpu() { awk '{print $14, $15}' "/proc/$1/stat"; }  # user and system ticks
steal() { awk '/^cpu / {print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }  # stolen and all ticks
read -r stolen_before all_before <<<"$(steal)"
# The CPU cell: total / user, with the failed operations named when there were any (such a row measures errors).
cpu_cell() { if [ "$3" = 0 ]; then echo "$1 / $2"; else echo "$1 / $2 ($3 FAILED)"; fi; }

# measure PID SOCKET WORKLOAD CONNECTIONS [loadgen flags…] → "ops/s p50 p99 p99.9 cpu-µs/op user-µs/op failures"
measure() {
    local pid=$1 socket=$2 workload=$3 connections=$4; shift 4
    local before after line
    before=$(cpu "$pid")
    line=$("$bin/eb-loadgen" --socket "$socket" --workload "$workload" --connections "$connections" --seconds "$seconds" "$@")
    after=$(cpu "$pid")
    python3 -c '
import json, sys
r = json.loads(sys.argv[1])
before, after, tick = [int(x) for x in sys.argv[2].split()], [int(x) for x in sys.argv[3].split()], float(sys.argv[4])
per_op = lambda ticks: round(ticks / tick / max(1, r["ops"]) * 1e6, 2)
user, system = after[0] - before[0], after[1] - before[1]
print(r["opsPerSec"], r["p50us"], r["p99us"], r["p999us"], per_op(user + system), per_op(user), r["failures"])' \
        "$line" "$before" "$after" "$tick"
}

# compare LABEL CONNECTIONS TARGET… : each TARGET is "name pid socket workload [flags…]". The targets take turns,
# round after round, so a slow spell of this shared machine falls on all of them alike; each row is the target's
# median round (by ops/s).
compare() {
    local label=$1 connections=$2; shift 2
    local results="$dir/compare.txt"
    : >"$results"
    for _ in $(seq "$runs"); do
        for target in "$@"; do
            read -r name pid socket workload flags <<<"$target"
            # shellcheck disable=SC2086  # flags split on purpose
            echo "$name $(measure "$pid" "$socket" "$workload" "$connections" $flags)" >>"$results"
        done
    done
    for target in "$@"; do
        read -r name _ <<<"$target"
        read -r rate p50 p99 p999 cpu user failures <<<"$(awk -v n="$name" '$1 == n {$1 = ""; print}' "$results" |
            sort -n | awk -v n="$runs" 'NR == int((n + 1) / 2)')"
        echo "| $label | $connections | $name | $rate | $p50 | $p99 | $p999 | $(cpu_cell "$cpu" "$user" "$failures") |"
    done
}

echo "| workload | conns | target | ops/s | p50 µs | p99 µs | p99.9 µs | server CPU µs/op: total / user |"
echo "|---|---|---|---|---|---|---|---|"
for workload in ping get set; do
    for connections in 1 8 32; do
        compare "$workload" "$connections" "floor $floor $dir/floor.sock $workload" \
            "broker $broker $dir/broker.sock $workload" "redis $redis $dir/redis.sock $workload --protocol resp"
    done
done
compare "lease+release" 16 "floor $floor $dir/floor.sock lease" "broker $broker $dir/broker.sock lease"
compare "lease+release, pipelined" 16 "floor $floor $dir/floor.sock lease-pipelined" \
    "broker $broker $dir/broker.sock lease-pipelined" "ping-floor $floor $dir/floor.sock ping"
compare "set, unsigned vs signed" 8 "broker $broker $dir/broker.sock set" \
    "signed $signed $dir/signed.sock set --secret bench-secret"
compare "mixed 80/10/10 get/set/ping" 8 "broker $broker $dir/broker.sock mixed"

echo
echo "| our Swift Client, end to end (unsigned broker) | figure |"
echo "|---|---|"
seq_line=$("$bin/eb-clientbench" --socket "$dir/broker.sock" --count 20000 sequential)
echo "| sequential get from one task: ops/s, p50 / p99 / p99.9 µs | $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["opsPerSec"], ",", round(r["p50us"],1), "/", round(r["p99us"],1), "/", round(r["p999us"],1))' "$seq_line") |"
con_line=$("$bin/eb-clientbench" --socket "$dir/broker.sock" --seconds 2 concurrent)
echo "| 32 tasks on one Client (one pipelined connection): get ops/s | $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["opsPerSec"])' "$con_line") |"
first=$(for _ in $(seq 20); do "$bin/eb-clientbench" --socket "$dir/broker.sock" first | python3 -c 'import json,sys; print(json.load(sys.stdin)["firstRequestUs"])'; done | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
whole=$(for _ in $(seq 20); do s=$(date +%s%N); "$bin/eb-clientbench" --socket "$dir/broker.sock" first >/dev/null; e=$(date +%s%N); echo $((e - s)); done | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)] / 1e6}')
echo "| a fresh process's first request (Client created → first reply), median of 20 | $first µs |"
echo "| the same process, start to exit, median of 20 | $whole ms |"

echo
echo "redis-benchmark cross-check (8 connections, 100,000 requests):"
echo '```'
redis-benchmark -s "$dir/redis.sock" -t ping,get,set -c 8 -n 100000 -d 100 -q 2>/dev/null | tr '\r' '\n' | grep 'requests per second' 
echo '```'

echo
echo "| memory and fill | figure |"
echo "|---|---|"
rss() { awk '/VmRSS/ {print $2 * 1024}' "/proc/$1/status"; }
# memory N: a fresh broker with maxItems N, filled one set at a time → "empty-rss full-rss"
memory() {
    "$bin/ephemeral-broker" serve --socket "$dir/mem$1.sock" --max-items "$1" --log-level error >/dev/null &
    local pid=$!; echo $pid >>"$dir/pids"
    await_socket "$dir/mem$1.sock"
    local base; base=$(rss $pid)
    "$bin/eb-loadgen" --socket "$dir/mem$1.sock" --workload fill --prefill "$1" --window 1 >/dev/null
    echo "$base $(rss $pid)"
    kill $pid
}
# start TARGET SOCKET: a fresh broker (maxItems 100,000), Redis or floor on SOCKET, waited for; prints its pid and
# its loadgen flags. stop PID: kills it and waits until it is gone, so the next server starts on a quiet machine.
start() {
    case $1 in
        redis) redis-server --port 0 --unixsocket "$2" --unixsocketperm 700 --save "" --appendonly no \
            --logfile /dev/null >/dev/null & ;;
        floor) "$bin/eb-floor" "$2" >/dev/null & ;;
        *) "$bin/ephemeral-broker" serve --socket "$2" --max-items 100000 --log-level error >/dev/null & ;;
    esac
    local pid=$!
    echo $pid >>"$dir/pids"
    await_socket "$2"
    echo "$pid $([ "$1" = redis ] && echo --protocol resp)"
}
stop() { kill "$1"; for _ in $(seq 500); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.01; done; }
# fill TARGET: one long fill of 100,000 new keys into a fresh server, 32 sets per write; the median over 3 servers
# of the first and the last tenth's rate
fill() {
    for run in 1 2 3; do
        local socket="$dir/fill-$1-$run.sock" pid flags
        read -r pid flags <<<"$(start "$1" "$socket")"
        # shellcheck disable=SC2086  # flags split on purpose
        "$bin/eb-loadgen" --socket "$socket" --workload fill --prefill 100000 --window 32 $flags
        stop "$pid"
    done | python3 -c '
import json, statistics, sys
runs = [json.loads(line) for line in sys.stdin]
first = statistics.median(r["firstTenthPerSec"] for r in runs)
last = statistics.median(r["lastTenthPerSec"] for r in runs)
print(int(first), "/s vs", int(last), "/s (%+.1f %%)" % ((last / first - 1) * 100))'
}
# fillside TARGET: the first tenth of 100,000 keys into an empty server and the last tenth into one holding the
# other nine tenths, side by side (eb-loadgen fill-compare): the median rates over 5 pairs of servers, and the
# median of the 5 pairs' changes
fillside() {
    for run in 1 2 3 4 5; do
        local empty="$dir/side-$1-$run-e.sock" full="$dir/side-$1-$run-f.sock" pid1 pid2 flags
        read -r pid1 flags <<<"$(start "$1" "$empty")"
        read -r pid2 flags <<<"$(start "$1" "$full")"
        # shellcheck disable=SC2086  # flags split on purpose
        "$bin/eb-loadgen" --socket "$empty" --full-socket "$full" --workload fill-compare --prefill 100000 $flags
        stop "$pid1"; stop "$pid2"
    done | python3 -c '
import json, statistics, sys
runs = [json.loads(line) for line in sys.stdin]
empty = statistics.median(r["emptyPerSec"] for r in runs)
ratio = statistics.median(r["fullPerSec"] / r["emptyPerSec"] for r in runs)
full = statistics.median(r["fullPerSec"] for r in runs)
print(int(empty), "/s vs", int(full), "/s (%+.1f %%)" % ((ratio - 1) * 100))'
}
read -r base10 after10 <<<"$(memory 10000)"
read -r base100 after100 <<<"$(memory 100000)"
echo "| RSS empty (maxItems 10,000 / 100,000) | $base10 B / $base100 B |"
echo "| RSS after 10,000 × 100-byte values, set one at a time | $after10 B ($(( (after10 - base10) / 10000 )) B/item) |"
echo "| RSS after 100,000 × 100-byte values, set one at a time | $after100 B ($(( (after100 - base100) / 100000 )) B/item) |"
# Each figure into a variable first: under set -e a failed generator then stops the script instead of leaving
# an empty cell.
side_broker=$(fillside broker); side_redis=$(fillside redis); side_floor=$(fillside floor)
store=$(for _ in 1 2 3; do "$bin/eb-storefill" 100000; done | python3 -c '
import json, statistics, sys
runs = [json.loads(line) for line in sys.stdin]
empty, full = (statistics.median(r[k] for r in runs) for k in ("emptyPerSec", "fullPerSec"))
change = statistics.median(r["fullPerSec"] / r["emptyPerSec"] for r in runs) - 1
print(int(empty), "/s vs", int(full), "/s (%+.1f %%)" % (change * 100))')
long_broker=$(fill broker); long_redis=$(fill redis); long_floor=$(fill floor)
echo "| side by side, broker: first tenth of 100,000 into an empty broker vs last tenth into one holding 90,000 (median of 5 pairs) | $side_broker |"
echo "| side by side, Redis, the same way | $side_redis |"
echo "| side by side, the floor (stores nothing), the same way | $side_floor |"
echo "| the store alone, no sockets (eb-storefill), the same way (median of 3) | $store |"
echo "| one long fill, broker: first vs last tenth of 100,000 keys into one broker, 32 sets per write (median of 3) | $long_broker |"
echo "| one long fill, Redis, the same way | $long_redis |"
echo "| one long fill, the floor (stores nothing), the same way | $long_floor |"

# Wrap overhead: `true` and `run -- true` take turns, 20 times each, so a slow spell of the host falls on both.
median_ms() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)] / 1e6}'; }
for _ in $(seq 20); do
    s=$(date +%s%N); /bin/true; e=$(date +%s%N); echo $((e - s)) >>"$dir/plain.ns"
    s=$(date +%s%N); "$bin/ephemeral-broker" run -- true; e=$(date +%s%N); echo $((e - s)) >>"$dir/wrapped.ns"
done
plain=$(median_ms <"$dir/plain.ns")
wrapped=$(median_ms <"$dir/wrapped.ns")
echo "| \`/bin/true\`, median of 20 | $plain ms |"
echo "| \`ephemeral-broker run -- true\`, median of 20 | $wrapped ms |"

# instructions TARGET WORKLOAD → instructions the server executed per operation, one connection, 5,000 operations
# after 500 of warm-up, counted by callgrind: the same count whatever else the machine is doing, so the one
# comparison here that noise cannot move. (valgrind cannot read the debug information of our static binaries:
# the servers run as copies without it.)
instructions() {
    local socket="$dir/cg-$1-$2.sock" out="$dir/cg-$1-$2.out" args=() flags=()
    case $1 in
        floor) strip --strip-debug -o "$dir/cg-floor" "$bin/eb-floor"; args=("$dir/cg-floor" "$socket") ;;
        broker)
            strip --strip-debug -o "$dir/cg-broker" "$bin/ephemeral-broker"
            args=("$dir/cg-broker" serve --socket "$socket" --max-items 1000000 --log-level error)
            ;;
        redis)
            args=(redis-server --port 0 --unixsocket "$socket" --save "" --appendonly no --logfile /dev/null)
            flags=(--protocol resp)
            ;;
    esac
    valgrind --tool=callgrind --callgrind-out-file="$out" "${args[@]}" >/dev/null 2>&1 &
    local pid=$!; echo $pid >>"$dir/pids"
    for _ in $(seq 600); do [ -S "$socket" ] && break; sleep 0.1; done
    "$bin/eb-loadgen" --socket "$socket" --workload "$2" --seconds 120 --count 500 "${flags[@]}" >/dev/null
    callgrind_control -z $pid >/dev/null
    "$bin/eb-loadgen" --socket "$socket" --workload "$2" --seconds 120 --count 5000 --prefill 1 "${flags[@]}" >/dev/null
    callgrind_control -d $pid >/dev/null
    kill $pid; wait $pid 2>/dev/null || true
    awk '/^summary:/ {print int($2 / 5000)}' "$out.1"
}

echo
echo "| instructions per operation (callgrind, 1 connection) | floor | broker | redis |"
echo "|---|---|---|---|"
for workload in ping get set; do
    echo "| $workload | $(instructions floor $workload) | $(instructions broker $workload) | $(instructions redis $workload) |"
done

read -r stolen_after all_after <<<"$(steal)"
echo
echo "CPU time the machine's host took from it (steal) during the run: $(( 100 * (stolen_after - stolen_before) / (all_after - all_before) )) %"
