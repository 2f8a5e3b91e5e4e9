// Checks that a broker serves the original Node client unchanged. Run it as a worker:
//   ephemeral-broker run -- node Fixtures/node/compat-check.mjs
// which sets EPHEMERAL_PIPE and EPHEMERAL_SECRET. Prints "ok - <name>" per check and
// "compat: N checks passed"; on a failure prints it and exits 1.
//
// Cross-language hooks (both run before the other checks):
//   COMPAT_READ_KEY=k   get k with the original client and print "compat-read: <JSON>"
//   COMPAT_WRITE_KEY=k  set k to {"from":"node","pad":"x"*4000} (compressed), ttl 60000
// Keys, pools and worker ids are prefixed per run, so the script can run repeatedly
// against one long-lived broker (`ephemeral-broker serve`).

import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import net from 'node:net'
import zlib from 'node:zlib'
import { OriginalClient } from './original-client.mjs'

const pipe = process.env.EPHEMERAL_PIPE
const secret = process.env.EPHEMERAL_SECRET || null
if (!pipe) {
  console.error('EPHEMERAL_PIPE is not set; run: ephemeral-broker run -- node Fixtures/node/compat-check.mjs')
  process.exit(2)
}

const client = new OriginalClient(pipe, { secret })
const run = `compat-${process.pid}-${Date.now().toString(36)}-`
const k = name => run + name
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

let passed = 0
let current = '(setup)'
async function check(name, fn) {
  current = name
  await fn()
  passed += 1
  console.log(`ok - ${name}`)
}
function skip(name, why) {
  console.log(`ok - ${name} # skip ${why}`)
}
const rejectsWith = (promise, error) => assert.rejects(promise, err => err instanceof Error && err.message === error,
  `expected error '${error}'`)

// One connection, raw lines: writes each chunk (string or Buffer) separately, then reads
// `expected` reply lines.
function exchange(chunks, expected = 1, { gapMs = 20 } = {}) {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(pipe)
    let buffer = Buffer.alloc(0)
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('timeout waiting for reply')) }, 5000)
    socket.on('connect', async () => {
      for (const [i, chunk] of chunks.entries()) {
        if (i > 0) await sleep(gapMs)
        socket.write(chunk)
      }
    })
    socket.on('data', data => {
      buffer = Buffer.concat([buffer, data])
      const lines = buffer.toString('utf8').split('\n')
      if (lines.length - 1 >= expected) {
        clearTimeout(timer)
        socket.end()
        resolve(lines.slice(0, expected).map(line => JSON.parse(line)))
      }
    })
    socket.on('error', err => { clearTimeout(timer); reject(err) })
  })
}
const mac = text => crypto.createHmac('sha256', secret).update(text).digest('hex')
// The original client's framing: the payload's JSON text with `,"hmac":"…"` appended.
function signedLine(payload, { hexCase = 'lower' } = {}) {
  const text = JSON.stringify(payload)
  if (!secret) return text + '\n'
  let hmac = mac(text)
  if (hexCase === 'upper') hmac = hmac.toUpperCase()
  return text.slice(0, -1) + `,"hmac":"${hmac}"}\n`
}

