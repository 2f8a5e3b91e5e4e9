import EphemeralWire

/// The broker's state as a pure state machine: items with TTLs and the original's integer leases.
///
/// Every operation takes `now` (epoch milliseconds) from the caller's injected clock and does no I/O and no
/// locking; the server confines a store to one event loop. Costs are O(log n) per operation: deadlines live in
/// ``ExpiryQueue``s, counts are kept as they change, and only `list` walks the items.
public struct Store: Sendable {
    /// A stored value as `get` returns it.
    public struct Value: Sendable, Equatable {
        /// Compact JSON bytes, exactly as stored.
        public var json: [UInt8]
        /// Whether the value is the original client's base64-gzip string.
        public var compressed: Bool

        /// Creates a value.
        /// - Parameters:
        ///   - json: Compact JSON bytes.
        ///   - compressed: Whether they are a compressed value.
        public init(json: [UInt8], compressed: Bool) {
            self.json = json
            self.compressed = compressed
        }
    }

    struct Item {
        var value: [UInt8]
        var compressed: Bool
        var ttl: Int64
        var expiresAt: Int64
        var generation: UInt64
    }

    /// The configuration the store enforces.
    public let configuration: StoreConfiguration
    private var items: [String: Item] = [:]
    private var expiries = ExpiryQueue<String>()
    private var nextGeneration: UInt64 = 0
    private var leases = LeaseTable()
    private var pools = PoolTable()

    /// Approximate bytes held by items: keys, values and a fixed per-item overhead.
    public private(set) var approximateBytes = 0
    /// Items removed because their TTL ran out, since the store was created.
    public private(set) var expiredItemsTotal = 0
    /// Fixed per-item bookkeeping counted in ``approximateBytes``.
    static let itemOverhead = 64

    /// Creates an empty store.
    /// - Parameter configuration: Limits and TTL policy.
    public init(configuration: StoreConfiguration = StoreConfiguration()) {
        self.configuration = configuration
    }

    // MARK: - Items

    /// Reads a value.
    /// - Throws: `not_found` for an unknown key; `expired` (once, removing it) for a key whose TTL ran out.
    public mutating func get(_ key: String, now: Int64) throws(BrokerError) -> Value {
        guard var item = items[key] else { throw BrokerError(.notFound) }
        if item.expiresAt <= now {
            remove(key)
            expiredItemsTotal += 1
            throw BrokerError(.expired)
        }
        if configuration.refreshTTLOnGet {
            item.expiresAt = now + item.ttl
            item.generation = generation()
            items[key] = item
            schedule(key, item)
        }
        return Value(json: item.value, compressed: item.compressed)
    }

    /// Stores a value, replacing value, TTL and compression flag of an existing key.
    ///
    /// Checks run in the original's order: negative TTL, missing or zero TTL when required, size, capacity.
    /// - Returns: The value's size in bytes (of its JSON text, decompressed when it was compressed).
    /// - Throws: `invalid_ttl`, `ttl_required`, `too_large`, `invalid_compressed_value` or `max_items`; nothing
    ///   changes when it throws.
    @discardableResult
    public mutating func set(_ command: SetCommand, now: Int64) throws(BrokerError) -> Int {
        let ttl = try itemTTL(command.ttl)
        let size = command.compressed
            ? try ValueCompression.decompressedSize(of: command.value, limit: configuration.maxValueSize)
            : command.value.count
        guard size <= configuration.maxValueSize else {
            throw BrokerError(.tooLarge, "the value is \(size) bytes; the limit is \(configuration.maxValueSize)")
        }
        if items[command.key] == nil, configuration.maxItems > 0, items.count >= configuration.maxItems {
            _ = sweepItems(now: now)
            guard items.count < configuration.maxItems else {
                throw BrokerError(.maxItems, "the store holds its maximum of \(configuration.maxItems) items")
            }
        }
        let item = Item(value: command.value, compressed: command.compressed, ttl: ttl, expiresAt: now + ttl,
                        generation: generation())
        if let old = items.updateValue(item, forKey: command.key) {
            approximateBytes -= old.value.count
        } else {
            approximateBytes += command.key.utf8.count + Self.itemOverhead
        }
        approximateBytes += item.value.count
        schedule(command.key, item)
        return size
    }

