import EphemeralWire

/// The original broker's leases: per key, each worker holds the lowest integer no other live lease holds.
struct LeaseTable: Sendable {
    struct Holder: Sendable {
        var key: StoreKey
        var value: Int
        var expiresAt: Int64
        var generation: UInt64
    }

    /// The integers of one key: a watermark plus a min-heap of released integers below it.
    struct Pool: Sendable {
        var next = 0
        var free = MinHeap()
        var held = 0

        mutating func acquire() -> Int {
            held += 1
            if let lowest = free.popMin() { return lowest }
            next += 1
            return next - 1
        }

        mutating func release(_ value: Int) {
            held -= 1
            free.insert(value)
        }
    }

    private var holders: [StoreKey: Holder] = [:]
    private var pools: [StoreKey: Pool] = [:]
    private var expiries = ExpiryQueue<StoreKey>()
    private var nextGeneration: UInt64 = 0
    private(set) var expiredTotal = 0

    mutating func lease(key: String, workerId: String, ttl: Int64, now: Int64) throws(BrokerError) -> Int {
        let key = StoreKey(key)
        let workerId = StoreKey(workerId)
        expire(now: now)
        if var holder = holders[workerId] {
            guard holder.key == key else {
                throw BrokerError(.workerAlreadyHasLease, "the worker holds a lease on another key")
            }
            holder.expiresAt = now + ttl
            holder.generation = generation()
            holders[workerId] = holder
            schedule(workerId, holder)
            return holder.value
        }
        let value = pools[key, default: Pool()].acquire()
        let holder = Holder(key: key, value: value, expiresAt: now + ttl, generation: generation())
        holders[workerId] = holder
        schedule(workerId, holder)
        return value
    }

    mutating func release(workerId: String, now: Int64) -> Bool {
        expire(now: now)
        guard let holder = holders.removeValue(forKey: StoreKey(workerId)) else { return false }
        free(holder)
        return true
    }

    func count(now: Int64) -> Int {
        holders.count - expiries.countDue(at: now) { holders[$0.id]?.generation == $0.generation }
    }

    @discardableResult
    mutating func expire(now: Int64) -> Int {
        var removed = 0
        while let entry = expiries.popDue(at: now) {
            guard let holder = holders[entry.id], holder.generation == entry.generation else { continue }
            holders.removeValue(forKey: entry.id)
            free(holder)
            removed += 1
        }
        expiredTotal += removed
        return removed
    }

    private mutating func free(_ holder: Holder) {
        pools[holder.key]?.release(holder.value)
        if pools[holder.key]?.held == 0 { pools.removeValue(forKey: holder.key) }
    }

    private mutating func generation() -> UInt64 {
        nextGeneration &+= 1
        return nextGeneration
    }

    private mutating func schedule(_ workerId: StoreKey, _ holder: Holder) {
        expiries.push(workerId, deadline: holder.expiresAt, generation: holder.generation)
        let holders = self.holders
        expiries.compactIfNeeded(liveCount: holders.count) { holders[$0.id]?.generation == $0.generation }
    }
}

/// A binary min-heap of integers.
struct MinHeap: Sendable {
    private var storage: [Int] = []

    mutating func insert(_ value: Int) {
        storage.append(value)
        var child = storage.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard storage[child] < storage[parent] else { break }
            storage.swapAt(child, parent)
            child = parent
        }
    }

    mutating func popMin() -> Int? {
        guard let first = storage.first else { return nil }
        let last = storage.removeLast()
        guard !storage.isEmpty else { return first }
        storage[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < storage.count, storage[left] < storage[smallest] { smallest = left }
            if right < storage.count, storage[right] < storage[smallest] { smallest = right }
            guard smallest != parent else { break }
            storage.swapAt(parent, smallest)
            parent = smallest
        }
        return first
    }
}
