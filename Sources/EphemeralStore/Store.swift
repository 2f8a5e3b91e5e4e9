import EphemeralWire

/// The broker's state as a pure state machine: items with TTLs and the original's integer leases.
///
/// Every operation takes `now` (epoch milliseconds) from the caller's injected clock and does no I/O and no
/// locking; the server confines a store to one event loop. Costs are O(log n) per operation: deadlines live in
/// ``ExpiryQueue``s, counts are kept as they change, and only `list` walks the items.
public struct Store: Sendable {
    /// A stored value as `get` returns it.
    public struct Value: @unchecked Sendable, Equatable {  // its StoredBytes are never changed once shared
        /// The bytes, shared with the stored item rather than copied out of it.
        var storage: StoredBytes
        /// Whether the value is the original client's base64-gzip string.
        public var compressed: Bool
        /// The item's version: it changes with every write, for compare-and-set.
        public var version: UInt64

        /// Creates a value.
        /// - Parameters:
        ///   - json: Compact JSON bytes.
        ///   - compressed: Whether they are a compressed value.
        ///   - version: The item's version.
        public init(json: [UInt8], compressed: Bool, version: UInt64 = 0) {
            self.init(storage: .make(json, compressed: compressed), compressed: compressed, version: version)
        }

        init(storage: StoredBytes, compressed: Bool, version: UInt64) {
            self.storage = storage
            self.compressed = compressed
            self.version = version
        }

        /// Compact JSON bytes, exactly as stored (a copy; ``withJSON(_:)`` reads them in place).
        public var json: [UInt8] {
            get { storage.bytes }
            set { storage = .make(newValue, compressed: compressed) }
        }

        /// Calls `body` with the JSON bytes in place, without copying them.
        /// - Parameter body: Reads the bytes; they are valid only during the call.
        /// - Returns: What `body` returns.
        public func withJSON<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
            try storage.withUnsafeBytes(body)
        }

