import EphemeralStore
import EphemeralWire
import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The broker's state and request handling, confined to the broker's one event loop.
///
/// Every connection's handler runs on that loop, so the ``Store`` needs no lock and replies are produced in
/// request order.
final class BrokerCore {
    let configuration: BrokerConfiguration
    let clock: any WallClock
    let signer: FrameSigner?
    private let decoder: RequestDecoder
    private(set) var store: Store
    private var replayGuard: ReplayGuard
    private(set) var metrics = BrokerMetrics()
    let startedAt: Int64
    private(set) var lastActivity: Int64
    var openConnections = 0
    private(set) var inFlight = 0
    var draining = false
    var logger: Logger { configuration.logger }

    init(configuration: BrokerConfiguration, clock: any WallClock) {
        self.configuration = configuration
        self.clock = clock
        self.signer = configuration.secret.map(FrameSigner.init(secret:))
        self.decoder = RequestDecoder(signer: signer)
        self.store = Store(configuration: configuration.store)
        self.replayGuard = ReplayGuard(window: configuration.replayWindow)
        self.startedAt = clock.now()
        self.lastActivity = startedAt
    }

    /// Answers one frame with one reply line.
    func respond(to frame: RequestFrame, allocator: ByteBufferAllocator) -> ByteBuffer {
        let now = clock.now()
        lastActivity = now
        metrics.recordRequest()
        inFlight += 1
        defer { inFlight -= 1 }
        let buffer = allocator.buffer(capacity: 64)
        guard case .line(let line) = frame else {
            return reject(BrokerError(.tooLarge, "the request exceeds \(configuration.maxRequestSize) bytes"),
                          action: nil, into: buffer)
        }
        if draining { return reject(BrokerError(.draining), action: nil, into: buffer) }
        let decoded = line.withUnsafeReadableBytes { bytes -> Result<Request, BrokerError> in
            do throws(BrokerError) { return .success(try decoder.decode(bytes)) } catch { return .failure(error) }
        }
        let request: Request
        switch decoded {
        case .success(let value): request = value
        case .failure(let error): return reject(error, action: nil, into: buffer)
        }
        let replySigner = request.isSigned ? signer : nil
        func finish(_ writer: inout JSONLineWriter) -> ByteBuffer {
            writer.finish(signer: replySigner, nonce: request.nonce)
        }
        do throws(BrokerError) {
            if request.isSigned { try admit(request, now: now) }
            let command = try request.command.get()
            var writer = try execute(command, now: now, into: buffer, id: request.id)
            metrics.record(command.action, error: nil)
            return finish(&writer)
        } catch {
            metrics.record(request.action, error: error)
            var writer = JSONLineWriter.error(error, into: buffer)
            if let id = request.id { writer.member("id", rawJSON: id) }
            return finish(&writer)
        }
    }

    private func reject(_ error: BrokerError, action: Action?, into buffer: ByteBuffer) -> ByteBuffer {
        metrics.record(action, error: error)
        var writer = JSONLineWriter.error(error, into: buffer)
        return writer.finish(signer: nil, nonce: nil)
    }

    private func admit(_ request: Request, now: Int64) throws(BrokerError) {
        if request.timestamp == nil, request.nonce == nil {
            guard !configuration.requireNonce else {
                throw BrokerError(.authFailed, "this broker requires ts and nonce in signed requests")
            }
            return
        }
        try replayGuard.admit(timestamp: request.timestamp, nonce: request.nonce, now: now)
    }