async function main() {
  // Cross-language hooks first, so a value written by another client is read before it
  // could expire.
  if (process.env.COMPAT_READ_KEY) {
    const key = process.env.COMPAT_READ_KEY
    await check(`read ${key} written by another client`, async () => {
      const value = await client.get(key)
      console.log(`compat-read: ${JSON.stringify(value)}`)
    })
  }
  if (process.env.COMPAT_WRITE_KEY) {
    const key = process.env.COMPAT_WRITE_KEY
    await check(`write ${key} compressed for another client`, async () => {
      const value = { from: 'node', pad: 'x'.repeat(4000) }
      assert.equal(client.shouldCompress(value), true)
      assert.equal(await client.set(key, value, 60000), true)
      const reply = await client.raw({ action: 'get', key })
      assert.equal(reply.ok, true)
      assert.equal(reply.compressed, true)
    })
  }

  await check('ping returns epoch ms', async () => {
    const pong = await client.ping()
    assert.equal(typeof pong, 'number')
    assert.ok(Math.abs(pong - Date.now()) < 5000, `pong ${pong} far from now ${Date.now()}`)
  })

  await check('set/get string', async () => {
    assert.equal(await client.set(k('str'), 'hello', 60000), true)
    assert.equal(await client.get(k('str')), 'hello')
  })

  await check('set/get number', async () => {
    await client.set(k('num'), 42.5, 60000)
    assert.equal(await client.get(k('num')), 42.5)
    await client.set(k('int'), -7, 60000)
    assert.equal(await client.get(k('int')), -7)
  })

  await check('set/get object with unicode', async () => {
    const value = { name: 'héllo ✓ 😀', list: [1, 'two', null, true, { nested: 'ü' }], empty: {} }
    await client.set(k('obj'), value, 60000)
    assert.deepEqual(await client.get(k('obj')), value)
  })

  await check('set/get of other JSON types (null, boolean, array)', async () => {
    await client.set(k('null'), null, 60000)
    assert.equal(await client.get(k('null')), null)
    await client.set(k('bool'), false, 60000)
    assert.equal(await client.get(k('bool')), false)
    await client.set(k('arr'), [1, [2, [3]]], 60000)
    assert.deepEqual(await client.get(k('arr')), [1, [2, [3]]])
  })

  await check('small value is sent uncompressed and returned with compressed:false', async () => {
    const reply = await client.raw({ action: 'get', key: k('str') })
    assert.deepEqual(pick(reply), { ok: true, value: 'hello', compressed: false })
  })

  const big = {
    title: 'big héllo ✓ 😀',
    rows: Array.from({ length: 200 }, (_, i) => ({ i, name: `row-${i}`, ok: i % 2 === 0 }))
  }
  await check('value >1 KiB goes compressed and reads back deep-equal', async () => {
    assert.ok(JSON.stringify(big).length >= 1024)
    assert.equal(client.shouldCompress(big), true)
    await client.set(k('big'), big, 60000)
    assert.deepEqual(await client.get(k('big')), big)
  })

  await check('compressed value is stored as-is (base64 gzip string, compressed:true)', async () => {
    const reply = await client.raw({ action: 'get', key: k('big') })
    assert.equal(reply.ok, true)
    assert.equal(reply.compressed, true)
    assert.equal(typeof reply.value, 'string')
    const decoded = JSON.parse(zlib.gunzipSync(Buffer.from(reply.value, 'base64')).toString('utf8'))
    assert.deepEqual(decoded, big)
  })

  await check('a value compressed by another node client is readable', async () => {
    const writer = new OriginalClient(pipe, { secret, compressionThreshold: 16 })
    const value = { from: 'writer', text: 'ü'.repeat(50) }
    await writer.set(k('writer'), value, 60000)
    assert.equal((await client.raw({ action: 'get', key: k('writer') })).compressed, true)
    assert.deepEqual(await client.get(k('writer')), value)
  })

  await check('overwrite replaces value and compressed flag', async () => {
    await client.set(k('big'), 'small now', 60000)
    assert.deepEqual(pick(await client.raw({ action: 'get', key: k('big') })), { ok: true, value: 'small now', compressed: false })
  })

  await check('del then get throws not_found', async () => {
    assert.equal(await client.del(k('str')), true)
    await rejectsWith(client.get(k('str')), 'not_found')
  })

  await check('del of a missing key is ok', async () => {
    assert.equal(await client.del(k('never-set')), true)
  })

  await check('get of an unknown key throws not_found', async () => {
    await rejectsWith(client.get(k('unknown')), 'not_found')
  })

  await check('expired: ttl 30, after 80 ms get throws expired, then not_found', async () => {
    await client.set(k('short'), 'soon gone', 30)
    await sleep(80)
    await rejectsWith(client.get(k('short')), 'expired')
    await rejectsWith(client.get(k('short')), 'not_found')
  })

  await check('set without ttl throws ttl_required', async () => {
    // The original client refuses locally unless allowNoTtl; with it the broker refuses.
    await assert.rejects(client.set(k('nottl'), 1), /TTL is required/)
    const lax = new OriginalClient(pipe, { secret, allowNoTtl: true })
    await rejectsWith(lax.set(k('nottl'), 1), 'ttl_required')
  })

  await check('ttl -1 throws invalid_ttl', async () => {
    await rejectsWith(client.set(k('neg'), 1, -1), 'invalid_ttl')
  })

  await check('ttl 0 throws invalid_ttl', async () => {
    await rejectsWith(client.set(k('zero'), 1, 0), 'invalid_ttl')
  })

  await check('list shows live keys with expires and hasValue, never values', async () => {
    await client.set(k('listed'), { secret: 'not to be listed' }, 60000)
    const items = await client.list()
    assert.equal(typeof items, 'object')
    const item = items[k('listed')]
    assert.ok(item, 'listed key missing from list')
    assert.equal(typeof item.expires, 'number')
    assert.ok(item.expires > Date.now() && item.expires <= Date.now() + 61000, `expires ${item.expires}`)
    assert.equal(item.hasValue, true)
    for (const [key, entry] of Object.entries(items)) {
      assert.equal('value' in entry, false, `list leaks the value of ${key}`)
    }
    assert.equal(k('str') in items, false, 'deleted key still listed')
    assert.equal(k('short') in items, false, 'expired key still listed')
  })

  await check('stats', async () => {
    const stats = await client.stats()
    assert.equal(typeof stats.items, 'number')
    assert.ok(stats.items >= 1)
    assert.equal(typeof stats.leases, 'number')
    assert.equal(typeof stats.uptime, 'number')
    assert.equal(typeof stats.memory, 'object')
    assert.equal(typeof stats.memory.rss, 'number')
    assert.equal(typeof stats.capacity, 'object')
  })

  await check('health', async () => {
    const health = await client.health()
    assert.equal(health.ok, true)
    assert.equal(health.status, 'healthy')
    assert.equal(typeof health.uptime, 'number')
    assert.equal(typeof health.timestamp, 'number')
    assert.equal(typeof health.capacity, 'object')
    assert.equal(typeof health.capacity.maxItems, 'number')
    assert.equal(typeof health.connections, 'object')
  })

  await check('metrics in Prometheus text', async () => {
    const metrics = await client.metrics()
    assert.equal(typeof metrics, 'string')
    assert.match(metrics, /ephemeral_broker_operations_total/)
    assert.match(metrics, /ephemeral_broker_operations_total\{action="set",result="success"\} \d+/)
    assert.match(metrics, /ephemeral_broker_compression_total\{compressed="true"\}/)
    const reply = await client.raw({ action: 'metrics' })
    assert.equal(reply.format, 'prometheus')
  })

  const w = name => run + name
  await check('lease: lowest free integer per worker, renew, one lease per worker', async () => {
    assert.equal(await client.lease(k('pool'), w('w1')), 0)
    assert.equal(await client.lease(k('pool'), w('w2')), 1)
    assert.equal(await client.lease(k('pool'), w('w1')), 0, 'renew must keep the value')
    await rejectsWith(client.lease(k('other'), w('w1')), 'worker_already_has_lease')
  })

  await check('release frees the lease, once', async () => {
    assert.equal(await client.release(w('w1')), true)
    assert.equal(await client.release(w('w1')), false)
  })

  await check('lease after release gets the lowest free value', async () => {
    assert.equal(await client.lease(k('pool'), w('w3')), 0)
    assert.equal(await client.lease(k('pool'), w('w4'), 60000), 2)
  })

  await check('expired lease is recycled', async () => {
    // 500 ms: e2's lease must come while e1's still holds, even on a loaded machine.
    assert.equal(await client.lease(k('pool2'), w('e1'), 500), 0)
    assert.equal(await client.lease(k('pool2'), w('e2')), 1)
    await sleep(600)
    assert.equal(await client.lease(k('pool2'), w('e3')), 0)
  })

  await check('lease/release without worker give named errors', async () => {
    assert.deepEqual(pick(await client.raw({ action: 'lease', key: k('pool') })), { ok: false, error: 'key_and_worker_required' })
    assert.deepEqual(pick(await client.raw({ action: 'release' })), { ok: false, error: 'worker_required' })
  })

  await check('unknown action gives unknown_action', async () => {
    assert.deepEqual(pick(await client.raw({ action: 'nope' })), { ok: false, error: 'unknown_action' })
  })

  if (secret) {
    await check('wrong secret gives auth_failed', async () => {
      const wrong = new OriginalClient(pipe, { secret: secret + 'x' })
      await rejectsWith(wrong.ping(), 'auth_failed')
      await rejectsWith(wrong.get(k('obj')), 'auth_failed')
    })
    await check('unsigned request gives auth_failed', async () => {
      const unsigned = new OriginalClient(pipe, { secret: null })
      await rejectsWith(unsigned.ping(), 'auth_failed')
    })
    await check('hmac over a different payload gives auth_failed', async () => {
      const text = JSON.stringify({ action: 'get', key: k('obj') })
      const forged = JSON.stringify({ action: 'get', key: k('num') }).slice(0, -1) + `,"hmac":"${mac(text)}"}\n`
      const [reply] = await exchange([forged])
      assert.deepEqual(pick(reply), { ok: false, error: 'auth_failed' })
    })
    await check('uppercase hex hmac is accepted', async () => {
      const [reply] = await exchange([signedLine({ action: 'ping' }, { hexCase: 'upper' })])
      assert.equal(reply.ok, true)
    })
    await check('hmac member first is refused (WIRE.md: verified over received bytes)', async () => {
      const payload = { action: 'ping' }
      const line = JSON.stringify({ hmac: mac(JSON.stringify(payload)), ...payload }) + '\n'
      const [reply] = await exchange([line])
      assert.deepEqual(pick(reply), { ok: false, error: 'auth_failed' })
    })
  } else {
    skip('wrong secret gives auth_failed', 'EPHEMERAL_SECRET not set')
  }

  // Framing that the original client never exercises but WIRE.md requires.
  await check('pipelined requests on one connection are answered in order', async () => {
    const replies = await exchange([
      signedLine({ action: 'set', key: k('pipe'), value: 'one', ttl: 60000 }) +
        signedLine({ action: 'get', key: k('pipe') }) +
        signedLine({ action: 'set', key: k('pipe'), value: 'two', ttl: 60000 }) +
        signedLine({ action: 'get', key: k('pipe') })
    ], 4)
    assert.deepEqual(replies.map(pick), [
      { ok: true }, { ok: true, value: 'one', compressed: false },
      { ok: true }, { ok: true, value: 'two', compressed: false }
    ])
  })

  await check('a line split inside a multi-byte character decodes correctly', async () => {
    const bytes = Buffer.from(signedLine({ action: 'set', key: k('split'), value: '😀é', ttl: 60000 }), 'utf8')
    const at = bytes.indexOf(Buffer.from('😀', 'utf8')) + 2
    const [reply] = await exchange([bytes.subarray(0, at), bytes.subarray(at)])
    assert.equal(reply.ok, true)
    assert.equal(await client.get(k('split')), '😀é')
  })

  await check('invalid JSON gives invalid_json and the connection keeps serving', async () => {
    const replies = await exchange(['{not json\n' + signedLine({ action: 'ping' })], 2)
    assert.deepEqual(pick(replies[0]), { ok: false, error: 'invalid_json' })
    assert.equal(replies[1].ok, true)
  })

  // Leave nothing behind on a long-lived broker.
  for (const worker of ['w2', 'w3', 'w4', 'e2', 'e3']) await client.release(w(worker))
  for (const name of ['num', 'int', 'obj', 'null', 'bool', 'arr', 'big', 'writer', 'listed', 'pipe', 'split']) {
    await client.del(k(name))
  }

  console.log(`compat: ${passed} checks passed`)
}

// The `ok`/`error` members of a reply (extensions may add others, e.g. `message`).
function pick(reply) {
  const out = { ok: reply.ok }
  if ('error' in reply) out.error = reply.error
  if ('value' in reply) out.value = reply.value
  if ('compressed' in reply) out.compressed = reply.compressed
  return out
}

main().catch(err => {
  console.log(`not ok - ${current}`)
  console.error(err && err.stack ? err.stack : err)
  process.exit(1)
})
