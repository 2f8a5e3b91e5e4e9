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
/// request order. The state touched on every request is `@exclusivity(unchecked)`: it is confined to the loop and
/// no access to it calls out while it lasts (the store is pure; replies are delivered after it returns), so the
/// runtime's dynamic exclusivity checks on class properties, a measurable share of each request, buy nothing.
final class BrokerCore {
    let configuration: BrokerConfiguration
    let clock: any WallClock
    let signer: FrameSigner?
    private let decoder: RequestDecoder
    @exclusivity(unchecked) private(set) var store: Store
    @exclusivity(unchecked) private var replayGuard: ReplayGuard
    @exclusivity(unchecked) var metrics = BrokerMetrics()
    let startedAt: Int64
    @exclusivity(unchecked) private(set) var lastActivity: Int64
    var openConnections = 0
    @exclusivity(unchecked) private(set) var inFlight = 0
    @exclusivity(unchecked) var draining = false
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

    /// Where a deferred reply goes, and how to sign and label it.
    struct ReplyRoute {
        var connection: BrokerConnectionHandler
        var sequence: UInt64
        var id: [UInt8]?
        var nonce: String?
        var signed: Bool
    }

    /// What a deferred request waits in.
    private enum WaitKey: Hashable {
        /// A pool lease waiting for an item of this pool.
        case pool(String, UInt64)
        /// A `wait`, `claim` or `barrier` waiting on a key.
        case key(UInt64)
    }

    /// A request whose reply comes later.
    private struct PendingWait {
        var route: ReplyRoute
        var action: Action
        /// Which parking this is, so a deadline left over from an earlier one is recognised as stale.
        var generation: UInt64
    }

    private var connections: [OwnerID: BrokerConnectionHandler] = [:]
    /// Each connection's parked requests, so its close ends them without visiting anyone else's.
    private var parkedByOwner: [OwnerID: Swift.Set<WaitKey>] = [:]
    private var nextOwner: OwnerID = 0
    @exclusivity(unchecked) private var pendingWaits: [WaitKey: PendingWait] = [:]
    /// The parked requests' deadlines, in the event loop's monotonic nanoseconds (real time, whatever the store's
    /// clock): one timer serves them all and the lapses of leases and claims.
    private var waitDeadlines = ExpiryQueue<WaitKey>()
    private var nextGeneration: UInt64 = 0
    /// The one timer, and the monotonic time it is set for.
    private var deadlineTimer: (task: Scheduled<Void>, at: NIODeadline)?
    /// While a batch of lapsed waits is answered: the connections whose replies are written but not yet flushed.
    private var unflushed: [ObjectIdentifier: BrokerConnectionHandler]?
    var eventLoop: (any EventLoop)?

    /// The most requests one connection may have parked at once, and the broker in all: past them a request that
    /// would wait is answered `too_many_waiters`.
    static let maxParkedPerConnection = 1024
    static let maxParked = 65_536
    /// How many lapsed waits are answered in one go before other connections are served again.
    static let expiryBatch = 256

    /// Registers a new connection, unless the broker already serves `maxConnections`.
    /// - Returns: Its owner ID (what it leases belongs to it), or `nil` when it must be refused.
    func connectionOpened(_ connection: BrokerConnectionHandler) -> OwnerID? {
        guard openConnections < configuration.maxConnections else {
            let refused = metrics.connectionsClosed[BrokerError.Code.tooManyConnections.wireName, default: 0] + 1
            if refused & (refused - 1) == 0 {  // the 1st, 2nd, 4th, 8th…: a flood of refusals is not a flood of logs
                logger.warning(
                    "refused a connection: the broker serves its maximum",
                    metadata: ["max_connections": "\(configuration.maxConnections)", "refused_so_far": "\(refused)"])
            }
            return nil
        }
        nextOwner += 1
        connections[nextOwner] = connection
        openConnections += 1
        return nextOwner
    }

    /// A connection closed: everything it held goes back at once, its waits end.
    func connectionClosed(_ owner: OwnerID) {
        connections.removeValue(forKey: owner)
        openConnections -= 1
        for key in parkedByOwner.removeValue(forKey: owner) ?? [] { pendingWaits.removeValue(forKey: key) }
        let outcome = store.releaseAll(owner: owner, now: clock.now())
        if outcome.released > 0 {
            logger.debug("leases released by disconnect", metadata: ["count": "\(outcome.released)"])
        }
        deliver(outcome.regranted)
        deliver(outcome.wakeups)
    }

