// A faithful copy of the wire behaviour of the original Node package's `Client`
// (ephemeral-broker src/client.js), with no npm dependencies, so the Swift broker can be
// checked against the client that real Node workers use:
//   - one new connection per request, one `JSON.stringify(message) + '\n'` line each way;
//   - with a secret, `hmac = HMAC-SHA256(secret, JSON.stringify(payload))` (hex) and the
//     sent object is `{...payload, hmac}`, so `hmac` is the last member;
//   - values whose JSON text has >= compressionThreshold UTF-16 units are gzipped and sent
//     as a base64 string with `compressed: true` and the `beforeSize`/`afterSize` members;
//   - retries on ECONNREFUSED/ENOENT/EPIPE/ETIMEDOUT (and EAGAIN, which the original
//     forgets) after 50, 100, 200, 400 and 800 ms.
// The only addition is `raw(payload)`, which returns the reply instead of throwing.

import net from 'node:net'
import crypto from 'node:crypto'
import zlib from 'node:zlib'

const RETRY_DELAYS = [50, 100, 200, 400, 800]
const RETRYABLE = new Set(['ECONNREFUSED', 'ENOENT', 'EPIPE', 'ETIMEDOUT', 'EAGAIN'])

export class OriginalClient {
  constructor(
    pipe = process.env.EPHEMERAL_PIPE,
    {
      secret = process.env.EPHEMERAL_SECRET,
      timeout = 5000,
      compressionThreshold = 1024,
      compression = true,
      allowNoTtl = false
    } = {}
  ) {
    if (!pipe) {
      throw new Error('No pipe specified and EPHEMERAL_PIPE not set')
    }
    this.pipe = pipe
    this.secret = secret || null
    this.timeout = timeout
    this.compressionThreshold = compressionThreshold
    this.compression = compression
    this.allowNoTtl = allowNoTtl
  }

  // Sends `payload` (signed when a secret is set) and returns the reply; throws
  // `new Error(reply.error)` when the reply is not ok.
  async request(payload) {
    const reply = await this._withRetry(payload)
    if (!reply.ok) {
      throw new Error(reply.error || 'Request failed')
    }
    return reply
  }

  // Sends any payload object and returns the parsed reply, ok or not.
  async raw(payload) {
    return this._withRetry(payload)
  }

  async _withRetry(payload) {
    let lastError = null
    for (let attempt = 0; attempt <= RETRY_DELAYS.length; attempt++) {
      try {
        return await this._attemptRequest(payload)
      } catch (err) {
        lastError = err
        if (!RETRYABLE.has(err.code) || attempt === RETRY_DELAYS.length) {
          throw lastError
        }
        await new Promise(resolve => setTimeout(resolve, RETRY_DELAYS[attempt]))
      }
    }
    throw lastError
  }

  _attemptRequest(payload) {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(this.pipe)
      let buffer = ''
      let timer
      let settled = false
      const settle = (fn, value) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        fn(value)
      }

      socket.on('connect', () => {
        const message = this.secret ? this.addHMAC(payload) : payload
        socket.write(JSON.stringify(message) + '\n')
        timer = setTimeout(() => {
          socket.destroy()
          settle(reject, new Error('Request timeout'))
        }, this.timeout)
      })

      socket.on('data', chunk => {
        // The original decodes chunk by chunk; kept, since replies here are small.
        buffer += chunk.toString('utf8')
        const idx = buffer.indexOf('\n')
        if (idx >= 0) {
          const line = buffer.slice(0, idx)
          socket.end()
          try {
            settle(resolve, JSON.parse(line))
          } catch (err) {
            settle(reject, new Error(`Invalid response: ${err.message}`))
          }
        }
      })

      socket.on('error', err => settle(reject, err))
      socket.on('close', () => settle(reject, new Error('Connection closed without a reply')))
    })
  }

  addHMAC(payload) {
    const hmac = crypto.createHmac('sha256', this.secret).update(JSON.stringify(payload)).digest('hex')
    return { ...payload, hmac }
  }

  compressValue(value) {
    return zlib.gzipSync(Buffer.from(JSON.stringify(value), 'utf8')).toString('base64')
  }

  decompressValue(compressed) {
    return JSON.parse(zlib.gunzipSync(Buffer.from(compressed, 'base64')).toString('utf8'))
  }

  shouldCompress(value) {
    if (!this.compression) return false
    return JSON.stringify(value).length >= this.compressionThreshold
  }

  async get(key) {
    const response = await this.request({ action: 'get', key })
    if (response.compressed) {
      return this.decompressValue(response.value)
    }
    return response.value
  }

  async set(key, value, ttl) {
    if (ttl === undefined && !this.allowNoTtl) {
      throw new Error('TTL is required for set(). Pass a ttl value or set allowNoTtl: true in client options.')
    }
    let finalValue = value
    let compressed = false
    let beforeSize = 0
    let afterSize = 0
    if (this.shouldCompress(value)) {
      beforeSize = JSON.stringify(value).length
      finalValue = this.compressValue(value)
      afterSize = finalValue.length
      compressed = true
    }
    await this.request({ action: 'set', key, value: finalValue, ttl, compressed, beforeSize, afterSize })
    return true
  }

  async del(key) {
    await this.request({ action: 'del', key })
    return true
  }

  async list() {
    return (await this.request({ action: 'list' })).items
  }

  async ping() {
    return (await this.request({ action: 'ping' })).pong
  }

  async stats() {
    return (await this.request({ action: 'stats' })).stats
  }

  async health() {
    return this.request({ action: 'health' })
  }

  async metrics() {
    return (await this.request({ action: 'metrics' })).metrics
  }

  async lease(key, workerId, ttl) {
    if (!key) throw new Error('Key is required for lease()')
    if (!workerId) throw new Error('Worker ID is required for lease()')
    return (await this.request({ action: 'lease', key, workerId, ttl })).value
  }

  async release(workerId) {
    if (!workerId) throw new Error('Worker ID is required for release()')
    return (await this.request({ action: 'release', workerId })).released
  }
}
