import BrokerTestSupport
import EphemeralBrokerClient
import EphemeralBrokerTesting
import EphemeralServer
import EphemeralStore
import EphemeralWire
import Testing
import XCTest

struct Account: Codable, Equatable, Sendable {
    var user: String
}

struct Boom: Error {}

/// One in-process broker with an `accounts` pool, shared by the helper tests of this target.
enum SharedBroker {
    static let ready: Task<Client, any Error> = Task {
        let broker = Broker(configuration: BrokerConfiguration())
        let path = try await broker.start()
        let client = Client(configuration: ClientConfiguration(socketPath: path))
        try await client.definePool("accounts", items: [Account(user: "ada"), Account(user: "grace")])
        BrokerTesting.use(client)
        return client
    }

    static func held(_ pool: String) async throws -> Int {
        let stats = try await ready.value.statsJSON()
        let object = try JSONSerialization.jsonObject(with: Data(stats)) as? [String: Any]
        return ((object?["pools"] as? [String: Any])?[pool] as? [String: Any])?["held"] as? Int ?? -1
    }
}

@Suite("The Swift Testing trait", .serialized)
struct LeasingTraitTests {
    @Test func theTraitLeasesForTheTestAndReleasesAfterwards() async throws {
        _ = try await SharedBroker.ready.value
        let trait = LeasingTrait.leasing("accounts", wait: .seconds(10))
        let test = try #require(Test.current)
        try await trait.provideScope(for: test, testCase: Test.Case.current) {
            let lease = try #require(BrokerLease.current)
            #expect(try ["ada", "grace"].contains(lease.item(as: Account.self).user))
            #expect(try await SharedBroker.held("accounts") == 1)
        }
        #expect(BrokerLease.current == nil)
        #expect(try await SharedBroker.held("accounts") == 0)
    }

    @Test func theTraitReleasesWhenTheTestThrows() async throws {
        _ = try await SharedBroker.ready.value
        let trait = LeasingTrait.leasing("accounts")
        let test = try #require(Test.current)
        await #expect(throws: Boom.self) {
            try await trait.provideScope(for: test, testCase: Test.Case.current) { throw Boom() }
        }
        #expect(try await SharedBroker.held("accounts") == 0)
    }

    @Test func theTraitScopesTestCasesNotSuites() throws {
        let test = try #require(Test.current)
        let trait = LeasingTrait.leasing("accounts")
        #expect(trait.scopeProvider(for: test, testCase: nil) == nil)
        #expect(trait.scopeProvider(for: test, testCase: Test.Case.current) != nil)
    }
}

final class XCTestLeaseHelperTests: XCTestCase {
    func testTheHelperReleasesOnReturnAndOnThrow() async throws {
        _ = try await SharedBroker.ready.value
        let user = try await withBrokerLease("accounts", wait: .seconds(10)) { lease in
            XCTAssertEqual(BrokerLease.current, lease)
            let held = try await SharedBroker.held("accounts")
            XCTAssertGreaterThanOrEqual(held, 1)
            return try lease.item(as: Account.self).user
        }
        XCTAssertTrue(["ada", "grace"].contains(user))
        do {
            _ = try await withBrokerLease("accounts") { _ -> Int in throw Boom() }
            XCTFail("the body's error must come through")
        } catch is Boom {}
        let client = try await SharedBroker.ready.value
        // Both items can be taken at once again: nothing leaked.
        let first = try await client.lease(pool: "accounts")
        let second = try await client.lease(pool: "accounts")
        XCTAssertNotEqual(first.index, second.index)
        try await client.release(first)
        try await client.release(second)
    }
}

/// A one-shot gate a test opens when it chooses.
actor Gate {
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var open = false

    func wait() async {
        if open { return }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        open = true
        for waiter in waiters { waiter.resume() }
        waiters.removeAll()
    }
}

@Suite("Compute once, waits and conditional writes through the Client")
struct SharedValueTests {
    func start() async throws -> (Broker, Client, ManualWallClock) {
        let clock = ManualWallClock()
        let broker = Broker(configuration: BrokerConfiguration(), clock: clock)
        let path = try await broker.start()
        return (broker, Client(configuration: ClientConfiguration(socketPath: path)), clock)
    }