    /// Deletes a key; deleting a missing key is not an error.
    /// - Returns: Whether the key existed.
    @discardableResult
    public mutating func delete(_ key: String) -> Bool {
        remove(key) != nil
    }

    /// The live items and their expiry times, never their values, sorted by key.
    public func list(now: Int64) -> [(key: String, expiresAt: Int64)] {
        items.compactMap { key, item in item.expiresAt > now ? (key, item.expiresAt) : nil }
            .sorted { $0.key < $1.key }
    }

    /// The number of live items (stored and not yet past their TTL).
    public func itemCount(now: Int64) -> Int {
        items.count - expiries.countDue(at: now) { isLive($0) }
    }

    /// Removes every item and lease whose TTL has run out, handing lapsed pool items to their waiters.
    /// - Returns: How many items and original leases were removed, and the waiters granted an item.
    @discardableResult
    public mutating func sweep(now: Int64) -> (items: Int, leases: Int, regranted: [WaiterGrant]) {
        (sweepItems(now: now), leases.expire(now: now), pools.expire(now: now))
    }

    /// Forgets everything (used at shutdown so no secret outlives the broker in memory longer than needed).
    public mutating func removeAll() {
        items.removeAll()
        expiries.removeAll()
        leases = LeaseTable()
        pools = PoolTable()
        approximateBytes = 0
    }

    // MARK: - Original leases

    /// The original lease: the lowest integer not held by a live lease on `key`, renewed when the worker asks again.
    /// - Parameters:
    ///   - key: The lease key (the pool).
    ///   - workerId: The worker asking.
    ///   - ttl: Milliseconds, or `nil` for the default TTL.
    ///   - now: The current time.
    /// - Returns: The leased integer.
    /// - Throws: `invalid_ttl`, or `worker_already_has_lease` when the worker holds a lease on another key.
    public mutating func lease(key: String, workerId: String, ttl: Double?, now: Int64) throws(BrokerError) -> Int {
        let ttl = try leaseTTL(ttl)
        return try leases.lease(key: key, workerId: workerId, ttl: ttl, now: now)
    }

    /// Releases the lease a worker holds.
    /// - Returns: Whether the worker held a live lease.
    public mutating func release(workerId: String, now: Int64) -> Bool {
        leases.release(workerId: workerId, now: now)
    }

    /// The number of live leases: the original's and pool leases.
    public func leaseCount(now: Int64) -> Int { leases.count(now: now) + pools.heldCount }

    /// Leases removed because their TTL ran out, since the store was created.
    public var expiredLeasesTotal: Int { leases.expiredTotal }

    // MARK: - Pools

    /// Defines a pool by capacity or by its items; defining the same pool again is a no-op.
    /// - Returns: The pool's capacity.
    /// - Throws: `invalid_pool` for no or too many items, `pool_exists` for a different definition.
    @discardableResult
    public mutating func definePool(_ name: String, capacity: Int?, items: [[UInt8]]?) throws(BrokerError) -> Int {
        try pools.define(name, capacity: capacity, items: items)
    }

    /// Leases an item of a pool for `owner`, or queues the request for up to `wait` milliseconds.
    /// - Returns: The outcome, and waiters granted items that lapsed meanwhile.
    /// - Throws: `unknown_pool`, `pool_exhausted` (when `wait` is 0), `invalid_ttl`, `invalid_wait`.
    public mutating func leasePool(_ name: String, owner: OwnerID, wait: Double?, ttl: Double?, now: Int64)
        throws(BrokerError) -> (PoolLeaseOutcome, [WaiterGrant])
    {
        let ttl = try leaseTTL(ttl)
        var waitMilliseconds: Int64 = 0
        if let wait {
            guard wait >= 0, wait <= Double(Self.maxWait) else {
                throw BrokerError(.invalidWait, "wait must be between 0 and \(Self.maxWait) ms")
            }
            waitMilliseconds = Int64(wait.rounded(.up))
        }
        return try pools.lease(name, owner: owner, wait: waitMilliseconds, ttl: ttl, now: now)
    }

