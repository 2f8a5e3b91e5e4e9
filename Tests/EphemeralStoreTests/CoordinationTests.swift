import EphemeralStore
import EphemeralWire
import Testing

@Suite("Counters, conditional writes, waits, claims and barriers on a fake clock")
struct CoordinationTests {
    let t0: Int64 = 50_000

    func set(
        _ store: inout Store, _ key: String, _ json: String, ifAbsent: Bool = false, ifVersion: UInt64? = nil,
        maxReads: Int? = nil
    ) throws -> Store.SetResult {
        var command = SetCommand(key: key, value: Array(json.utf8), ttl: 60_000)
        command.ifAbsent = ifAbsent
        command.ifVersion = ifVersion
        command.maxReads = maxReads
        return try store.set(command, now: t0)
    }

    @Test func countersAddAtomicallyAndRefuseNonNumbers() throws {
        var store = Store()
        #expect(try store.increment("c", by: 1, ttl: nil, now: t0).value == 1)
        #expect(try store.increment("c", by: 41, ttl: nil, now: t0).value == 42)
        #expect(try store.increment("c", by: -50, ttl: nil, now: t0).value == -8)
        _ = try set(&store, "s", #""text""#)
        #expect(code { _ = try store.increment("s", by: 1, ttl: nil, now: t0) } == "not_a_number")
        _ = try set(&store, "big", String(Int64.max))
        #expect(code { _ = try store.increment("big", by: 1, ttl: nil, now: t0) } == "not_a_number")
        #expect(try store.get("big", now: t0).json == Array(String(Int64.max).utf8), "nothing half-written")
    }

    @Test func setIfAbsentAndCompareAndSet() throws {
        var store = Store()
        let first = try set(&store, "k", "1", ifAbsent: true)
        #expect(code { _ = try set(&store, "k", "2", ifAbsent: true) } == "exists")
        #expect(code { _ = try set(&store, "k", "3", ifVersion: first.version + 99) } == "version_mismatch")
        let second = try set(&store, "k", "4", ifVersion: first.version)
        #expect(second.version > first.version)
        #expect(code { _ = try set(&store, "k", "5", ifVersion: first.version) } == "version_mismatch", "stale version")
        #expect(
            try store.get("k", now: t0)
                == Store.Value(json: Array("4".utf8), compressed: false, version: second.version))
    }

