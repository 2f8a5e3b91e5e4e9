import EphemeralWire

/// Someone whose wait ended because of another request: what to tell them.
public enum Wakeup: Sendable, Equatable {
    /// A waiter for a key (a `wait`, or a `claim` waiting on another's computation) gets the value.
    case value(waiter: UInt64, key: String, value: Store.Value, version: UInt64)
    /// A `claim` waiter becomes the one to compute the key.
    case claimed(waiter: UInt64, key: String, token: UInt64)
    /// A barrier filled: every party goes on.
    case barrierReleased(waiter: UInt64, key: String, parties: Int)
}

/// The outcome of `claim`: compute-once for a key.
public enum ClaimOutcome: Sendable, Equatable {
    /// The key has a value: use it.
    case value(Store.Value, version: UInt64)
    /// The caller computes the value (then `set`s the key, or `unclaim`s on failure).
    case claimed(token: UInt64)
    /// The value is usable but about to expire: use it, and refresh it in the background.
    case refresh(Store.Value, version: UInt64, token: UInt64)
    /// Someone else is computing: the reply comes later, as a ``Wakeup``.
    case queued(waiter: UInt64, deadline: Int64)
}

/// Waits on keys, compute-once claims and barriers: the state behind `wait`, `claim` and `barrier`.
///
/// Every operation on one waiter is O(1) (amortised): a waiter that ends (its deadline passed, its connection
/// closed) is only forgotten in ``waiting``, and its entry in its key's queue is skipped when the queue is next
/// read, or dropped when dead entries outnumber live ones. So many waiters ending at once cost linear time, not
/// quadratic.
struct CoordinationTable: Sendable {
    struct Claim: Sendable {
        var owner: OwnerID
        var token: UInt64
        var expiresAt: Int64
    }

    struct Waiter: Sendable {
        var id: UInt64
        var owner: OwnerID
        /// For claim waiters: how long a claim they are granted lasts.
        var claimTTL: Int64?
    }

    /// The waiters of one key or barrier in arrival order, with entries of ended waiters left in place.
    struct Queue: Sendable {
        var entries: [Waiter] = []
        /// How many entries are of waiters still waiting.
        var live = 0
    }

    struct Barrier: Sendable {
        var parties: Int
        var arrived = Queue()
    }

    /// Where a waiter waits, so a timeout or a disconnect can find it.
    struct Place: Sendable {
        var key: StoreKey
        var kind: Kind
        var owner: OwnerID
    }

    private(set) var claims: [StoreKey: Claim] = [:]
    private var keyWaiters: [StoreKey: Queue] = [:]
    private var barriers: [StoreKey: Barrier] = [:]
    /// Every waiter still waiting: the one source of truth for whether an entry in a queue is live.
    private var waiting: [UInt64: Place] = [:]
    /// The waiters of each owner, so its disconnect ends them without visiting anyone else's.
    private var waitersByOwner: [OwnerID: Swift.Set<UInt64>] = [:]
    private var claimExpiries = ExpiryQueue<StoreKey>()
    private var nextID: UInt64 = 0

    enum Kind: Sendable { case key, barrier }

    mutating func newID() -> UInt64 {
        nextID += 1
        return nextID
    }

    /// How many waits (`wait`, `claim` and `barrier`) are waiting.
    var waitingCount: Int { waiting.count }

    // MARK: - Waits for a key

    mutating func waitForKey(_ key: StoreKey, owner: OwnerID, claimTTL: Int64?) -> UInt64 {
        let id = newID()
        keyWaiters[key, default: Queue()].entries.append(Waiter(id: id, owner: owner, claimTTL: claimTTL))
        keyWaiters[key]!.live += 1
        enter(id, Place(key: key, kind: .key, owner: owner))
        return id
    }

    /// The key now has a value: its waiters get it (the first `limit` of them, in arrival order, when the value
    /// may be read only so often; the others wait on for a later value), and any claim on it is settled.
    mutating func keySet(_ key: StoreKey, value: Store.Value, version: UInt64, limit: Int? = nil) -> [Wakeup] {
        guard !claims.isEmpty || !keyWaiters.isEmpty else { return [] }  // the common case: nobody waits
        claims.removeValue(forKey: key)
        guard let queue = keyWaiters.removeValue(forKey: key) else { return [] }
        var woken: [Wakeup] = []
        var rest = Queue()
        for waiter in queue.entries where waiting[waiter.id] != nil {
            if let limit, woken.count >= limit {
                rest.entries.append(waiter)
                rest.live += 1
            } else {
                leave(waiter.id)
                woken.append(.value(waiter: waiter.id, key: key.text, value: value, version: version))
            }
        }
        if rest.live > 0 { keyWaiters[key] = rest }
        return woken
    }

    // MARK: - Claims

    /// Grants the claim on `key` unless someone holds it. Lapsed claims must be expired first (by the caller, who
    /// also delivers the wakeups that expiring produces).
    mutating func claim(_ key: StoreKey, owner: OwnerID, ttl: Int64, now: Int64) -> UInt64? {
        guard claims[key] == nil else { return nil }
        let token = newID()
        claims[key] = Claim(owner: owner, token: token, expiresAt: now + ttl)
        claimExpiries.push(key, deadline: now + ttl, generation: token)
        return token
    }