        /// Whether two values have the same JSON bytes, compression flag and version.
        public static func == (lhs: Value, rhs: Value) -> Bool {
            lhs.compressed == rhs.compressed && lhs.version == rhs.version
                && lhs.withJSON { left in rhs.withJSON { right in left.elementsEqual(right) } }
        }
    }

    /// What a successful `set` did.
    public struct SetResult: Sendable, Equatable {
        /// The value's size in bytes (of its JSON text, decompressed when it was compressed).
        public var size: Int
        /// The new version of the item.
        public var version: UInt64
        /// Waiters for the key that now get its value.
        public var wakeups: [Wakeup]
    }

    /// One stored value: 16 bytes in its dictionary bucket (a bucket per item, live or empty, holds one), the
    /// deadline inline because a sliding TTL moves it on every read, the rest in ``StoredBytes`` with the value.
    struct Item: @unchecked Sendable {  // changes its StoredBytes only when it holds the only reference
        private(set) var storage: StoredBytes
        var expiresAt: Int64

        init(value: [UInt8], compressed: Bool, ttl: Int64, expiresAt: Int64, generation: UInt64, readsLeft: Int?) {
            self.storage = .make(
                value, compressed: compressed, ttl: ttl, generation: generation,
                readsLeftOrNone: StoredBytes.Header.readsLeftOrNone(readsLeft))
            self.expiresAt = expiresAt
        }

        var ttl: Int64 { storage.fields.ttl }
        /// Also the item's version.
        var generation: UInt64 { storage.fields.generation }
        var compressed: Bool { storage.fields.compressed }
        /// The value's size in bytes.
        var count: Int { storage.fields.count }
        /// The value as `get` returns it, sharing the bytes.
        var value: Value {
            let fields = storage.fields
            return Value(storage: storage, compressed: fields.compressed, version: fields.generation)
        }

        /// How many more reads the item allows; `nil` for no limit. A limit past `Int32.max` is kept as `Int32.max`.
        var readsLeft: Int? {
            get { storage.fields.readsLeftOrNone < 0 ? nil : Int(storage.fields.readsLeftOrNone) }
            set {
                // Values handed out share the storage: change a copy of it unless this item is its only holder.
                if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
                let reads = StoredBytes.Header.readsLeftOrNone(newValue)
                storage.withUnsafeMutablePointerToHeader { $0.pointee.readsLeftOrNone = reads }
            }
        }
    }

    /// The configuration the store enforces.
    public let configuration: StoreConfiguration
    private var items: [StoreKey: Item] = [:]
    private var expiries = ExpiryQueue<StoreKey>()
    private var nextGeneration: UInt64 = 0
    private var leases = LeaseTable()
    private var pools = PoolTable()
    private var coordination = CoordinationTable()

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
        // Sized for the item limit up front, so filling it never stops to rehash every item (the step from 98,304
        // to 98,305 items rehashed them all into 262,144 buckets). Only the occupancy bitmap is written now; the
        // buckets cost memory as items land in them.
        if configuration.maxItems > 0 { items.reserveCapacity(min(configuration.maxItems, Self.presizedItemsLimit)) }
    }

    /// The most items the dictionary is sized for up front.
    static let presizedItemsLimit = 1_000_000

    // MARK: - Items

    /// Reads a value.
    /// - Throws: `not_found` for an unknown key; `expired` (once, removing it) for a key whose TTL ran out.
    public mutating func get(_ key: String, now: Int64) throws(BrokerError) -> Value {
        let key = StoreKey(key)
        guard var item = items[key] else { throw BrokerError(.notFound) }
        if item.expiresAt <= now {
            remove(key)
            expiredItemsTotal += 1
            throw BrokerError(.expired)
        }
        let value = item.value
        if let readsLeft = item.readsLeft {
            if readsLeft <= 1 {
                remove(key)  // its last allowed read
                return value
            }
            item.readsLeft = readsLeft - 1
            items[key] = item
        }
        if configuration.refreshTTLOnGet, item.expiresAt != now + item.ttl {
            item.expiresAt = now + item.ttl
            items[key] = item
            expiries.push(key, deadline: item.expiresAt, generation: item.generation)
        }
        return value
    }

    /// Counts one read of a read-limited item (a `wait` or `claim` that hands its value out), deleting it after the
    /// last allowed one.
    private mutating func consumeRead(_ key: StoreKey) {
        guard let readsLeft = items[key]?.readsLeft else { return }
        if readsLeft <= 1 {
            remove(key)
        } else {
            items[key]?.readsLeft = readsLeft - 1
        }
    }

    /// The live value of a key without counting a read, or `nil`.
    func peek(_ key: StoreKey, now: Int64) -> Value? {
        guard let item = items[key], item.expiresAt > now else { return nil }
        return item.value
    }

    /// Stores a value, replacing value, TTL and compression flag of an existing key.
    ///
    /// Checks run in the original's order: negative TTL, missing or zero TTL when required, size, capacity.
    /// - Returns: The value's size, its new version, and the waiters it wakes.
    /// - Throws: `invalid_ttl`, `ttl_required`, `too_large`, `invalid_compressed_value`, `max_items`, `exists`
    ///   (`ifAbsent`) or `version_mismatch` (`ifVersion`); nothing changes when it throws.
    @discardableResult
    public mutating func set(_ command: SetCommand, now: Int64) throws(BrokerError) -> SetResult {
        let ttl = try itemTTL(command.ttl)
        let key = StoreKey(command.key)
        let conditional = command.ifAbsent || command.ifVersion != nil
        let current = conditional ? peek(key, now: now) : nil
        if command.ifAbsent, current != nil { throw BrokerError(.exists, "\(command.key) already has a value") }
        if let expected = command.ifVersion, current?.version != expected {
            throw BrokerError(
                .versionMismatch,
                "\(command.key) is at version \(current.map { String($0.version) } ?? "none"), not \(expected)")
        }
        let size =
            command.compressed
            ? try ValueCompression.decompressedSize(of: command.value, limit: configuration.maxValueSize)
            : command.value.count
        guard size <= configuration.maxValueSize else {
            throw BrokerError(.tooLarge, "the value is \(size) bytes; the limit is \(configuration.maxValueSize)")
        }
        if configuration.maxItems > 0, items.count >= configuration.maxItems, items[key] == nil {
            _ = sweepItems(now: now)
            guard items.count < configuration.maxItems else {
                throw BrokerError(.maxItems, "the store holds its maximum of \(configuration.maxItems) items")
            }
        }
        let item = Item(
            value: command.value, compressed: command.compressed, ttl: ttl, expiresAt: now + ttl,
            generation: generation(), readsLeft: command.maxReads)
        store(key, item)
        let value = item.value
        // Each woken waiter is a read: at most `maxReads` get the value; the others wait on for a later write.
        var wakeups = coordination.keySet(key, value: value, version: item.generation, limit: command.maxReads)
        if command.maxReads != nil {
            for _ in wakeups.indices { consumeRead(key) }
            // Used up before it reached every waiter: a waiting `claim` now computes it again.
            if items[key] == nil { wakeups += coordination.handOver(key, now: now) }
        }
        return SetResult(size: size, version: item.generation, wakeups: wakeups)
    }

    private mutating func store(_ key: StoreKey, _ item: Item) {
        if let old = items.updateValue(item, forKey: key) {
            approximateBytes -= old.count
        } else {
            approximateBytes += key.text.utf8.count + Self.itemOverhead
        }
        approximateBytes += item.count
        schedule(key, item)
    }

    // MARK: - Counters, waits, compute-once, barriers

    /// Adds `by` to an integer counter, creating it at 0 (with `ttl`, or the default TTL) when missing.
    /// - Returns: The new value, and the waiters it wakes.
    /// - Throws: `not_a_number` for a value that is not an integer or would overflow, `invalid_ttl`, `max_items`.
    public mutating func increment(_ key: String, by: Int64, ttl: Double?, now: Int64) throws(BrokerError)
        -> (value: Int64, wakeups: [Wakeup])
    {
        let name = key
        let key = StoreKey(key)
        var current: Int64 = 0
        var lifetime: Int64
        if let item = items[key], item.expiresAt > now {
            guard !item.compressed,
                let number = item.storage.withUnsafeBytes({ Int64(String(decoding: $0, as: UTF8.self)) })
            else {
                throw BrokerError(.notANumber, "\(name) does not hold an integer")
            }
            current = number
            lifetime = item.ttl
            if ttl != nil { lifetime = try leaseTTL(ttl) }
        } else {
            lifetime = try leaseTTL(ttl)
            if items[key] == nil, configuration.maxItems > 0, items.count >= configuration.maxItems {
                _ = sweepItems(now: now)
                guard items.count < configuration.maxItems else {
                    throw BrokerError(.maxItems, "the store holds its maximum of \(configuration.maxItems) items")
                }
            }
        }
        let (sum, overflow) = current.addingReportingOverflow(by)
        guard !overflow else { throw BrokerError(.notANumber, "\(name) would overflow") }
        let item = Item(
            value: Array(String(sum).utf8), compressed: false, ttl: lifetime, expiresAt: now + lifetime,
            generation: generation(), readsLeft: nil)
        store(key, item)
        let value = item.value
        return (sum, coordination.keySet(key, value: value, version: item.generation))
    }

    /// Waits until a key has a value.
    /// - Returns: The value now, or the waiter to answer later (at most `wait` ms from now).
    /// - Throws: `invalid_wait`.
    public mutating func waitForKey(_ key: String, owner: OwnerID, wait: Double, now: Int64) throws(BrokerError)
        -> (value: Value?, waiter: UInt64?, deadline: Int64)
    {
        let wait = try waitMilliseconds(wait)
        let name = key
        let key = StoreKey(key)
        if let value = peek(key, now: now) {
            consumeRead(key)
            return (value, nil, now)
        }
        guard wait > 0 else { throw BrokerError(.timeout, "\(name) has no value") }
        return (nil, coordination.waitForKey(key, owner: owner, claimTTL: nil), now + wait)
    }

    /// Compute-once: the value when there is one; otherwise the right to compute it, held by `owner` for
    /// `ttl` ms (given back at once if its connection closes); or a wait for the computation in progress.
    /// - Returns: The outcome, and waiters woken by lapsed claims.
    /// - Throws: `invalid_ttl`, `invalid_wait`, or `timeout` when someone else computes and `wait` is 0.
    public mutating func claim(
        _ key: String, owner: OwnerID, ttl: Double?, wait: Double?, refreshBefore: Double?,
        now: Int64
    ) throws(BrokerError) -> (ClaimOutcome, [Wakeup]) {
        let claimTTL = try leaseTTL(ttl ?? 60_000)
        let waitTime = try waitMilliseconds(wait ?? 0)
        let refreshWindow = try waitMilliseconds(refreshBefore ?? 0)
        let lapsed = coordination.expireClaims(now: now)
        let name = key
        let key = StoreKey(key)
        if let value = peek(key, now: now) {
            consumeRead(key)
            if refreshWindow > 0, let item = items[key], item.expiresAt - now <= refreshWindow,
                let token = coordination.claim(key, owner: owner, ttl: claimTTL, now: now)
            {
                return (.refresh(value, version: value.version, token: token), lapsed)
            }
            return (.value(value, version: value.version), lapsed)
        }
        if let token = coordination.claim(key, owner: owner, ttl: claimTTL, now: now) {
            return (.claimed(token: token), lapsed)
        }
        guard waitTime > 0 else { throw BrokerError(.timeout, "\(name) is being computed by another worker") }
        let waiter = coordination.waitForKey(key, owner: owner, claimTTL: claimTTL)
        return (.queued(waiter: waiter, deadline: now + waitTime), lapsed)
    }

    /// Gives up a claim whose computation failed: the next waiter takes it over.
    /// - Returns: The waiter that now computes, if any.
    public mutating func unclaim(_ key: String, token: UInt64, now: Int64) -> [Wakeup] {
        coordination.unclaim(StoreKey(key), token: token, now: now)
    }

    /// Arrives at a barrier of `parties`.
    /// - Returns: The waiter to answer when the barrier fills, and every party woken if this arrival filled it.
    /// - Throws: `invalid_wait`, or `invalid_request` when the barrier exists with another party count.
    public mutating func arrive(_ key: String, parties: Int, owner: OwnerID, wait: Double) throws(BrokerError)
        -> (waiter: UInt64, deadlineIn: Int64, wakeups: [Wakeup])
    {
        let wait = try waitMilliseconds(wait)
        let (waiter, wakeups) = try coordination.arrive(StoreKey(key), parties: parties, owner: owner)
        return (waiter, wait, wakeups)
    }

    /// Ends a `wait`, `claim` or `barrier` wait whose deadline passed.
    /// - Returns: Whether it was still waiting (and must be answered `timeout`).
    public mutating func cancelWait(_ waiter: UInt64) -> Bool {
        coordination.cancel(waiter)
    }

    private func waitMilliseconds(_ wait: Double) throws(BrokerError) -> Int64 {
        guard wait >= 0, wait <= Double(Self.maxWait) else {
            throw BrokerError(.invalidWait, "waits must be between 0 and \(Self.maxWait) ms")
        }
        return Int64(wait.rounded(.up))
    }

    /// Deletes a key; deleting a missing key is not an error.
    /// - Returns: Whether the key existed.
    @discardableResult
    public mutating func delete(_ key: String) -> Bool {
        remove(StoreKey(key)) != nil
    }

    /// The live items and their expiry times, never their values, sorted by key.
    public func list(now: Int64) -> [(key: String, expiresAt: Int64)] {
        items.compactMap { key, item in item.expiresAt > now ? (key, item.expiresAt) : nil }
            .sorted { $0.0 < $1.0 }
            .map { (key: $0.0.text, expiresAt: $0.1) }
    }

    /// The number of live items (stored and not yet past their TTL).
    public func itemCount(now: Int64) -> Int {
        items.count - expiries.countDue(at: now) { isLive($0) }
    }

    /// Removes every item and lease whose TTL has run out, handing lapsed pool items to their waiters.
    /// - Returns: How many items and original leases were removed, and the waiters granted an item.
    @discardableResult
    public mutating func sweep(now: Int64) -> (items: Int, leases: Int, regranted: [WaiterGrant], wakeups: [Wakeup]) {
        (sweepItems(now: now), leases.expire(now: now), pools.expire(now: now), coordination.expireClaims(now: now))
    }

    /// Forgets everything (used at shutdown so no secret outlives the broker in memory longer than needed).
    public mutating func removeAll() {
        items.removeAll()
        expiries.removeAll()
        leases = LeaseTable()
        pools = PoolTable()
        coordination = CoordinationTable()
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

    /// The most items one pool may have: 1,000,000.
    public static let maxPoolCapacity = PoolTable.maxCapacity

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
    public mutating func releaseAll(owner: OwnerID, now: Int64)
        -> (released: Int, regranted: [WaiterGrant], wakeups: [Wakeup])
    {
        let pooled = pools.releaseAll(owner: owner, now: now)
        return (pooled.released, pooled.regranted, coordination.ownerGone(owner, now: now))
    }

    /// Lapses pool leases and compute-once claims that are past their deadline, handing them to waiters. The
    /// broker calls this before every request, so no operation that may then throw has lapses left to hand out.
    public mutating func expireHandovers(now: Int64) -> (regranted: [WaiterGrant], wakeups: [Wakeup]) {
        (pools.expire(now: now), coordination.expireClaims(now: now))
    }

    /// When the earliest pool lease or compute-once claim lapses, if any: the broker hands it over at that moment
    /// (``expireHandovers(now:)``), not at the next request or sweep.
    public var nextHandoverDeadline: Int64? {
        switch (pools.nextDeadline, coordination.nextClaimDeadline) {
        case (let pool?, let claim?): min(pool, claim)
        case (let pool, let claim): pool ?? claim
        }
    }

    /// How many requests wait: pool leases waiting for an item, and `wait`, `claim` and `barrier` waits.
    public var waitingCount: Int { pools.waitingCount + coordination.waitingCount }

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

    private mutating func schedule(_ key: StoreKey, _ item: Item) {
        expiries.push(key, deadline: item.expiresAt, generation: item.generation)
        let liveCount = items.count
        let items = self.items
        expiries.compactIfNeeded(liveCount: liveCount) { entry in
            items[entry.id].map { $0.generation == entry.generation && $0.expiresAt == entry.deadline } ?? false
        }
    }

    /// Whether a queued deadline is still the item's current one (a sliding TTL moves it without a new version).
    private func isLive(_ entry: ExpiryQueue<StoreKey>.Entry) -> Bool {
        guard let item = items[entry.id] else { return false }
        return item.generation == entry.generation && item.expiresAt == entry.deadline
    }

    @discardableResult
    private mutating func remove(_ key: StoreKey) -> Item? {
        guard let item = items.removeValue(forKey: key) else { return nil }
        approximateBytes -= key.text.utf8.count + Self.itemOverhead + item.count
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
