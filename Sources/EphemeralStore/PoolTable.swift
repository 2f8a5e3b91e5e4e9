import EphemeralWire

/// Who holds or waits for a pool item: a connection, so a worker that dies gives everything back at once.
public typealias OwnerID = UInt64

/// A granted pool lease.
public struct PoolGrant: Sendable, Equatable {
    /// The pool's name.
    public var pool: String
    /// The item's index in the pool.
    public var index: Int
    /// Increases with every grant in the pool: a holder can prove its grant is the current one.
    public var fence: UInt64
    /// The item as JSON, for pools defined by items; `nil` for pools defined by capacity.
    public var item: [UInt8]?
    /// When the lease lapses unless renewed, in epoch milliseconds.
    public var expiresAt: Int64
}

/// A waiter that got its item because another was released, expired or given back by a disconnect.
public struct WaiterGrant: Sendable, Equatable {
    /// The waiter, as returned by ``Store/leasePool(_:owner:wait:ttl:now:)``.
    public var waiter: UInt64
    /// What it was granted.
    public var grant: PoolGrant
}

/// The outcome of asking for a pool item.
public enum PoolLeaseOutcome: Sendable, Equatable {
    /// Granted at once.
    case granted(PoolGrant)
    /// Queued first come, first served; the grant comes later as a ``WaiterGrant`` with this waiter ID.
    case queued(waiter: UInt64, deadline: Int64)
}

/// Per-pool figures for the end-of-run summary.
public struct PoolSummary: Sendable, Equatable {
    /// The pool's name.
    public var pool: String
    /// How many items it has.
    public var capacity: Int
    /// Items held now.
    public var held: Int
    /// Callers waiting now.
    public var waiting: Int
    /// Leases granted.
    public var grants: Int
    /// Grants that had to wait.
    public var waits: Int
    /// The longest wait, in milliseconds.
    public var longestWait: Int64
    /// The most items held at once.
    public var peakHolders: Int
    /// Leases given back because their holder's connection closed.
    public var releasedByDisconnect: Int
    /// Leases that lapsed at their TTL.
    public var expired: Int
    /// Waits that ran out.
    public var timedOut: Int
}

/// Pools of exclusive items: capacity or named items, FIFO waiting, connection-bound holders, fences, TTL backstop.
///
/// Every operation on one waiter is O(1) (amortised): a waiter that ends is only forgotten in its pool's
/// ``Pool/queued`` set, and its entry in the queue is skipped when it reaches the head (or dropped when ended
/// entries outnumber live ones), so many waits ending at once cost linear time.
struct PoolTable: Sendable {
    struct Holder: Sendable {
        var owner: OwnerID
        var fence: UInt64
        var expiresAt: Int64
        var ttl: Int64
    }

    struct Waiter: Sendable {
        var id: UInt64
        var owner: OwnerID
        var ttl: Int64
        var since: Int64
    }

    struct Pool: Sendable {
        var items: [[UInt8]]?
        var capacity: Int
        var free = MinHeap()
        var holders: [Int: Holder] = [:]
        /// Waiters in arrival order, from `waitersHead` on; entries of ended waits stay until they are skipped.
        var waiters: [Waiter] = []
        var waitersHead = 0
        /// The waiters still waiting, and whose they are.
        var queued: [UInt64: OwnerID] = [:]
        var nextFence: UInt64 = 0
        var summary: PoolSummary

        init(name: String, capacity: Int, items: [[UInt8]]?) {
            self.capacity = capacity
            self.items = items
            for index in 0..<capacity { free.insert(index) }
            summary = PoolSummary(
                pool: name, capacity: capacity, held: 0, waiting: 0, grants: 0, waits: 0,
                longestWait: 0, peakHolders: 0, releasedByDisconnect: 0, expired: 0, timedOut: 0)
        }

        var waitingCount: Int { queued.count }

        /// Takes the first waiter still waiting off the queue.
        mutating func popWaiter() -> Waiter? {
            while waitersHead < waiters.count {
                let waiter = waiters[waitersHead]
                waitersHead += 1
                if queued.removeValue(forKey: waiter.id) != nil {
                    compact()
                    return waiter
                }
            }
            compact()
            return nil
        }

        /// Drops what lies before the head, and ended entries once they outnumber live ones.
        mutating func compact() {
            if waitersHead > 64, waitersHead * 2 > waiters.count {
                waiters.removeFirst(waitersHead)
                waitersHead = 0
            }
            if waiters.count - waitersHead > 2 * queued.count + 64 {
                waiters = waiters[waitersHead...].filter { queued[$0.id] != nil }
                waitersHead = 0
            }
        }
    }