    @Test func readLimitedValuesDisappearAfterTheirLastRead() throws {
        var store = Store()
        _ = try set(&store, "invite", #""code""#, maxReads: 2)
        #expect(try store.get("invite", now: t0).json == Array(#""code""#.utf8))
        #expect(try store.get("invite", now: t0).json == Array(#""code""#.utf8))
        #expect(code { _ = try store.get("invite", now: t0) } == "not_found")
    }

    /// An item's value and its read count share one allocation with the values handed out: counting a read must
    /// change neither a copy of the store nor a value already returned.
    @Test func aStoreCopyKeepsItsOwnReadCounts() throws {
        var store = Store()
        _ = try set(&store, "invite", #""code""#, maxReads: 2)
        var copy = store
        let first = try store.get("invite", now: t0)
        _ = try store.get("invite", now: t0)
        #expect(code { _ = try store.get("invite", now: t0) } == "not_found")
        #expect(first.json == Array(#""code""#.utf8), "a returned value outlives the item")
        #expect(try copy.get("invite", now: t0).json == Array(#""code""#.utf8), "the copy had two reads left")
        #expect(try copy.get("invite", now: t0).json == Array(#""code""#.utf8))
        #expect(code { _ = try copy.get("invite", now: t0) } == "not_found")
    }

    @Test func waitsAndClaimsCountAsReadsOfAReadLimitedValue() throws {
        var store = Store()
        let early = try store.waitForKey("once", owner: 1, wait: 1000, now: t0)
        let late = try store.waitForKey("once", owner: 2, wait: 1000, now: t0)
        let result = try set(&store, "once", #""secret""#, maxReads: 1)
        #expect(result.wakeups.count == 1, "only one waiter gets a one-time value")
        if case .value(let waiter, _, _, _) = result.wakeups.first {
            #expect(waiter == early.waiter && waiter != late.waiter)
        }
        #expect(code { _ = try store.get("once", now: t0) } == "not_found")
        _ = try set(&store, "twice", #""s""#, maxReads: 2)
        #expect(try store.waitForKey("twice", owner: 3, wait: 0, now: t0).value != nil)
        guard case .value = try store.claim("twice", owner: 3, ttl: 100, wait: 0, refreshBefore: nil, now: t0).0 else {
            Issue.record("the second read is a claim that finds the value")
            return
        }
        #expect(code { _ = try store.get("twice", now: t0) } == "not_found", "wait and claim each used a read")
    }

    @Test func waitersGetTheValueTheMomentItIsWritten() throws {
        var store = Store()
        let waiting = try store.waitForKey("ready", owner: 1, wait: 1000, now: t0)
        #expect(waiting.value == nil && waiting.deadline == t0 + 1000)
        let result = try set(&store, "ready", "true")
        #expect(result.wakeups.count == 1)
        if case .value(let waiter, let key, let value, _) = result.wakeups.first {
            #expect(waiter == waiting.waiter && key == "ready" && value.json == Array("true".utf8))
        } else {
            Issue.record("expected a value wakeup, got \(result.wakeups)")
        }
        #expect(try store.waitForKey("ready", owner: 2, wait: 1000, now: t0).value != nil, "at once when present")
        #expect(code { _ = try store.waitForKey("x", owner: 2, wait: -1, now: t0) } == "invalid_wait")
    }

    @Test func oneClaimerComputesTheRestWaitAndAFailureHandsOver() throws {
        var store = Store()
        guard
            case .claimed(let token) = try store.claim(
                "tok", owner: 1, ttl: 5000, wait: 1000, refreshBefore: nil, now: t0
            ).0
        else {
            Issue.record("the first caller computes")
            return
        }
        guard
            case .queued(let second, _) = try store.claim(
                "tok", owner: 2, ttl: 5000, wait: 1000, refreshBefore: nil, now: t0
            ).0,
            case .queued(let third, _) = try store.claim(
                "tok", owner: 3, ttl: 5000, wait: 1000, refreshBefore: nil, now: t0
            ).0
        else {
            Issue.record("later callers wait")
            return
        }
        let handover = store.unclaim("tok", token: token, now: t0 + 10)
        guard case .claimed(let waiter, _, let newToken) = handover.first, waiter == second else {
            Issue.record("the first waiter takes over: \(handover)")
            return
        }
        let result = try set(&store, "tok", #""T""#)
        #expect(result.wakeups.count == 1)
        if case .value(let woken, _, _, _) = result.wakeups.first { #expect(woken == third) }
        let settled = store.unclaim("tok", token: newToken, now: t0)
        #expect(settled.isEmpty, "a settled claim is gone")
        guard case .value = try store.claim("tok", owner: 4, ttl: 5000, wait: 0, refreshBefore: nil, now: t0).0 else {
            Issue.record("a computed value is handed out")
            return
        }
    }

    @Test func aClaimersDisconnectOrLapseHandsOver() throws {
        var store = Store()
        _ = try store.claim("k", owner: 1, ttl: 100, wait: 0, refreshBefore: nil, now: t0)
        _ = try store.claim("k", owner: 2, ttl: 100, wait: 5000, refreshBefore: nil, now: t0)
        let gone = store.releaseAll(owner: 1, now: t0 + 1).wakeups
        guard case .claimed = gone.first else {
            Issue.record("owner 2 takes over: \(gone)")
            return
        }
        _ = try store.claim("k", owner: 3, ttl: 100, wait: 5000, refreshBefore: nil, now: t0 + 1)
        let lapsed = store.sweep(now: t0 + 101).wakeups
        guard case .claimed = lapsed.first else {
            Issue.record("owner 3 takes over after the lapse: \(lapsed)")
            return
        }
        #expect(
            code { _ = try store.claim("k", owner: 4, ttl: 100, wait: 0, refreshBefore: nil, now: t0 + 102) }
                == "timeout")
    }

    @Test func eagerRefreshHandsOutTheValueAndOneRefreshClaim() throws {
        var store = Store()
        var command = SetCommand(key: "tok", value: Array(#""v1""#.utf8), ttl: 1000)
        command.ifAbsent = false
        try store.set(command, now: t0)
        guard case .value = try store.claim("tok", owner: 1, ttl: 500, wait: 0, refreshBefore: 200, now: t0 + 700).0
        else {
            Issue.record("outside the window: just the value")
            return
        }
        guard
            case .refresh(let value, _, _) = try store.claim(
                "tok", owner: 1, ttl: 500, wait: 0, refreshBefore: 200, now: t0 + 850
            ).0
        else {
            Issue.record("inside the window: the value and the refresh")
            return
        }
        #expect(value.json == Array(#""v1""#.utf8))
        guard case .value = try store.claim("tok", owner: 2, ttl: 500, wait: 0, refreshBefore: 200, now: t0 + 860).0
        else {
            Issue.record("others keep getting the value while one refreshes")
            return
        }
    }

    @Test func barriersReleaseEveryPartyOnceAllArrive() throws {
        var store = Store()
        let first = try store.arrive("seeded", parties: 3, owner: 1, wait: 1000)
        let second = try store.arrive("seeded", parties: 3, owner: 2, wait: 1000)
        #expect(first.wakeups.isEmpty && second.wakeups.isEmpty)
        #expect(code { _ = try store.arrive("seeded", parties: 4, owner: 9, wait: 1000) } == "invalid_request")
        let third = try store.arrive("seeded", parties: 3, owner: 3, wait: 1000)
        #expect(third.wakeups.count == 3)
        let timedOut = try store.arrive("again", parties: 2, owner: 1, wait: 10)
        let withdrawn = store.cancelWait(timedOut.waiter)
        #expect(withdrawn)
        #expect(
            try store.arrive("again", parties: 2, owner: 2, wait: 10).wakeups.isEmpty,
            "a withdrawn arrival does not count")
    }
}

@Suite("Claims that lapse while others wait")
struct LapsedClaimTests {
    @Test func aLapsedClaimFoundByANewCallerHandsOverToTheFirstWaiter() throws {
        var store = Store()
        let t0: Int64 = 1_000
        _ = try store.claim("k", owner: 1, ttl: 100, wait: 0, refreshBefore: nil, now: t0)
        guard
            case .queued(let waiter, _) = try store.claim(
                "k", owner: 2, ttl: 100, wait: 5_000, refreshBefore: nil, now: t0
            ).0
        else {
            Issue.record("owner 2 waits")
            return
        }
        // No sweep ran: a new caller arrives after the first claim lapsed. The waiter must be told it computes.
        let (outcome, wakeups) = try store.claim(
            "k", owner: 3, ttl: 100, wait: 5_000, refreshBefore: nil, now: t0 + 150)
        #expect(
            wakeups == [
                .claimed(
                    waiter: waiter, key: "k",
                    token: wakeups.first.flatMap {
                        if case .claimed(_, _, let token) = $0 { return token } else { return nil }
                    } ?? 0)
            ])
        guard case .queued = outcome else {
            Issue.record("owner 3 waits behind the new claimer, got \(outcome)")
            return
        }
    }
}
