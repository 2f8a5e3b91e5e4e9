#!/usr/bin/env bash
# The README demo: four Node workers, using the original client's protocol, share one
# broker. Each leases an exclusive account from pool 'accounts', reads a key the script
# set before starting them, stores its result, and releases the lease.
#
#   ephemeral-broker run -- Fixtures/demo.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
workers=4

if [[ -z "${EPHEMERAL_PIPE:-}" ]]; then
    echo "EPHEMERAL_PIPE is not set: run this under a broker, e.g." >&2
    echo "  ephemeral-broker run -- $here/demo.sh" >&2
    exit 2
fi

# Runs an ES-module snippet with `client` bound to an OriginalClient.
broker_node() {
    CLIENT_MODULE="$here/node/original-client.mjs" node --input-type=module -e "
        import { pathToFileURL } from 'node:url'
        const { OriginalClient } = await import(pathToFileURL(process.env.CLIENT_MODULE).href)
        const client = new OriginalClient()
        $1"
}

started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
broker_node "
    for (let i = 1; i <= $workers; i++) await client.del('result-' + i)
    await client.set('run-started', '$started', 60000)"
echo "demo: broker at $EPHEMERAL_PIPE, run-started=$started, starting $workers workers"

pids=()
for id in $(seq 1 "$workers"); do
    node "$here/node/demo-worker.mjs" "$id" "$workers" &
    pids+=("$!")
done

failed=0
for pid in "${pids[@]}"; do
    wait "$pid" || failed=$((failed + 1))
done
if ((failed > 0)); then
    echo "demo: $failed of $workers workers failed" >&2
    exit 1
fi

broker_node "
    const stats = await client.stats()
    console.log('demo: broker stats: items=' + stats.items + ', leases=' + stats.leases)
    const accounts = []
    for (let i = 1; i <= $workers; i++) accounts.push((await client.get('result-' + i)).account)
    if (new Set(accounts).size !== accounts.length) {
        console.error('demo: accounts were not exclusive: ' + accounts.join(','))
        process.exit(1)
    }
    if (stats.leases !== 0) {
        console.error('demo: ' + stats.leases + ' leases still held')
        process.exit(1)
    }
    console.log('demo: ok: $workers workers leased distinct accounts ' +
        [...accounts].sort((a, b) => a - b).join(',') + ', stored $workers results, released all leases')"