    /// A waiter, by its pool.
    struct WaiterKey: Hashable, Sendable {
        var pool: StoreKey
        var waiter: UInt64
    }

    private(set) var pools: [StoreKey: Pool] = [:]
    private var owned: [OwnerID: Swift.Set<HolderKey>] = [:]
    /// Each owner's waits, so its disconnect ends them without visiting anyone else's.
    private var waitsByOwner: [OwnerID: Swift.Set<WaiterKey>] = [:]
    private var expiries = ExpiryQueue<HolderKey>()
    private var nextWaiter: UInt64 = 0

    struct HolderKey: Hashable, Sendable {
        var pool: StoreKey
        var index: Int
    }

    /// The most items one pool may have.
    static let maxCapacity = 1_000_000

    mutating func define(_ name: String, capacity: Int?, items: [[UInt8]]?) throws(BrokerError) -> Int {
        let size = items?.count ?? capacity ?? 0
        guard !name.isEmpty else { throw BrokerError(.invalidPool, "a pool needs a name") }
        guard size > 0, size <= Self.maxCapacity else {
            throw BrokerError(.invalidPool, "a pool needs between 1 and \(Self.maxCapacity) items")
        }
        let key = StoreKey(name)
        if let existing = pools[key] {
            guard existing.capacity == size, existing.items == items else {
                throw BrokerError(.poolExists, "pool \(name) is already defined differently")
            }
            return size
        }
        pools[key] = Pool(name: name, capacity: size, items: items)
        return size
    }

    mutating func lease(_ name: String, owner: OwnerID, wait: Int64, ttl: Int64, now: Int64) throws(BrokerError)
        -> (PoolLeaseOutcome, [WaiterGrant])
    {
        let regranted = expire(now: now)
        let key = StoreKey(name)
        guard pools[key] != nil else { throw BrokerError(.unknownPool, "no pool named \(name)") }
        // Never past a waiter: an item is free for a newcomer only when nobody queues for it.
        if pools[key]!.waitingCount == 0, let grant = grant(key, owner: owner, ttl: ttl, now: now, waitedSince: nil) {
            return (.granted(grant), regranted)
        }
        guard wait > 0 else {
            throw BrokerError(.poolExhausted, "every item of pool \(name) is held")
        }
        nextWaiter += 1
        pools[key]!.waiters.append(Waiter(id: nextWaiter, owner: owner, ttl: ttl, since: now))
        pools[key]!.queued[nextWaiter] = owner
        pools[key]!.summary.waits += 1
        waitsByOwner[owner, default: []].insert(WaiterKey(pool: key, waiter: nextWaiter))
        return (.queued(waiter: nextWaiter, deadline: now + wait), regranted)
    }

    /// Gives up on a wait whose deadline passed (or that was cancelled).
    /// - Returns: Whether the waiter was still waiting (and so must be answered `timeout`).
    mutating func cancelWait(_ name: String, waiter: UInt64) -> Bool {
        let key = StoreKey(name)
        guard let owner = pools[key]?.queued.removeValue(forKey: waiter) else { return false }
        pools[key]!.summary.timedOut += 1
        pools[key]!.compact()
        forget(WaiterKey(pool: key, waiter: waiter), of: owner)
        return true
    }

    mutating func renew(_ name: String, index: Int, fence: UInt64, ttl: Int64, now: Int64) throws(BrokerError)
        -> (Int64, [WaiterGrant])
    {
        let regranted = expire(now: now)
        let key = try holderKey(name, index: index, fence: fence)
        var holder = pools[key.pool]!.holders[index]!
        holder.expiresAt = now + ttl
        holder.ttl = ttl
        pools[key.pool]!.holders[index] = holder
        expiries.push(key, deadline: holder.expiresAt, generation: holder.fence)
        return (holder.expiresAt, regranted)
    }

    mutating func release(_ name: String, index: Int, fence: UInt64, now: Int64) throws(BrokerError) -> [WaiterGrant] {
        var regranted = expire(now: now)
        let key = try holderKey(name, index: index, fence: fence)
        regranted += free(key, now: now)
        return regranted
    }

