import EphemeralStore
import EphemeralWire
import Testing

@Suite("Pools on a fake clock")
struct PoolTests {
    let t0: Int64 = 10_000

    func granted(_ outcome: (PoolLeaseOutcome, [WaiterGrant])) -> PoolGrant? {
        if case .granted(let grant) = outcome.0 { return grant }
        return nil
    }

    func waiter(_ outcome: (PoolLeaseOutcome, [WaiterGrant])) -> UInt64? {
        if case .queued(let waiter, _) = outcome.0 { return waiter }
        return nil
    }

    @Test func itemsFencesAndFirstComeFirstServed() throws {
        var store = Store()
        try store.definePool(
            "accounts", capacity: nil, items: [Array(#"{"user":"a"}"#.utf8), Array(#"{"user":"b"}"#.utf8)])
        let first = try #require(granted(try store.leasePool("accounts", owner: 1, wait: 0, ttl: 60_000, now: t0)))
        let second = try #require(granted(try store.leasePool("accounts", owner: 2, wait: 0, ttl: 60_000, now: t0)))
        #expect(first.index == 0 && first.item == Array(#"{"user":"a"}"#.utf8) && first.fence == 1)
        #expect(second.index == 1 && second.fence == 2)
        #expect(
            code { _ = try store.leasePool("accounts", owner: 3, wait: 0, ttl: 60_000, now: t0) } == "pool_exhausted")
        let w3 = try #require(waiter(try store.leasePool("accounts", owner: 3, wait: 5000, ttl: 60_000, now: t0)))
        let w4 = try #require(waiter(try store.leasePool("accounts", owner: 4, wait: 5000, ttl: 60_000, now: t0 + 1)))
        let afterSecond = try store.releasePool("accounts", index: 1, fence: 2, now: t0 + 10)
        #expect(afterSecond.map(\.waiter) == [w3], "the first waiter is served first")
        #expect(afterSecond.first?.grant.index == 1 && afterSecond.first?.grant.fence == 3)
        let afterFirst = try store.releasePool("accounts", index: 0, fence: 1, now: t0 + 20)
        #expect(afterFirst.map(\.waiter) == [w4])
        let summary = try #require(store.poolSummaries().first)
        #expect(summary.grants == 4 && summary.waits == 2 && summary.longestWait == 19 && summary.peakHolders == 2)
    }

    @Test func waitsTimeOutAndLeaveTheQueue() throws {
        var store = Store()
        try store.definePool("p", capacity: 1, items: nil)
        let holder = try #require(granted(try store.leasePool("p", owner: 1, wait: nil, ttl: nil, now: t0)))
        let w2 = try #require(waiter(try store.leasePool("p", owner: 2, wait: 100, ttl: nil, now: t0)))
        let w3 = try #require(waiter(try store.leasePool("p", owner: 3, wait: 100, ttl: nil, now: t0)))
        let cancelled = store.cancelPoolWait("p", waiter: w2)
        let cancelledAgain = store.cancelPoolWait("p", waiter: w2)
        #expect(cancelled)
        #expect(!cancelledAgain, "a wait ends once")
        let next = try store.releasePool("p", index: holder.index, fence: holder.fence, now: t0 + 50)
        #expect(next.map(\.waiter) == [w3])
        #expect(store.poolSummaries().first?.timedOut == 1)
    }

    @Test func aClosedConnectionGivesEverythingBackAtOnce() throws {
        var store = Store()
        try store.definePool("a", capacity: 1, items: nil)
        try store.definePool("b", capacity: 1, items: nil)
        _ = try store.leasePool("a", owner: 7, wait: 0, ttl: 600_000, now: t0)
        _ = try store.leasePool("b", owner: 7, wait: 0, ttl: 600_000, now: t0)
        let waitingA = try #require(waiter(try store.leasePool("a", owner: 8, wait: 10_000, ttl: 1000, now: t0)))
        _ = try store.leasePool("b", owner: 7, wait: 10_000, ttl: 1000, now: t0)  // owner 7 also waits: dropped
        let outcome = store.releaseAll(owner: 7, now: t0 + 1)
        #expect(outcome.released == 2)
        #expect(outcome.regranted.map(\.waiter) == [waitingA])
        #expect(store.poolSummaries().map(\.held) == [1, 0])
        #expect(store.poolSummaries().map(\.waiting) == [0, 0])
        #expect(store.poolSummaries().map(\.releasedByDisconnect) == [1, 1])
    }

    @Test func renewExtendsAndTheTTLIsABackstop() throws {
        var store = Store()
        try store.definePool("p", capacity: 1, items: nil)
        let lease = try #require(granted(try store.leasePool("p", owner: 1, wait: 0, ttl: 100, now: t0)))
        let w = try #require(waiter(try store.leasePool("p", owner: 2, wait: 10_000, ttl: 100, now: t0)))
        #expect(try store.renewPool("p", index: 0, fence: lease.fence, ttl: 100, now: t0 + 90).0 == t0 + 190)
        let early = store.sweep(now: t0 + 150).regranted
        #expect(early.isEmpty, "renewed: still held")
        let lapsed = store.sweep(now: t0 + 190).regranted
        #expect(lapsed.map(\.waiter) == [w])
        #expect(lapsed.first?.grant.fence == lease.fence + 1)
        #expect(code { _ = try store.releasePool("p", index: 0, fence: lease.fence, now: t0 + 200) } == "stale_fence")
        #expect(
            code { _ = try store.renewPool("p", index: 0, fence: lease.fence, ttl: 100, now: t0 + 200) }
                == "stale_fence")
        #expect(store.poolSummaries().first?.expired == 1)
    }

    @Test func badRequestsAreNamedAndChangeNothing() throws {
        var store = Store()
        #expect(code { try store.definePool("p", capacity: 0, items: nil) } == "invalid_pool")
        #expect(code { try store.definePool("p", capacity: nil, items: []) } == "invalid_pool")
        try store.definePool("p", capacity: 2, items: nil)
        #expect(code { try store.definePool("p", capacity: 2, items: nil) } == nil, "the same definition again is fine")
        #expect(code { try store.definePool("p", capacity: 3, items: nil) } == "pool_exists")
        #expect(code { _ = try store.leasePool("nope", owner: 1, wait: 0, ttl: nil, now: t0) } == "unknown_pool")
        #expect(code { _ = try store.leasePool("p", owner: 1, wait: -1, ttl: nil, now: t0) } == "invalid_wait")
        #expect(code { _ = try store.leasePool("p", owner: 1, wait: 1e12, ttl: nil, now: t0) } == "invalid_wait")
        #expect(code { _ = try store.leasePool("p", owner: 1, wait: 0, ttl: -5, now: t0) } == "invalid_ttl")
        #expect(code { _ = try store.releasePool("p", index: 0, fence: 1, now: t0) } == "not_holder")
        #expect(code { _ = try store.releasePool("p", index: 9, fence: 1, now: t0) } == "not_holder")
        #expect(store.poolSummaries().first?.held == 0)
        #expect(store.poolSummaries().first?.grants == 0)
    }
}
