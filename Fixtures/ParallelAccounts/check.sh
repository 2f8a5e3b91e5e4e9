#!/usr/bin/env bash
# Runs the fixture suite in parallel under a broker and checks what the broker saw:
#   ephemeral-broker run --pool accounts=Fixtures/accounts.json -- Fixtures/ParallelAccounts/check.sh
# - every test got an account, no account was ever held by two tests at once,
# - the test that SIGKILLs itself while holding an account is the only failure,
# - its account went back by disconnect (no lease had to wait for its TTL).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
broker="${EPHEMERAL_BROKER_BIN:-ephemeral-broker}"
: "${EPHEMERAL_PIPE:?run this under ephemeral-broker run --pool accounts=…}"

cd "$here"
swift build --build-tests >build.log 2>&1 || { cat build.log; echo "check: the fixture does not build"; exit 1; }
rm -f results.xml
swift test --skip-build --parallel --num-workers 4 --xunit-output results.xml >test.log 2>&1
status=$?
cat test.log

fail() { echo "check: FAILED: $*"; exit 1; }
tests=11
[ "$status" -ne 0 ] || fail "the killed test should make swift test fail"
results=$(python3 - <<'PY'
import xml.etree.ElementTree as tree
cases = tree.parse("results.xml").getroot().iter("testcase")
print(" ".join(sorted(("FAIL:" if c.find("failure") is not None else "ok:") + c.get("name") for c in cases)))
PY
) || fail "no results.xml from swift test"
echo "check: results: $results"
[ "$(grep -o 'ok:' <<<"$results" | wc -l)" -eq $((tests - 1)) ] || fail "every other test must pass"
grep -q "FAIL:testKilledWhileHoldingALease" <<<"$results" || fail "the killed test should be reported as failed"

keys=$("$broker" list --json) || fail "cannot list the broker's keys"
got=$(grep -o '"got-test' <<<"$keys" | wc -l)
[ "$got" -eq "$tests" ] || fail "$got of $tests tests got an account"
grep -q '"overlap-' <<<"$keys" && fail "an account was held by two tests at once"
grep -q '"killed-holding"' <<<"$keys" || fail "the killed test did not get as far as holding an account"

stats=$("$broker" stats --json) || fail "cannot read stats"
pool=$(python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["pools"]["accounts"]))' <<<"$stats")
echo "check: accounts pool: $pool"
python3 - "$pool" "$tests" <<'PY' || fail "the pool's figures are wrong"
import json, sys
pool, tests = json.loads(sys.argv[1]), int(sys.argv[2])
assert pool["grants"] == tests, pool
assert pool["held"] == 0 and pool["waiting"] == 0, pool
assert pool["releasedByDisconnect"] >= 1, pool      # the killed test's account came back by disconnect
assert pool["expired"] == 0, pool                   # and not by waiting out its TTL
assert pool["peakHolders"] == 3 and pool["waits"] > 0, pool
PY
echo "check: $tests tests, 3 accounts: every test got one, none held twice at once, the killed test's account came back at once"
