import EphemeralStore
import EphemeralWire
import Testing

@Suite("The store's promises at their edges")
struct StoreEdgeTests {
    let t0: Int64 = 50_000

    func set(_ store: inout Store, _ key: String, _ json: String, maxReads: Int? = nil) throws -> Store.SetResult {
        var command = SetCommand(key: key, value: Array(json.utf8), ttl: 60_000)
        command.maxReads = maxReads
        return try store.set(command, now: t0)
    }

    func woken(_ wakeups: [Wakeup]) -> [UInt64] {
        wakeups.map {
            switch $0 {
            case .value(let waiter, _, _, _), .claimed(let waiter, _, _), .barrierReleased(let waiter, _, _): waiter
            }
        }
    }

    /// A read-limited value wakes as many waiters as it may be read; the rest wait on, and a later write wakes
    /// them (they used to be dropped from the table, unanswered until their deadline).
    @Test func aReadLimitedSetWakesSomeWaitersAndALaterSetWakesTheRest() throws {
        var store = Store()
        let waiters = try (1...4).map { try store.waitForKey("k", owner: $0, wait: 1000, now: t0).waiter! }
        #expect(woken(try set(&store, "k", "1", maxReads: 2).wakeups) == Array(waiters.prefix(2)))
        #expect(store.waitingCount == 2)
        #expect(woken(try set(&store, "k", "2", maxReads: 1).wakeups) == [waiters[2]])
        #expect(woken(try set(&store, "k", "3").wakeups) == [waiters[3]])
        #expect(store.waitingCount == 0)
    }

    /// When a read-limited value is used up before it reaches a waiting `claim`, that claim computes it again.
    @Test func aUsedUpValueHandsTheClaimToTheNextClaimWaiter() throws {
        var store = Store()
        guard case .claimed(let token) = try store.claim("login", owner: 1, ttl: 1000, wait: 0, refreshBefore: nil, now: t0).0
        else { Issue.record("the first claim computes")
            return }
        _ = token
        guard case .queued(let first, _) = try store.claim("login", owner: 2, ttl: 1000, wait: 1000, refreshBefore: nil, now: t0).0,
            case .queued(let second, _) = try store.claim("login", owner: 3, ttl: 1000, wait: 1000, refreshBefore: nil, now: t0).0
        else { Issue.record("later claims wait")
            return }
        let wakeups = try set(&store, "login", #""token""#, maxReads: 1).wakeups
        #expect(wakeups.count == 2)
        #expect(woken(wakeups) == [first, second])
        if case .claimed = wakeups.last {} else { Issue.record("the second waiter must compute: \(wakeups)") }
    }

    /// A request that does not wait never takes an item a waiter queues for: at the lapse, the waiter has it.
    @Test func aRequestThatDoesNotWaitNeverTakesAQueuedWaitersItem() throws {
        var store = Store()
        _ = try store.definePool("p", capacity: 1, items: nil)
        _ = try store.leasePool("p", owner: 1, wait: nil, ttl: 100, now: t0)
        guard case .queued(let waiter, _) = try store.leasePool("p", owner: 2, wait: 10_000, ttl: 1000, now: t0).0 else {
            Issue.record("the second lease waits")
            return
        }
        #expect(store.nextHandoverDeadline == t0 + 100)
        #expect(code { _ = try store.leasePool("p", owner: 3, wait: nil, ttl: 1000, now: t0 + 100) } == "pool_exhausted")
        let summary = store.poolSummaries().first
        #expect(summary?.held == 1 && summary?.waiting == 0 && summary?.expired == 1)
        // The lapse found by the third request granted the waiter (the broker delivers `regranted` before it throws).
        var again = store
        let released = again.releaseAll(owner: 2, now: t0 + 100)
        #expect(released.released == 1, "the waiter \(waiter) held the item")
    }

    /// Canonically equivalent strings are equal Swift `String`s; as keys they are distinct, as in the original.
    @Test(arguments: [("caf\u{E9}", "cafe\u{301}"), ("\u{212A}", "K"), ("\u{212B}", "\u{C5}")])
    func keysWorkerIdsPoolsAndClaimsAreComparedAsBytes(one: String, other: String) throws {
        #expect(one == other, "Swift String equality makes them one")
        #expect(Array(one.utf8) != Array(other.utf8))
        var store = Store()
        _ = try set(&store, one, "1")
        _ = try set(&store, other, "2")
        #expect(try store.get(one, now: t0).json == Array("1".utf8))
        #expect(try store.get(other, now: t0).json == Array("2".utf8))
        #expect(store.list(now: t0).map { Array($0.key.utf8) }.sorted { $0.lexicographicallyPrecedes($1) }
            == [Array(one.utf8), Array(other.utf8)].sorted { $0.lexicographicallyPrecedes($1) })
        store.delete(one)
        #expect(try store.get(other, now: t0).json == Array("2".utf8))
        // The original integer leases: two workers, two integers.
        #expect(try store.lease(key: "slots", workerId: one, ttl: nil, now: t0) == 0)
        #expect(try store.lease(key: "slots", workerId: other, ttl: nil, now: t0) == 1)
        let released = store.release(workerId: one, now: t0)
        #expect(released)
        #expect(try store.lease(key: "slots", workerId: other, ttl: nil, now: t0) == 1, "its own lease, renewed")
        // Pools, claims and barriers.
        #expect(try store.definePool(one, capacity: 1, items: nil) == 1)
        #expect(try store.definePool(other, capacity: 2, items: nil) == 2, "another pool, not a redefinition")
        guard case .claimed = try store.claim("c" + one, owner: 1, ttl: 1000, wait: 0, refreshBefore: nil, now: t0).0,
            case .claimed = try store.claim("c" + other, owner: 2, ttl: 1000, wait: 0, refreshBefore: nil, now: t0).0
        else { Issue.record("each key has a claim of its own")
            return }
        #expect(try store.arrive("b" + one, parties: 2, owner: 1, wait: 1000).wakeups.isEmpty)
        #expect(try store.arrive("b" + other, parties: 2, owner: 2, wait: 1000).wakeups.isEmpty, "another barrier")
    }