    /// The error a connection refused at the cap gets before it is closed.
    var refusal: BrokerError {
        BrokerError(.tooManyConnections, "the broker serves its maximum of \(configuration.maxConnections)")
    }

    /// Answers one frame with one reply line appended to `buffer`, or nothing when the reply comes later through
    /// the route.
    /// - Returns: Whether the reply was appended.
    func respond(
        to frame: RequestFrame, into buffer: inout ByteBuffer, connection: BrokerConnectionHandler,
        sequence: UInt64
    ) -> Bool {
        let now = clock.now()
        lastActivity = now
        metrics.recordRequest()
        inFlight += 1
        defer { inFlight -= 1 }
        guard case .line(let line) = frame else {
            reject(
                BrokerError(.tooLarge, "the request exceeds \(configuration.maxRequestSize) bytes"),
                action: nil, into: &buffer)
            return true
        }
        let decoded = line.withUnsafeReadableBytes { bytes -> Result<Request, BrokerError> in
            do throws(BrokerError) { return .success(try decoder.decode(bytes)) } catch { return .failure(error) }
        }
        let request: Request
        switch decoded {
        case .success(let value): request = value
        case .failure(let error):
            reject(error, action: nil, into: &buffer)
            return true
        }
        let replySigner = request.isSigned ? signer : nil
        do throws(BrokerError) {
            if draining { throw BrokerError(.draining) }  // signed and with its id, like any reply
            if request.isSigned { try admit(request, now: now) }
            let command = try request.command.get()
            let lapsed = store.expireHandovers(now: now)
            deliver(lapsed.regranted)
            deliver(lapsed.wakeups)
            let route = ReplyRoute(
                connection: connection, sequence: sequence, id: request.id, nonce: request.nonce,
                signed: request.isSigned)
            // The buffer moves into the writer and back, never copied: a second reference would make its next
            // write copy every byte.
            var writer = JSONLineWriter.ok(into: consume buffer)
            if let id = route.id { writer.member("id", rawJSON: id) }
            let replied: Bool
            do throws(BrokerError) {
                replied = try execute(command, now: now, reply: &writer, route: route)
            } catch {
                buffer = (consume writer).abandon()
                throw error
            }
            guard replied else {
                buffer = (consume writer).abandon()
                return false
            }
            metrics.record(command.action, error: nil)
            buffer = (consume writer).finish(signer: replySigner, nonce: request.nonce)
        } catch {
            metrics.record(request.action, error: error)
            var writer = JSONLineWriter.error(error, into: consume buffer)
            if let id = request.id { writer.member("id", rawJSON: id) }
            buffer = (consume writer).finish(signer: replySigner, nonce: request.nonce)
        }
        return true
    }

