import EphemeralStore
import EphemeralWire
import Testing

@Suite("Store on a fake clock")
struct StoreTests {
    let t0: Int64 = 1_000_000

    func set(_ store: inout Store, _ key: String, _ value: String = "1", ttl: Double? = 1000, at now: Int64)
        throws(BrokerError)
    {
        try store.set(SetCommand(key: key, value: Array(value.utf8), ttl: ttl), now: now)
    }

    @Test func ttlExpiryIsReportedOnceThenNotFound() throws {
        var store = Store()
        try set(&store, "k", "\"v\"", ttl: 100, at: t0)
        #expect(try store.get("k", now: t0 + 99).json == Array("\"v\"".utf8))
        #expect(code { _ = try store.get("k", now: t0 + 100) } == "expired")
        #expect(code { _ = try store.get("k", now: t0 + 100) } == "not_found")
        #expect(code { _ = try store.get("never", now: t0) } == "not_found")
        #expect(store.expiredItemsTotal == 1)
    }

    @Test func setChecksRunInTheOriginalsOrder() {
        var store = Store(configuration: StoreConfiguration(maxItems: 1, maxValueSize: 4))
        #expect(code { try set(&store, "a", "123456", ttl: -1, at: t0) } == "invalid_ttl")
        #expect(code { try set(&store, "a", "123456", ttl: nil, at: t0) } == "ttl_required")
        #expect(code { try set(&store, "a", "123456", ttl: 0, at: t0) } == "invalid_ttl")
        #expect(code { try set(&store, "a", "123456", ttl: 10, at: t0) } == "too_large")
        #expect(code { try set(&store, "a", "1234", ttl: 10, at: t0) } == nil)
        #expect(code { try set(&store, "b", "1", ttl: 10, at: t0) } == "max_items")
        #expect(code { try set(&store, "a", "2", ttl: 10, at: t0) } == nil, "overwriting at capacity is fine")
        #expect(code { try set(&store, "c", "1", ttl: 1e300, at: t0) } == "invalid_ttl")
    }

    @Test func failedSetsChangeNothing() throws {
        var store = Store(configuration: StoreConfiguration(maxItems: 1, maxValueSize: 4))
        try set(&store, "a", "1", ttl: 50, at: t0)
        let bytes = store.approximateBytes
        _ = code { try set(&store, "a", "123456", ttl: 10_000, at: t0) }
        _ = code { try set(&store, "a", "1", ttl: -5, at: t0) }
        #expect(try store.get("a", now: t0 + 49).json == Array("1".utf8))
        #expect(code { _ = try store.get("a", now: t0 + 50) } == "expired", "the failed sets did not extend the TTL")
        #expect(store.approximateBytes == bytes - ("a".utf8.count + 64 + 1))
    }

    @Test func withoutRequireTTLAMissingTTLUsesTheDefault() throws {
        var store = Store(configuration: StoreConfiguration(defaultTTL: 500, requireTTL: false))
        try set(&store, "k", ttl: nil, at: t0)
        #expect(store.list(now: t0).first?.expiresAt == t0 + 500)
    }

    @Test func overwriteReplacesValueTTLAndFlag() throws {
        var store = Store()
        try set(&store, "k", "1", ttl: 10, at: t0)
        try set(&store, "k", "2", ttl: 1000, at: t0)
        let value = try store.get("k", now: t0 + 500)
        #expect(value.json == Array("2".utf8) && !value.compressed)
    }

    @Test func slidingTTLRestartsTheOriginalTTLAndDoesNotGrow() throws {
        var store = Store(configuration: StoreConfiguration(refreshTTLOnGet: true))
        try set(&store, "k", ttl: 100, at: t0)
        _ = try store.get("k", now: t0 + 90)
        _ = try store.get("k", now: t0 + 95)
        #expect(store.list(now: t0 + 95).first?.expiresAt == t0 + 195)
        _ = try store.get("k", now: t0 + 190)
        #expect(code { _ = try store.get("k", now: t0 + 290) } == "expired")
    }

    @Test func sweeperRemovesOnlyExpiredItemsAndCountsStayExact() throws {
        var store = Store()
        for index in 0..<100 { try set(&store, "k\(index)", ttl: Double(index + 1), at: t0) }
        #expect(store.itemCount(now: t0 + 50) == 50)
        #expect(store.list(now: t0 + 50).count == 50)
        let removed = store.sweep(now: t0 + 50)
        #expect(removed.items == 50)
        #expect(store.itemCount(now: t0 + 50) == 50)
        #expect(store.expiredItemsTotal == 50)
    }

    @Test func maxItemsMakesRoomFromExpiredItems() throws {
        var store = Store(configuration: StoreConfiguration(maxItems: 2))
        try set(&store, "a", ttl: 10, at: t0)
        try set(&store, "b", ttl: 1000, at: t0)
        #expect(code { try set(&store, "c", ttl: 10, at: t0 + 5) } == "max_items")
        #expect(code { try set(&store, "c", ttl: 10, at: t0 + 10) } == nil)
    }

    @Test func zeroMaxItemsMeansNoLimit() throws {
        var store = Store(configuration: StoreConfiguration(maxItems: 0))
        for index in 0..<20_000 { try set(&store, "k\(index)", at: t0) }
        #expect(store.itemCount(now: t0) == 20_000)
    }

