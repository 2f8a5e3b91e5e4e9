#!/usr/bin/env bash
# The whole test suite under a sanitizer, in a build folder of its own:
#   bash Tests/sanitize.sh thread       (ThreadSanitizer)
#   bash Tests/sanitize.sh address      (AddressSanitizer)
# The broker binary the process tests start is built with the same sanitizer, so its reports (exit status 66
# for TSan, 1 for ASan, plus the report on stderr) fail those tests too.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:?usage: Tests/sanitize.sh thread|address}
scratch=.build-$kind
# swift-subprocess guards its process monitor with Synchronization.Mutex, whose futex-based lock ThreadSanitizer
# cannot see on Linux: its accesses under that lock read as races. Only those are suppressed (see the file).
export TSAN_OPTIONS="suppressions=$PWD/Tests/tsan-suppressions.txt ${TSAN_OPTIONS:-}"
export ASAN_OPTIONS="detect_leaks=0 ${ASAN_OPTIONS:-}"
swift build --build-tests --sanitize="$kind" --scratch-path "$scratch"
# One test at a time: a sanitized broker is several times slower, and a dozen of them at once on 2 cores make the
# suite's timeouts fire for want of CPU, not for any fault.
swift test --skip-build --sanitize="$kind" --scratch-path "$scratch" --no-parallel "${@:2}"