    /// The longest a caller may wait for an item or a key: one day.
    public static let maxWait: Int64 = 24 * 3_600_000

    /// Ends a wait whose deadline passed.
    /// - Returns: Whether it was still waiting (its caller must now be told `timeout`).
    public mutating func cancelPoolWait(_ name: String, waiter: UInt64) -> Bool {
        pools.cancelWait(name, waiter: waiter)
    }

    /// Extends a pool lease.
    /// - Returns: The new expiry, and waiters granted items that lapsed meanwhile.
    /// - Throws: `unknown_pool`, `not_holder`, `stale_fence`, `invalid_ttl`.
    public mutating func renewPool(_ name: String, index: Int, fence: UInt64, ttl: Double?, now: Int64)
        throws(BrokerError) -> (Int64, [WaiterGrant])
    {
        try pools.renew(name, index: index, fence: fence, ttl: try leaseTTL(ttl), now: now)
    }

    /// Gives a pool item back.
    /// - Returns: The waiters granted items (this one, and any that lapsed meanwhile).
    /// - Throws: `unknown_pool`, `not_holder`, `stale_fence`.
    public mutating func releasePool(_ name: String, index: Int, fence: UInt64, now: Int64) throws(BrokerError)
        -> [WaiterGrant]
    {
        try pools.release(name, index: index, fence: fence, now: now)
    }

    /// Gives back everything `owner` holds and drops its waits: its connection closed.
    /// - Returns: How many leases went back, and the waiters granted them.
    public mutating func releaseAll(owner: OwnerID, now: Int64) -> (released: Int, regranted: [WaiterGrant]) {
        pools.releaseAll(owner: owner, now: now)
    }

    /// Per-pool figures: capacity, held, waiting, and the run's totals.
    public func poolSummaries() -> [PoolSummary] { pools.summaries() }

    // MARK: - Internals

    private func itemTTL(_ ttl: Double?) throws(BrokerError) -> Int64 {
        if let ttl, ttl < 0 { throw BrokerError(.invalidTTL, "ttl must not be negative") }
        if configuration.requireTTL {
            guard let ttl else { throw BrokerError(.ttlRequired) }
            guard ttl > 0 else { throw BrokerError(.invalidTTL, "ttl must be positive") }
        }
        guard let ttl, ttl > 0 else { return configuration.defaultTTL }
        return try Self.milliseconds(ttl)
    }

    private func leaseTTL(_ ttl: Double?) throws(BrokerError) -> Int64 {
        if let ttl, ttl < 0 { throw BrokerError(.invalidTTL, "ttl must not be negative") }
        guard let ttl, ttl > 0 else { return configuration.defaultTTL }
        return try Self.milliseconds(ttl)
    }

    private static func milliseconds(_ ttl: Double) throws(BrokerError) -> Int64 {
        guard ttl <= Double(StoreConfiguration.maxTTL) else {
            throw BrokerError(.invalidTTL, "ttl must not exceed \(StoreConfiguration.maxTTL) ms")
        }
        return Int64(ttl.rounded(.up))
    }

    private mutating func generation() -> UInt64 {
        nextGeneration &+= 1
        return nextGeneration
    }

    private mutating func schedule(_ key: String, _ item: Item) {
        expiries.push(key, deadline: item.expiresAt, generation: item.generation)
        let liveCount = items.count
        let items = self.items
        expiries.compactIfNeeded(liveCount: liveCount) { entry in items[entry.id]?.generation == entry.generation }
    }

    private func isLive(_ entry: ExpiryQueue<String>.Entry) -> Bool {
        items[entry.id]?.generation == entry.generation
    }

    @discardableResult
    private mutating func remove(_ key: String) -> Item? {
        guard let item = items.removeValue(forKey: key) else { return nil }
        approximateBytes -= key.utf8.count + Self.itemOverhead + item.value.count
        return item
    }

    private mutating func sweepItems(now: Int64) -> Int {
        var removed = 0
        while let entry = expiries.popDue(at: now) {
            guard isLive(entry) else { continue }
            remove(entry.id)
            removed += 1
        }
        expiredItemsTotal += removed
        return removed
    }
}
