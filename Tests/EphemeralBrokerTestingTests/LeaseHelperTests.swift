import EphemeralBrokerClient
import EphemeralBrokerTesting
import EphemeralServer
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