    @Test func rewritingOneKeyKeepsTheExpiryQueueBounded() throws {
        var store = Store()
        for round in 0..<50_000 { try set(&store, "same", ttl: Double(1_000_000 - round), at: t0) }
        #expect(store.itemCount(now: t0) == 1)
        #expect(try store.get("same", now: t0 + 950_000).json == Array("1".utf8))
    }

    @Test func compressedValuesAreMeasuredDecompressed() throws {
        var store = Store(configuration: StoreConfiguration(maxValueSize: 1000))
        let small = ValueCompression.compress(Array("[\"ok\"]".utf8))
        try store.set(SetCommand(key: "c", value: small, ttl: 10, compressed: true), now: t0)
        #expect(try store.get("c", now: t0).compressed)
        let big = ValueCompression.compress(Array(("\"" + String(repeating: "a", count: 5000) + "\"").utf8))
        #expect(
            code { try store.set(SetCommand(key: "d", value: big, ttl: 10, compressed: true), now: t0) }
                == "too_large")
        #expect(
            code {
                try store.set(SetCommand(key: "d", value: Array("\"!!\"".utf8), ttl: 10, compressed: true), now: t0)
            } == "invalid_compressed_value")
        #expect(code { _ = try store.get("d", now: t0) } == "not_found")
    }
}

@Suite("Original leases on a fake clock")
struct OriginalLeaseTests {
    let t0: Int64 = 5_000

    @Test func lowestFreeIntegerRenewAndRelease() throws {
        var store = Store()
        #expect(try store.lease(key: "p", workerId: "a", ttl: 1000, now: t0) == 0)
        #expect(try store.lease(key: "p", workerId: "b", ttl: 1000, now: t0) == 1)
        #expect(try store.lease(key: "p", workerId: "c", ttl: 1000, now: t0) == 2)
        #expect(try store.lease(key: "p", workerId: "a", ttl: 1000, now: t0) == 0, "same worker renews")
        #expect(code { _ = try store.lease(key: "q", workerId: "a", ttl: 1000, now: t0) } == "worker_already_has_lease")
        let first = store.release(workerId: "b", now: t0)
        let second = store.release(workerId: "b", now: t0)
        #expect(first)
        #expect(!second)
        #expect(try store.lease(key: "p", workerId: "d", ttl: 1000, now: t0) == 1, "lowest free is reused")
        #expect(try store.lease(key: "q", workerId: "e", ttl: 1000, now: t0) == 0, "keys are independent")
        #expect(store.leaseCount(now: t0) == 4)
    }

    @Test func expiredLeasesAreRecycledAndRenewExtends() throws {
        var store = Store()
        #expect(try store.lease(key: "p", workerId: "a", ttl: 100, now: t0) == 0)
        #expect(try store.lease(key: "p", workerId: "a", ttl: 100, now: t0 + 90) == 0)
        #expect(try store.lease(key: "p", workerId: "b", ttl: 100, now: t0 + 150) == 1, "a's renewal still holds 0")
        #expect(try store.lease(key: "p", workerId: "c", ttl: 100, now: t0 + 190) == 0, "a expired at +190")
        let releasedExpired = store.release(workerId: "a", now: t0 + 190)
        #expect(!releasedExpired)
        #expect(store.expiredLeasesTotal == 1)
        #expect(store.leaseCount(now: t0 + 290) == 0)
    }

    @Test func defaultTTLAndInvalidTTL() throws {
        var store = Store(configuration: StoreConfiguration(defaultTTL: 50))
        #expect(try store.lease(key: "p", workerId: "a", ttl: nil, now: t0) == 0)
        #expect(store.leaseCount(now: t0 + 49) == 1)
        #expect(store.leaseCount(now: t0 + 50) == 0)
        #expect(code { _ = try store.lease(key: "p", workerId: "b", ttl: -1, now: t0) } == "invalid_ttl")
        #expect(store.leaseCount(now: t0) == 1, "the refused lease changed nothing")
    }
}

@Suite("Replay guard")
struct ReplayGuardTests {

    @Test func refusesRepeatsAndStaleTimestampsAndForgetsOldNonces() {
        var guardian = ReplayGuard(window: 1000)
        let now: Int64 = 100_000
        #expect(code { try guardian.admit(timestamp: Double(now), nonce: "nonce-0001", now: now) } == nil)
        #expect(code { try guardian.admit(timestamp: Double(now), nonce: "nonce-0001", now: now + 1) } == "replayed")
        #expect(code { try guardian.admit(timestamp: Double(now - 1001), nonce: "nonce-0002", now: now) } == "replayed")
        #expect(code { try guardian.admit(timestamp: Double(now + 1001), nonce: "nonce-0003", now: now) } == "replayed")
        #expect(code { try guardian.admit(timestamp: nil, nonce: "nonce-0004", now: now) } == "replayed")
        #expect(code { try guardian.admit(timestamp: Double(now), nonce: "short", now: now) } == "replayed")
        #expect(code { try guardian.admit(timestamp: Double(now + 5000), nonce: "nonce-0005", now: now + 5000) } == nil)
        #expect(guardian.rememberedCount == 1, "nonce-0001 was forgotten after twice the window")
    }
}
