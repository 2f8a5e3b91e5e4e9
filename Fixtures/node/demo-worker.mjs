// One worker of Fixtures/demo.sh: node demo-worker.mjs <id> <worker count>
// Leases an account from pool 'accounts', stores result-<id>, reads the shared
// 'run-started' key, waits until every worker holds its lease (so the accounts are
// provably exclusive), holds it ~200 ms more, and releases it.

import { OriginalClient } from './original-client.mjs'

const id = process.argv[2]
const workers = Number(process.argv[3] || 1)
const workerId = `worker-${id}`
const client = new OriginalClient()
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

try {
  const account = await client.lease('accounts', workerId, 10000)
  const started = await client.get('run-started')
  await client.set(`result-${id}`, { worker: Number(id), account, pid: process.pid }, 60000)

  // Barrier: all workers have stored their result while holding their lease.
  const deadline = Date.now() + 3000
  for (;;) {
    const keys = Object.keys(await client.list()).filter(key => key.startsWith('result-'))
    if (keys.length >= workers) break
    if (Date.now() > deadline) throw new Error(`only ${keys.length} of ${workers} workers showed up`)
    await sleep(20)
  }
  await sleep(200)

  const released = await client.release(workerId)
  if (!released) throw new Error('lease was gone before release')
  console.log(`worker ${id}: leased account ${account}, read run-started=${JSON.stringify(started)}, stored result-${id}`)
} catch (err) {
  console.error(`worker ${id}: failed: ${err.message}`)
  process.exit(1)
}