    @Test func eagerRefreshKeepsReadersServedWhileOneCallerRecomputes() async throws {
        let (broker, client, clock) = try await start()
        defer { Task { await broker.shutdown() } }
        let first = try await client.shared("token", ttl: .seconds(1), refreshBefore: .milliseconds(300)) { "v1" }
        #expect(first == "v1")
        clock.advance(by: 800)  // inside the refresh window
        let gate = Gate()
        let refreshing = try await client.shared("token", ttl: .seconds(1), refreshBefore: .milliseconds(300)) {
            await gate.wait()
            return "v2"
        }
        #expect(refreshing == "v1", "the refreshing caller is not kept waiting")
        for _ in 0..<5 {
            let reader = try await client.shared("token", ttl: .seconds(1), refreshBefore: .milliseconds(300)) {
                Issue.record("nobody else computes during the refresh")
                return "v3"
            }
            #expect(reader == "v1")
        }
        await gate.release()
        var latest = ""
        let refreshed = await waitUntilAsync {
            latest = (try? await client.get("token", as: String.self)) ?? ""
            return latest == "v2"
        }
        #expect(refreshed, "the refresh stored its value (last read \(latest))")
    }

    @Test func aFailedComputationIsNotStoredAndTheNextCallerComputes() async throws {
        let (broker, client, _) = try await start()
        defer { Task { await broker.shutdown() } }
        struct LoginFailed: Error {}
        await #expect(throws: LoginFailed.self) {
            _ = try await client.shared("token", ttl: .seconds(60)) { () async throws -> String in throw LoginFailed() }
        }
        #expect(try await client.shared("token", ttl: .seconds(60)) { "ok" } == "ok")
        let tooBig = String(repeating: "x", count: 300_000)
        do {
            _ = try await client.shared("huge", ttl: .seconds(60)) { tooBig }
            Issue.record("a value over the limit must fail")
        } catch let error as BrokerError {
            #expect(error.code == .tooLarge)
        }
        #expect(
            try await client.shared("huge", ttl: .seconds(60)) { "small" } == "small", "the failed claim was released")
    }

    @Test func theValueCanSetItsOwnExpiry() async throws {
        let (broker, client, clock) = try await start()
        defer { Task { await broker.shutdown() } }
        _ = try await client.sharedWithExpiry("jwt") { ("token-exp-5s", Duration.seconds(5)) }
        clock.advance(by: 4_999)
        #expect(try await client.get("jwt", as: String.self) == "token-exp-5s")
        clock.advance(by: 1)
        await #expect(throws: BrokerError.self) { _ = try await client.get("jwt", as: String.self) }
    }

    @Test func aLeaseWaitingForAnItemDoesNotHoldUpTheClientsOtherCalls() async throws {
        let (broker, client, _) = try await start()
        defer { Task { await broker.shutdown() } }
        try await client.definePool("one", capacity: 1)
        let quick = Client(
            configuration: ClientConfiguration(
                socketPath: client.configuration.socketPath,
                timeout: .seconds(2)))
        try await quick.withLease(pool: "one") { _ in
            async let waiting: Void = quick.withLease(pool: "one", wait: .seconds(3)) { _ in }
            // While one task waits for the item, the same client's other calls are answered at once.
            for index in 0..<3 { try await quick.set("k\(index)", index, ttl: .seconds(60)) }
            #expect(try await quick.get("k2", as: Int.self) == 2)
            _ = await (try? waiting)
        }
    }

    @Test func waitBarrierSetIfAbsentAndCompareAndSet() async throws {
        let (broker, client, _) = try await start()
        defer { Task { await broker.shutdown() } }
        async let waited: Int = client.wait(forKey: "ready", timeout: .seconds(20))
        try await client.set("ready", 7, ttl: .seconds(60))
        #expect(try await waited == 7)
        await #expect(throws: BrokerError.self) {
            _ = try await client.wait(forKey: "never", timeout: .milliseconds(50), as: Int.self)
        }

        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 { group.addTask { try await client.barrier("seeded", parties: 4, timeout: .seconds(20)) } }
            try await group.waitForAll()
        }
        do {
            try await client.barrier("lonely", parties: 2, timeout: .milliseconds(50))
            Issue.record("a barrier nobody else reaches times out")
        } catch {
            #expect(error.code == .timeout)
        }

        #expect(try await client.setIfAbsent("owner", "a", ttl: .seconds(60)))
        #expect(try await !client.setIfAbsent("owner", "b", ttl: .seconds(60)))
        let read = try await client.getVersioned("owner", as: String.self)
        #expect(read.value == "a")
        #expect(try await client.compareAndSet("owner", "c", ttl: .seconds(60), version: read.version) != nil)
        #expect(try await client.compareAndSet("owner", "d", ttl: .seconds(60), version: read.version) == nil, "stale")
        #expect(try await client.get("owner", as: String.self) == "c")
        #expect(try await client.increment("n", by: 2) == 2)
        await #expect(throws: BrokerError.self) { try await client.increment("owner") }
    }
}