    /// Ending a wait is O(1): 20,000 waiters timing out one by one, and 20,000 owners disconnecting, take linear
    /// time (this was quadratic: a linear search of the queue per waiter). The counts prove the state, not the time.
    @Test func manyWaitsEndingAtOnceLeaveNothingBehind() throws {
        var store = Store()
        _ = try store.definePool("p", capacity: 1, items: nil)
        guard case .granted = try store.leasePool("p", owner: 0, wait: nil, ttl: 60_000, now: t0).0 else {
            Issue.record("the first lease is granted")
            return
        }
        var poolWaiters: [UInt64] = []
        for owner in 1...20_000 {
            guard case .queued(let waiter, _) = try store.leasePool("p", owner: OwnerID(owner), wait: 1000, ttl: 1000, now: t0).0
            else { Issue.record("queued")
            return }
            poolWaiters.append(waiter)
            _ = try store.waitForKey("k", owner: OwnerID(owner), wait: 1000, now: t0)
        }
        #expect(store.waitingCount == 40_000)
        var cancelled = 0
        for waiter in poolWaiters.prefix(10_000) where store.cancelPoolWait("p", waiter: waiter) { cancelled += 1 }
        #expect(cancelled == 10_000)
        for owner in 1...20_000 { _ = store.releaseAll(owner: OwnerID(owner), now: t0) }
        #expect(store.waitingCount == 0)
        #expect(store.poolSummaries().first?.timedOut == 10_000)
        let lastRelease = store.releaseAll(owner: 0, now: t0)
        #expect(lastRelease.regranted.isEmpty, "no waiter left to grant")
        guard case .granted = try store.leasePool("p", owner: 9, wait: nil, ttl: 60_000, now: t0).0 else {
            Issue.record("the item is free again")
            return
        }
    }
}