    /// Gives a claim up (its computation failed, it lapsed, or its owner went away): the first claim waiter takes
    /// it over.
    mutating func unclaim(_ key: StoreKey, token: UInt64?, now: Int64) -> [Wakeup] {
        guard let claim = claims[key], token == nil || claim.token == token else { return [] }
        claims.removeValue(forKey: key)
        return handOver(key, now: now)
    }

    /// The first claim waiter of an unclaimed key becomes the one to compute it (a read-limited value was used up
    /// before it reached them, or the claim was given up).
    mutating func handOver(_ key: StoreKey, now: Int64) -> [Wakeup] {
        guard claims[key] == nil, var queue = keyWaiters[key],
            let position = queue.entries.firstIndex(where: { $0.claimTTL != nil && waiting[$0.id] != nil })
        else { return [] }
        let next = queue.entries.remove(at: position)
        queue.live -= 1
        keyWaiters[key] = queue.live == 0 ? nil : queue
        leave(next.id)
        let token = newID()
        claims[key] = Claim(owner: next.owner, token: token, expiresAt: now + next.claimTTL!)
        claimExpiries.push(key, deadline: now + next.claimTTL!, generation: token)
        return [.claimed(waiter: next.id, key: key.text, token: token)]
    }

    mutating func expireClaims(now: Int64) -> [Wakeup] {
        var wakeups: [Wakeup] = []
        while let entry = claimExpiries.popDue(at: now) {
            guard claims[entry.id]?.token == entry.generation else { continue }
            wakeups += unclaim(entry.id, token: entry.generation, now: now)
        }
        return wakeups
    }

    /// When the earliest claim lapses, if any.
    var nextClaimDeadline: Int64? { claimExpiries.nextDeadline }

    // MARK: - Barriers

    mutating func arrive(_ key: StoreKey, parties: Int, owner: OwnerID) throws(BrokerError) -> (UInt64, [Wakeup]) {
        var barrier = barriers[key] ?? Barrier(parties: parties)
        guard barrier.parties == parties else {
            throw BrokerError(.invalidRequest, "barrier \(key.text) waits for \(barrier.parties) parties, not \(parties)")
        }
        let id = newID()
        barrier.arrived.entries.append(Waiter(id: id, owner: owner, claimTTL: nil))
        barrier.arrived.live += 1
        enter(id, Place(key: key, kind: .barrier, owner: owner))
        guard barrier.arrived.live >= parties else {
            barriers[key] = barrier
            return (id, [])
        }
        barriers.removeValue(forKey: key)
        let parties = barrier.arrived.entries.filter { waiting[$0.id] != nil }
        for waiter in parties { leave(waiter.id) }
        return (id, parties.map { .barrierReleased(waiter: $0.id, key: key.text, parties: barrier.parties) })
    }

    // MARK: - Ending waits

    /// Ends a wait (its deadline passed, or it was cancelled).
    /// - Returns: Whether it was still waiting.
    mutating func cancel(_ waiter: UInt64) -> Bool {
        guard let place = leave(waiter) else { return false }
        switch place.kind {
        case .key:
            guard var queue = keyWaiters[place.key] else { return true }
            queue.live -= 1
            keyWaiters[place.key] = queue.live == 0 ? nil : compacted(queue)
        case .barrier:
            guard var barrier = barriers[place.key] else { return true }
            barrier.arrived.live -= 1
            barrier.arrived = compacted(barrier.arrived)
            barriers[place.key] = barrier.arrived.live == 0 ? nil : barrier
        }
        return true
    }

    /// An owner's connection closed: its waits end and its claims pass to the next waiter.
    mutating func ownerGone(_ owner: OwnerID, now: Int64) -> [Wakeup] {
        for id in waitersByOwner[owner] ?? [] { _ = cancel(id) }
        var wakeups: [Wakeup] = []
        for (key, claim) in claims where claim.owner == owner {
            wakeups += unclaim(key, token: claim.token, now: now)
        }
        return wakeups
    }

    // MARK: - Internals

    private mutating func enter(_ id: UInt64, _ place: Place) {
        waiting[id] = place
        waitersByOwner[place.owner, default: []].insert(id)
    }

    @discardableResult
    private mutating func leave(_ id: UInt64) -> Place? {
        guard let place = waiting.removeValue(forKey: id) else { return nil }
        waitersByOwner[place.owner]?.remove(id)
        if waitersByOwner[place.owner]?.isEmpty == true { waitersByOwner.removeValue(forKey: place.owner) }
        return place
    }

    /// Drops the entries of ended waiters once they outnumber the live ones.
    private func compacted(_ queue: Queue) -> Queue {
        guard queue.entries.count > 2 * queue.live + 16 else { return queue }
        var queue = queue
        queue.entries.removeAll { waiting[$0.id] == nil }
        return queue
    }
}
