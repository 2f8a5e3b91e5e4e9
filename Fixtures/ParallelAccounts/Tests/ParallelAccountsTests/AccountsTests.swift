import EphemeralBrokerClient
import EphemeralBrokerTesting
import XCTest

#if canImport(Glibc)
import Glibc
#endif

struct Account: Codable {
    var user: String
    var password: String
}

/// Each test leases a test account, proves through the broker that nobody else holds it meanwhile, and works a while.
final class AccountsTests: XCTestCase {
    func useAnAccount(_ name: String = #function, killWhileHolding: Bool = false) async throws {
        let client = try BrokerTesting.client()
        try await withBrokerLease("accounts", wait: .seconds(120)) { lease in
            let account = try lease.item(as: Account.self)
            XCTAssertFalse(account.user.isEmpty)
            try await client.set("got-\(name)", lease.index, ttl: .seconds(600))
            // Whoever holds account N writes its name here; if anyone else held N meanwhile, they overwrite it.
            try await client.set("holder-\(lease.index)", name, ttl: .seconds(600))
            if killWhileHolding {
                try await client.set("killed-holding", lease.index, ttl: .seconds(600))
                kill(getpid(), SIGKILL)
            }
            try await Task.sleep(for: .milliseconds(300))
            let holder: String = try await client.get("holder-\(lease.index)")
            if holder != name { try await client.set("overlap-\(name)", holder, ttl: .seconds(600)) }
            XCTAssertEqual(holder, name, "account \(lease.index) was held by \(holder) at the same time")
        }
    }

    func testAccount01() async throws { try await useAnAccount() }
    func testAccount02() async throws { try await useAnAccount() }
    func testAccount03() async throws { try await useAnAccount() }
    func testAccount04() async throws { try await useAnAccount() }
    func testAccount05() async throws { try await useAnAccount() }
    func testAccount06() async throws { try await useAnAccount() }
    func testAccount07() async throws { try await useAnAccount() }
    func testAccount08() async throws { try await useAnAccount() }
    func testAccount09() async throws { try await useAnAccount() }
    func testAccount10() async throws { try await useAnAccount() }

    /// Dies with SIGKILL while holding an account: the broker must give the account back at once.
    func testKilledWhileHoldingALease() async throws { try await useAnAccount(killWhileHolding: true) }
}
