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

    struct Barrier: Sendable {
        var parties: Int
        var arrived: [Waiter] = []
    }

    private(set) var claims: [String: Claim] = [:]
    private var keyWaiters: [String: [Waiter]] = [:]
    private var barriers: [String: Barrier] = [:]
    /// Where each waiter waits, so a timeout or a disconnect can find it.
    private var waiting: [UInt64: (key: String, kind: Kind)] = [:]
    private var claimExpiries = ExpiryQueue<String>()
    private var nextID: UInt64 = 0

    enum Kind: Sendable { case key, barrier }

    mutating func newID() -> UInt64 {
        nextID += 1
        return nextID
    }

    // MARK: - Waits for a key

    mutating func waitForKey(_ key: String, owner: OwnerID, claimTTL: Int64?) -> UInt64 {
        let id = newID()
        keyWaiters[key, default: []].append(Waiter(id: id, owner: owner, claimTTL: claimTTL))
        waiting[id] = (key, .key)
        return id
    }

    /// The key now has a value: every waiter gets it, and any claim on it is settled.
    mutating func keySet(_ key: String, value: Store.Value, version: UInt64) -> [Wakeup] {
        guard !claims.isEmpty || !keyWaiters.isEmpty else { return [] }  // the common case: nobody waits
        claims.removeValue(forKey: key)
        let waiters = keyWaiters.removeValue(forKey: key) ?? []
        for waiter in waiters { waiting.removeValue(forKey: waiter.id) }
        return waiters.map { .value(waiter: $0.id, key: key, value: value, version: version) }
    }

    // MARK: - Claims

    /// Grants the claim on `key` unless someone holds it. Lapsed claims must be expired first (by the caller, who
    /// also delivers the wakeups that expiring produces).
    mutating func claim(_ key: String, owner: OwnerID, ttl: Int64, now: Int64) -> UInt64? {
        guard claims[key] == nil else { return nil }
        let token = newID()
        claims[key] = Claim(owner: owner, token: token, expiresAt: now + ttl)
        claimExpiries.push(key, deadline: now + ttl, generation: token)
        return token
    }

    /// Gives a claim up (its computation failed, it lapsed, or its owner went away): the first claim waiter takes
    /// it over.
    mutating func unclaim(_ key: String, token: UInt64?, now: Int64) -> [Wakeup] {
        guard let claim = claims[key], token == nil || claim.token == token else { return [] }
        claims.removeValue(forKey: key)
        return handOver(key, now: now)
    }

    private mutating func handOver(_ key: String, now: Int64) -> [Wakeup] {
        guard var waiters = keyWaiters[key],
            let position = waiters.firstIndex(where: { $0.claimTTL != nil })
        else { return [] }
        let next = waiters.remove(at: position)
        keyWaiters[key] = waiters.isEmpty ? nil : waiters
        waiting.removeValue(forKey: next.id)
        let token = newID()
        claims[key] = Claim(owner: next.owner, token: token, expiresAt: now + next.claimTTL!)
        claimExpiries.push(key, deadline: now + next.claimTTL!, generation: token)
        return [.claimed(waiter: next.id, key: key, token: token)]
    }

    mutating func expireClaims(now: Int64) -> [Wakeup] {
        var wakeups: [Wakeup] = []
        while let entry = claimExpiries.popDue(at: now) {
            guard claims[entry.id]?.token == entry.generation else { continue }
            wakeups += unclaim(entry.id, token: entry.generation, now: now)
        }
        return wakeups
    }

    // MARK: - Barriers

    mutating func arrive(_ key: String, parties: Int, owner: OwnerID) throws(BrokerError) -> (UInt64, [Wakeup]) {
        var barrier = barriers[key] ?? Barrier(parties: parties)
        guard barrier.parties == parties else {
            throw BrokerError(.invalidRequest, "barrier \(key) waits for \(barrier.parties) parties, not \(parties)")
        }
        let id = newID()
        barrier.arrived.append(Waiter(id: id, owner: owner, claimTTL: nil))
        guard barrier.arrived.count >= parties else {
            barriers[key] = barrier
            waiting[id] = (key, .barrier)
            return (id, [])
        }
        barriers.removeValue(forKey: key)
        for waiter in barrier.arrived { waiting.removeValue(forKey: waiter.id) }
        return (id, barrier.arrived.map { .barrierReleased(waiter: $0.id, key: key, parties: parties) })
    }

    // MARK: - Ending waits

    /// Ends a wait (its deadline passed).
    /// - Returns: Whether it was still waiting.
    mutating func cancel(_ waiter: UInt64) -> Bool {
        guard let place = waiting.removeValue(forKey: waiter) else { return false }
        switch place.kind {
        case .key:
            keyWaiters[place.key]?.removeAll { $0.id == waiter }
            if keyWaiters[place.key]?.isEmpty == true { keyWaiters.removeValue(forKey: place.key) }
        case .barrier:
            barriers[place.key]?.arrived.removeAll { $0.id == waiter }
            if barriers[place.key]?.arrived.isEmpty == true { barriers.removeValue(forKey: place.key) }
        }
        return true
    }

    /// An owner's connection closed: its waits end and its claims pass to the next waiter.
    mutating func ownerGone(_ owner: OwnerID, now: Int64) -> [Wakeup] {
        let mine = waiting.keys.filter { id in
            guard let place = waiting[id] else { return false }
            switch place.kind {
            case .key: return keyWaiters[place.key]?.contains { $0.id == id && $0.owner == owner } == true
            case .barrier: return barriers[place.key]?.arrived.contains { $0.id == id && $0.owner == owner } == true
            }
        }
        for id in mine { _ = cancel(id) }
        var wakeups: [Wakeup] = []
        for (key, claim) in claims where claim.owner == owner {
            wakeups += unclaim(key, token: claim.token, now: now)
        }
        return wakeups
    }
}