    private func execute(_ command: Command, now: Int64, into buffer: ByteBuffer, id: [UInt8]?) throws(BrokerError)
        -> JSONLineWriter
    {
        var reply = JSONLineWriter.ok(into: buffer)
        if let id { reply.member("id", rawJSON: id) }
        switch command {
        case .ping:
            reply.member("pong", int: now)
        case .get(let key):
            let value = try store.get(key, now: now)
            reply.member("value", rawJSON: value.json)
            reply.member("compressed", bool: value.compressed)
        case .set(let set):
            let size = try store.set(set, now: now)
            metrics.recordSet(compressed: set.compressed, before: size, after: set.value.count)
        case .del(let key):
            store.delete(key)
        case .list:
            reply.beginObject("items")
            for item in store.list(now: now) {
                reply.beginObject(item.key)
                reply.member("expires", int: item.expiresAt)
                reply.member("hasValue", bool: true)
                reply.endObject()
            }
            reply.endObject()
        case .stats:
            reply.beginObject("stats")
            reply.member("items", int: Int64(store.itemCount(now: now)))
            reply.member("leases", int: Int64(store.leaseCount(now: now)))
            writeCapacity(&reply, now: now)
            writeMemory(&reply)
            reply.member("uptime", int: now - startedAt)
            reply.member("connections", int: Int64(openConnections))
            reply.endObject()
        case .health:
            let capacity = capacityFigures(now: now)
            reply.member("status", string: draining || capacity.near ? "degraded" : "healthy")
            reply.member("uptime", int: now - startedAt)
            reply.member("timestamp", int: now)
            reply.member("items", int: Int64(capacity.items))
            reply.member("leases", int: Int64(store.leaseCount(now: now)))
            writeCapacity(&reply, now: now)
            writeMemory(&reply)
            reply.beginObject("connections")
            reply.member("open", int: Int64(openConnections))
            reply.member("inFlight", int: Int64(inFlight))
            reply.member("draining", bool: draining)
            reply.endObject()
        case .metrics:
            reply.member("metrics", string: metrics.prometheusText(gauges(now: now)))
            reply.member("format", string: "prometheus")
        case .lease(let key, let workerId, let ttl):
            let value = try store.lease(key: key, workerId: workerId, ttl: ttl, now: now)
            reply.member("value", int: Int64(value))
        case .release(let workerId):
            reply.member("released", bool: store.release(workerId: workerId, now: now))
        }
        return reply
    }

    private func capacityFigures(now: Int64) -> (items: Int, max: Int, utilization: Double, near: Bool, full: Bool) {
        let items = store.itemCount(now: now)
        let max = configuration.store.maxItems
        let utilization = max == 0 ? 0 : (Double(items) / Double(max) * 10_000).rounded() / 100
        return (items, max, utilization, max > 0 && utilization >= 90, max > 0 && items >= max)
    }

    private func writeCapacity(_ reply: inout JSONLineWriter, now: Int64) {
        let capacity = capacityFigures(now: now)
        reply.beginObject("capacity")
        reply.member("items", int: Int64(capacity.items))
        reply.member("maxItems", int: Int64(capacity.max))
        reply.member("utilization", double: capacity.utilization)
        reply.member("nearCapacity", bool: capacity.near)
        reply.member("atCapacity", bool: capacity.full)
        if capacity.full {
            reply.member("warning", string: "the store is full: new keys are refused with max_items")
        } else if capacity.near {
            reply.member("warning", string: "the store is over 90% full")
        } else {
            reply.member("warning", rawJSON: Array("null".utf8))
        }
        reply.endObject()
    }

    private func writeMemory(_ reply: inout JSONLineWriter) {
        reply.beginObject("memory")
        reply.member("rss", int: Int64(ProcessMemory.residentBytes()))
        reply.member("heapUsed", int: Int64(ProcessMemory.heapBytes()))
        reply.member("approximateStoreBytes", int: Int64(store.approximateBytes))
        reply.endObject()
    }

    func gauges(now: Int64) -> BrokerMetrics.Gauges {
        BrokerMetrics.Gauges(
            items: store.itemCount(now: now), maxItems: configuration.store.maxItems,
            leases: store.leaseCount(now: now), inFlight: inFlight, connections: openConnections,
            draining: draining, expiredItems: store.expiredItemsTotal, expiredLeases: store.expiredLeasesTotal,
            approximateStoreBytes: store.approximateBytes, rss: ProcessMemory.residentBytes(),
            uptimeSeconds: Double(now - startedAt) / 1000)
    }

    /// Runs the sweeper once.
    func sweep() {
        let removed = store.sweep(now: clock.now())
        if removed.items + removed.leases > 0 {
            logger.debug("swept expired entries", metadata: ["items": "\(removed.items)", "leases": "\(removed.leases)"])
        }
    }

    /// Logs the heartbeat line.
    func heartbeat() {
        let now = clock.now()
        logger.info("heartbeat", metadata: [
            "uptime_ms": "\(now - startedAt)", "items": "\(store.itemCount(now: now))",
            "leases": "\(store.leaseCount(now: now))", "connections": "\(openConnections)",
            "rss_bytes": "\(ProcessMemory.residentBytes())",
        ])
    }

    /// Whether no request has arrived for the idle timeout.
    func isIdle() -> Bool {
        guard let idle = configuration.idleTimeout else { return false }
        return clock.now() - lastActivity >= idle
    }

    /// Forgets every item, lease and nonce.
    func clear() {
        store.removeAll()
        replayGuard = ReplayGuard(window: configuration.replayWindow)
    }
}