    /// Everything an owner holds goes back, and its waits end: its connection closed.
    mutating func releaseAll(owner: OwnerID, now: Int64) -> (released: Int, regranted: [WaiterGrant]) {
        var regranted = expire(now: now)
        for wait in waitsByOwner.removeValue(forKey: owner) ?? [] {
            pools[wait.pool]?.queued.removeValue(forKey: wait.waiter)
            pools[wait.pool]?.compact()
        }
        let keys = owned.removeValue(forKey: owner) ?? []
        for key in keys {
            pools[key.pool]?.summary.releasedByDisconnect += 1
            regranted += free(key, now: now)
        }
        return (keys.count, regranted)
    }

    /// Lapses leases past their TTL and hands their items to waiters.
    mutating func expire(now: Int64) -> [WaiterGrant] {
        var regranted: [WaiterGrant] = []
        while let entry = expiries.popDue(at: now) {
            guard let holder = pools[entry.id.pool]?.holders[entry.id.index], holder.fence == entry.generation,
                holder.expiresAt <= now
            else { continue }
            pools[entry.id.pool]!.summary.expired += 1
            regranted += free(entry.id, now: now)
        }
        return regranted
    }

    /// When the earliest lease lapses, if any (perhaps a renewed one's old deadline: expiring then finds nothing).
    var nextDeadline: Int64? { expiries.nextDeadline }

    func summaries() -> [PoolSummary] {
        pools.values.map { pool in
            var summary = pool.summary
            summary.held = pool.holders.count
            summary.waiting = pool.waitingCount
            return summary
        }.sorted { $0.pool.utf8.lexicographicallyPrecedes($1.pool.utf8) }
    }

    var heldCount: Int { pools.values.reduce(0) { $0 + $1.holders.count } }

    /// How many pool leases are waiting for an item.
    var waitingCount: Int { pools.values.reduce(0) { $0 + $1.waitingCount } }

    // MARK: - Internals

    private mutating func forget(_ wait: WaiterKey, of owner: OwnerID) {
        waitsByOwner[owner]?.remove(wait)
        if waitsByOwner[owner]?.isEmpty == true { waitsByOwner.removeValue(forKey: owner) }
    }

    private func holderKey(_ name: String, index: Int, fence: UInt64) throws(BrokerError) -> HolderKey {
        let key = StoreKey(name)
        guard let pool = pools[key] else { throw BrokerError(.unknownPool, "no pool named \(name)") }
        guard let holder = pool.holders[index] else {
            throw BrokerError(.notHolder, "item \(index) of pool \(name) is not leased")
        }
        guard holder.fence == fence else {
            throw BrokerError(.staleFence, "fence \(fence) is not the current grant of item \(index) (\(holder.fence))")
        }
        return HolderKey(pool: key, index: index)
    }

    private mutating func grant(_ name: StoreKey, owner: OwnerID, ttl: Int64, now: Int64, waitedSince: Int64?)
        -> PoolGrant?
    {
        guard let index = pools[name]!.free.popMin() else { return nil }
        var pool = pools[name]!
        pool.nextFence += 1
        let holder = Holder(owner: owner, fence: pool.nextFence, expiresAt: now + ttl, ttl: ttl)
        pool.holders[index] = holder
        pool.summary.grants += 1
        pool.summary.peakHolders = max(pool.summary.peakHolders, pool.holders.count)
        if let waitedSince { pool.summary.longestWait = max(pool.summary.longestWait, now - waitedSince) }
        let item = pool.items?[index]
        pools[name] = pool
        let key = HolderKey(pool: name, index: index)
        owned[owner, default: []].insert(key)
        expiries.push(key, deadline: holder.expiresAt, generation: holder.fence)
        return PoolGrant(pool: name.text, index: index, fence: holder.fence, item: item, expiresAt: holder.expiresAt)
    }

    /// Frees an item and grants it to the first waiter, if any.
    private mutating func free(_ key: HolderKey, now: Int64) -> [WaiterGrant] {
        guard let holder = pools[key.pool]?.holders.removeValue(forKey: key.index) else { return [] }
        owned[holder.owner]?.remove(key)
        if owned[holder.owner]?.isEmpty == true { owned.removeValue(forKey: holder.owner) }
        pools[key.pool]!.free.insert(key.index)
        guard let waiter = pools[key.pool]!.popWaiter() else { return [] }
        forget(WaiterKey(pool: key.pool, waiter: waiter.id), of: waiter.owner)
        guard let grant = grant(key.pool, owner: waiter.owner, ttl: waiter.ttl, now: now, waitedSince: waiter.since)
        else { return [] }
        return [WaiterGrant(waiter: waiter.id, grant: grant)]
    }
}