    private func reject(_ error: BrokerError, action: Action?, into buffer: inout ByteBuffer) {
        metrics.record(action, error: error)
        let writer = JSONLineWriter.error(error, into: consume buffer)
        buffer = (consume writer).finish(signer: nil, nonce: nil)
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

    /// Performs a command, writing its members into `reply`.
    /// - Returns: Whether it replied now; `false` when the command waits and its reply comes later.
    private func execute(_ command: Command, now: Int64, reply: inout JSONLineWriter, route: ReplyRoute)
        throws(BrokerError) -> Bool
    {
        if command.mayWait { try admitWaiter(route.connection) }
        switch command {
        case .ping:
            reply.member("pong", int: now)
        case .get(let key):
            writeValue(try store.get(key, now: now), into: &reply)
        case .set(let set):
            let result = try store.set(set, now: now)
            metrics.recordSet(compressed: set.compressed, before: result.size, after: set.value.count)
            reply.member("version", int: Int64(result.version))
            deliver(result.wakeups)
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
            reply.member("waiting", int: Int64(pendingWaits.count))
            writeCapacity(&reply, now: now)
            writeMemory(&reply)
            reply.member("uptime", int: now - startedAt)
            reply.member("connections", int: Int64(openConnections))
            reply.beginObject("pools")
            for pool in store.poolSummaries() {
                reply.beginObject(pool.pool)
                reply.member("capacity", int: Int64(pool.capacity))
                reply.member("held", int: Int64(pool.held))
                reply.member("waiting", int: Int64(pool.waiting))
                reply.member("grants", int: Int64(pool.grants))
                reply.member("waits", int: Int64(pool.waits))
                reply.member("longestWait", int: pool.longestWait)
                reply.member("peakHolders", int: Int64(pool.peakHolders))
                reply.member("releasedByDisconnect", int: Int64(pool.releasedByDisconnect))
                reply.member("expired", int: Int64(pool.expired))
                reply.member("timedOut", int: Int64(pool.timedOut))
                reply.endObject()
            }
            reply.endObject()
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
        case .definePool(let pool, let capacity, let items):
            reply.member("capacity", int: Int64(try store.definePool(pool, capacity: capacity, items: items)))
        case .leasePool(let pool, let wait, let ttl):
            let (outcome, regranted) = try store.leasePool(
                pool, owner: route.connection.owner, wait: wait, ttl: ttl,
                now: now)
            defer {
                deliver(regranted)
                armDeadlineTimer()
            }
            switch outcome {
            case .granted(let grant):
                writeGrant(grant, into: &reply)
            case .queued(let waiter, let deadline):
                park(.pool(pool, waiter), action: .lease, route: route, for: deadline - now)
                return false
            }
        case .incr(let key, let by, let ttl):
            let (value, wakeups) = try store.increment(key, by: by, ttl: ttl, now: now)
            reply.member("value", int: value)
            deliver(wakeups)
        case .wait(let key, let timeout):
            let outcome = try store.waitForKey(key, owner: route.connection.owner, wait: timeout, now: now)
            guard let value = outcome.value else {
                park(.key(outcome.waiter!), action: .wait, route: route, for: outcome.deadline - now)
                return false
            }
            writeValue(value, into: &reply)
        case .claim(let key, let ttl, let wait, let refreshBefore):
            let (outcome, wakeups) = try store.claim(
                key, owner: route.connection.owner, ttl: ttl, wait: wait,
                refreshBefore: refreshBefore, now: now)
            defer {
                deliver(wakeups)
                armDeadlineTimer()
            }
            switch outcome {
            case .value(let value, _):
                reply.member("state", string: "value")
                writeValue(value, into: &reply)
            case .claimed(let token):
                reply.member("state", string: "claimed")
                reply.member("token", int: Int64(token))
            case .refresh(let value, _, let token):
                reply.member("state", string: "refresh")
                reply.member("token", int: Int64(token))
                writeValue(value, into: &reply)
            case .queued(let waiter, let deadline):
                park(.key(waiter), action: .claim, route: route, for: deadline - now)
                return false
            }
        case .unclaim(let key, let token):
            deliver(store.unclaim(key, token: token, now: now))
        case .barrier(let key, let parties, let timeout):
            let arrival = try store.arrive(key, parties: parties, owner: route.connection.owner, wait: timeout)
            let filled = arrival.wakeups.contains {
                $0 == .barrierReleased(waiter: arrival.waiter, key: key, parties: parties)
            }
            deliver(
                arrival.wakeups.filter { $0 != .barrierReleased(waiter: arrival.waiter, key: key, parties: parties) })
            guard filled else {
                park(.key(arrival.waiter), action: .barrier, route: route, for: arrival.deadlineIn)
                return false
            }
            reply.member("arrived", int: Int64(parties))
        case .renewPool(let pool, let index, let fence, let ttl):
            let (expiresAt, regranted) = try store.renewPool(pool, index: index, fence: fence, ttl: ttl, now: now)
            deliver(regranted)
            armDeadlineTimer()
            reply.member("expires", int: expiresAt)
        case .releasePool(let pool, let index, let fence):
            deliver(try store.releasePool(pool, index: index, fence: fence, now: now))
            reply.member("released", bool: true)
        }
        return true
    }

    private func writeValue(_ value: Store.Value, into reply: inout JSONLineWriter) {
        value.withJSON { reply.member("value", rawJSON: $0) }
        reply.member("compressed", bool: value.compressed)
        reply.member("version", int: Int64(value.version))
    }

    /// Refuses a request that would wait when its connection, or the broker, already parks its maximum.
    private func admitWaiter(_ connection: BrokerConnectionHandler) throws(BrokerError) {
        guard connection.parked < Self.maxParkedPerConnection else {
            throw BrokerError(
                .tooManyWaiters,
                "this connection already has \(Self.maxParkedPerConnection) requests waiting; wait for some to be "
                    + "answered, or use another connection")
        }
        guard pendingWaits.count < Self.maxParked else {
            throw BrokerError(
                .tooManyWaiters, "the broker already has \(Self.maxParked) requests waiting; retry later")
        }
    }

    /// Parks a request until a wakeup answers it or `milliseconds` pass (then it is answered `timeout`).
    private func park(_ key: WaitKey, action: Action, route: ReplyRoute, for milliseconds: Int64) {
        nextGeneration += 1
        pendingWaits[key] = PendingWait(route: route, action: action, generation: nextGeneration)
        parkedByOwner[route.connection.owner, default: []].insert(key)
        route.connection.parked += 1
        let deadline = NIODeadline.now() + .milliseconds(max(0, milliseconds))
        waitDeadlines.push(key, deadline: Int64(deadline.uptimeNanoseconds), generation: nextGeneration)
        let pending = pendingWaits
        waitDeadlines.compactIfNeeded(liveCount: pending.count) { pending[$0.id]?.generation == $0.generation }
        armDeadlineTimer()
    }

    /// Keeps the one timer set for the earliest of the parked requests' deadlines and the store's next lapse of a
    /// lease or claim, so each is met at its moment, not at the next request or sweep.
    func armDeadlineTimer() {
        guard let eventLoop else { return }
        var earliest = waitDeadlines.nextDeadline.map { NIODeadline.uptimeNanoseconds(UInt64($0)) }
        if let lapse = store.nextHandoverDeadline {
            let at = NIODeadline.now() + .milliseconds(max(0, lapse - clock.now()))
            earliest = earliest.map { min($0, at) } ?? at
        }
        guard let earliest else { return }
        if let timer = deadlineTimer {
            guard earliest < timer.at else { return }
            timer.task.cancel()
        }
        let core = NIOLoopBound(self, eventLoop: eventLoop)  // the timer fires on this same loop
        deadlineTimer = (eventLoop.scheduleTask(deadline: earliest) { core.value.deadlineTimerFired() }, earliest)
    }

    /// Hands lapsed leases and claims over, then answers parked requests whose deadline passed `timeout`, at most
    /// ``expiryBatch`` at a time: a thousand waits lapsing at once are answered in batches with other
    /// connections served between them.
    private func deadlineTimerFired() {
        deadlineTimer = nil
        let lapsed = store.expireHandovers(now: clock.now())
        deliver(lapsed.regranted)
        deliver(lapsed.wakeups)
        let now = Int64(NIODeadline.now().uptimeNanoseconds)
        var answered = 0
        unflushed = [:]
        while answered < Self.expiryBatch, let entry = waitDeadlines.popDue(at: now) {
            guard pendingWaits[entry.id]?.generation == entry.generation else { continue }
            waitExpired(entry.id)
            answered += 1
        }
        // A flush can call out (a connection found closed gives its leases to others, whose replies join the batch):
        // flush until nothing is left.
        while let batch = unflushed, !batch.isEmpty {
            unflushed = [:]
            for connection in batch.values { connection.flushDelivered() }
        }
        unflushed = nil
        if answered == Self.expiryBatch, let next = waitDeadlines.nextDeadline, next <= now, let eventLoop {
            // More are due: a moment's pause lets the event loop serve I/O first (a task due already would run in
            // this same tick).
            let core = NIOLoopBound(self, eventLoop: eventLoop)
            let resume = NIODeadline.now() + .milliseconds(1)
            deadlineTimer = (eventLoop.scheduleTask(deadline: resume) { core.value.deadlineTimerFired() }, resume)
            return
        }
        armDeadlineTimer()
    }

    private func writeGrant(_ grant: PoolGrant, into reply: inout JSONLineWriter) {
        reply.member("pool", string: grant.pool)
        reply.member("index", int: Int64(grant.index))
        reply.member("fence", int: Int64(grant.fence))
        reply.member("expires", int: grant.expiresAt)
        if let item = grant.item { reply.member("item", rawJSON: item) }
    }

    /// Answers waiters that were granted an item (their leases have deadlines of their own: the timer is set).
    func deliver(_ grants: [WaiterGrant]) {
        guard !grants.isEmpty else { return }
        for granted in grants {
            answer(.pool(granted.grant.pool, granted.waiter)) { writeGrant(granted.grant, into: &$0) }
        }
        armDeadlineTimer()
    }

    /// Answers waiters woken by a write, a lapsed or abandoned claim, or a full barrier.
    func deliver(_ wakeups: [Wakeup]) {
        guard !wakeups.isEmpty else { return }
        defer { armDeadlineTimer() }  // a claim handed over lapses in its turn
        for wakeup in wakeups {
            switch wakeup {
            case .value(let waiter, _, let value, _):
                answer(.key(waiter)) { reply in
                    reply.member("state", string: "value")
                    writeValue(value, into: &reply)
                }
            case .claimed(let waiter, _, let token):
                answer(.key(waiter)) { reply in
                    reply.member("state", string: "claimed")
                    reply.member("token", int: Int64(token))
                }
            case .barrierReleased(let waiter, _, let parties):
                answer(.key(waiter)) { $0.member("arrived", int: Int64(parties)) }
            }
        }
    }

    /// Takes a parked request off every record of it, for its answer.
    private func unpark(_ key: WaitKey) -> PendingWait? {
        guard let pending = pendingWaits.removeValue(forKey: key) else { return nil }
        let owner = pending.route.connection.owner
        parkedByOwner[owner]?.remove(key)
        if parkedByOwner[owner]?.isEmpty == true { parkedByOwner.removeValue(forKey: owner) }
        pending.route.connection.parked -= 1
        return pending
    }

    private func answer(_ key: WaitKey, members: (inout JSONLineWriter) -> Void) {
        guard let pending = unpark(key) else { return }
        let route = pending.route
        var reply = JSONLineWriter.ok(into: route.connection.allocator.buffer(capacity: 128))
        if let id = route.id { reply.member("id", rawJSON: id) }
        members(&reply)
        metrics.record(pending.action, error: nil)
        deliver((consume reply).finish(signer: route.signed ? signer : nil, nonce: route.nonce), to: route)
    }

    /// Hands a reply that came later to its connection: flushed at once, or with the rest of a batch of lapsed
    /// waits (one write for all of a connection's replies in the batch).
    private func deliver(_ reply: ByteBuffer, to route: ReplyRoute) {
        let flush = unflushed == nil
        route.connection.deliver(reply, sequence: route.sequence, flush: flush)
        if !flush { unflushed![ObjectIdentifier(route.connection)] = route.connection }
    }

    private func waitExpired(_ key: WaitKey) {
        guard let pending = unpark(key) else { return }
        let stillWaiting: Bool
        switch key {
        case .pool(let pool, let waiter): stillWaiting = store.cancelPoolWait(pool, waiter: waiter)
        case .key(let waiter): stillWaiting = store.cancelWait(waiter)
        }
        // Not waiting any more yet unanswered should not happen (handovers are delivered as they happen); if it
        // does, a timeout reply is better than a caller that hangs.
        _ = stillWaiting
        answer(pending.route, action: pending.action, with: BrokerError(.timeout, "the wait ran out"))
    }

    private func answer(_ route: ReplyRoute, action: Action, with error: BrokerError) {
        metrics.record(action, error: error)
        var reply = JSONLineWriter.error(error, into: route.connection.allocator.buffer(capacity: 96))
        if let id = route.id { reply.member("id", rawJSON: id) }
        deliver((consume reply).finish(signer: route.signed ? signer : nil, nonce: route.nonce), to: route)
    }

    /// Ends every wait with `draining`: the broker is shutting down.
    func failWaitsForDrain() {
        waitDeadlines.removeAll()
        for key in Array(pendingWaits.keys) {
            guard let pending = unpark(key) else { continue }
            switch key {
            case .pool(let pool, let waiter): _ = store.cancelPoolWait(pool, waiter: waiter)
            case .key(let waiter): _ = store.cancelWait(waiter)
            }
            answer(pending.route, action: pending.action, with: BrokerError(.draining))
        }
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

    /// Defines a pool on behalf of the process that runs the broker.
    func storeDefinePool(_ name: String, capacity: Int?, items: [[UInt8]]?) throws(BrokerError) -> Int {
        try store.definePool(name, capacity: capacity, items: items)
    }

    /// Runs the sweeper once.
    func sweep() {
        let removed = store.sweep(now: clock.now())
        deliver(removed.regranted)
        deliver(removed.wakeups)
        if removed.items + removed.leases > 0 {
            logger.debug(
                "swept expired entries", metadata: ["items": "\(removed.items)", "leases": "\(removed.leases)"])
        }
    }

    /// Logs the heartbeat line.
    func heartbeat() {
        let now = clock.now()
        logger.info(
            "heartbeat",
            metadata: [
                "uptime_ms": "\(now - startedAt)", "items": "\(store.itemCount(now: now))",
                "leases": "\(store.leaseCount(now: now))", "connections": "\(openConnections)",
                "rss_bytes": "\(ProcessMemory.residentBytes())",
            ])
    }

    /// Whether no request has arrived for the idle timeout and none is parked (a client blocked in a `wait` is
    /// active).
    func isIdle() -> Bool {
        guard let idle = configuration.idleTimeout, pendingWaits.isEmpty else { return false }
        return clock.now() - lastActivity >= idle
    }

    /// Forgets every item, lease and nonce.
    func clear() {
        deadlineTimer?.task.cancel()
        deadlineTimer = nil
        waitDeadlines.removeAll()
        pendingWaits.removeAll()
        parkedByOwner.removeAll()
        store.removeAll()
        replayGuard = ReplayGuard(window: configuration.replayWindow)
    }
}
