import BrokerTestSupport
import EphemeralServer
import EphemeralStore
import EphemeralWire
import Foundation
import Testing

/// A broker on the system clock, for the promises about deadlines met as they fall (a manual clock never moves by
/// itself), with the sweeper out of the way so it cannot be what meets them.
private func realClockBroker(_ configure: (inout BrokerConfiguration) -> Void = { _ in }) async throws -> (Broker, String)
{
    var configuration = BrokerConfiguration(sweeperInterval: 3_600_000)
    configure(&configuration)
    let broker = Broker(configuration: configuration)
    return (broker, try await broker.start())
}

@Suite("Wire promises at their edges")
struct EdgeProtocolTests {
    /// A holder hung (SIGSTOPped, say) lets its lease lapse: the first waiter gets the item at that moment, with no
    /// other request and no sweep to notice.
    @Test func aLapsedLeaseGoesToTheFirstWaiterAtItsDeadline() async throws {
        let (broker, path) = try await realClockBroker()
        defer { Task { await broker.shutdown() } }
        let holder = try RawConnection(path: path)
        #expect(try errorName(holder.request(#"{"action":"define_pool","pool":"p","capacity":1}"#)) == nil)
        #expect(try errorName(holder.request(#"{"action":"lease","pool":"p","ttl":300}"#)) == nil)
        let waiter = try RawConnection(path: path, timeoutSeconds: 20)
        let started = monotonicSeconds()
        let grant = try json(try await onThread { try waiter.request(#"{"action":"lease","pool":"p","wait":15000}"#) })
        let elapsed = monotonicSeconds() - started
        #expect(grant["index"] as? Int == 0 && grant["fence"] as? Int == 2, "\(grant)")
        #expect(elapsed < 5, "handed over \(elapsed) s after a 0.3 s TTL: at the deadline, not at the wait's end")
        // The lapsed holder's fence is stale now.
        #expect(try errorName(holder.request(#"{"action":"release","pool":"p","index":0,"fence":1}"#)) == "stale_fence")
    }

    @Test func aLapsedClaimGoesToTheFirstClaimWaiterAtItsDeadline() async throws {
        let (broker, path) = try await realClockBroker()
        defer { Task { await broker.shutdown() } }
        let computing = try RawConnection(path: path)
        #expect(try json(computing.request(#"{"action":"claim","key":"login","ttl":300}"#))["state"] as? String == "claimed")
        let waiting = try RawConnection(path: path, timeoutSeconds: 20)
        let started = monotonicSeconds()
        let reply = try json(
            try await onThread { try waiting.request(#"{"action":"claim","key":"login","ttl":5000,"wait":15000}"#) })
        #expect(reply["state"] as? String == "claimed", "\(reply)")
        #expect(monotonicSeconds() - started < 5)
    }

    /// A client that sends its requests and shuts down its writing side still gets every reply, the parked one's
    /// included, and then end of file.
    @Test func aHalfClosedClientGetsEveryReplyThenEndOfFile() async throws {
        let harness = try await BrokerHarness.start()
        defer { Task { await harness.broker.shutdown() } }
        let client = try harness.connect()
        var burst = #"{"action":"wait","key":"later","timeout":10000,"id":0}"# + "\n"
        for id in 1...100 { burst += #"{"action":"ping","id":\#(id)}"# + "\n" }
        try client.send(burst)
        client.shutdownWriting()
        let other = try harness.connect()
        #expect(
            try await waitFor {
                (try json(other.request(#"{"action":"health"}"#))["connections"] as? [String: Any])?["open"] as? Int == 2
            })
        #expect(try errorName(other.request(#"{"action":"set","key":"later","value":"v","ttl":60000}"#)) == nil)
        let first = try json(client.readLine())
        #expect(first["id"] as? Int == 0 && first["value"] as? String == "v", "\(first)")
        for id in 1...100 { #expect(try json(client.readLine())["id"] as? Int == id) }
        #expect(client.readsEndOfFile(), "the broker closes once every reply is flushed")
        // Nothing parked: the half-closed connection closes at once after its replies.
        let quick = try harness.connect()
        try quick.send(#"{"action":"ping","id":"last"}"# + "\n")
        quick.shutdownWriting()
        #expect(try json(quick.readLine())["id"] as? String == "last")
        #expect(quick.readsEndOfFile())
    }

    /// A connection's own waits are bounded (1,024 parked at once), and so is the broker's total.
    @Test func parkedRequestsAreBoundedPerConnection() async throws {
        let harness = try await BrokerHarness.start()
        defer { Task { await harness.broker.shutdown() } }
        let client = try harness.connect()
        var burst = ""
        for id in 0...1024 { burst += #"{"action":"wait","key":"k","timeout":300,"id":\#(id)}"# + "\n" }
        try client.send(burst)
        var errors: [String: Int] = [:]
        for _ in 0...1024 { errors[try errorName(client.readLine()) ?? "ok", default: 0] += 1 }
        #expect(errors == ["timeout": 1024, "too_many_waiters": 1])
        // Once answered, the connection may wait again.
        #expect(try errorName(client.request(#"{"action":"wait","key":"k","timeout":10}"#)) == "timeout")
    }

    /// `--idle-timeout` counts a parked request as activity: a client blocked in a `wait` is not shut down under.
    /// The broker's clock is a manual one: it is idle exactly when the test says so.
    @Test func aParkedWaitKeepsAnIdleBrokerUp() async throws {
        let harness = try await BrokerHarness.start { $0.idleTimeout = 100 }
        let client = try harness.connect()
        try client.send(#"{"action":"wait","key":"k","timeout":1000,"id":1}"# + "\n")
        let probe = try harness.connect()
        #expect(
            try await waitFor {
                (try json(probe.request(#"{"action":"stats"}"#))["stats"] as? [String: Any])?["waiting"] as? Int == 1
            })
        harness.clock.advance(by: 10_000)  // long past the idle timeout, with the wait parked
        let reply = try await onThread { try client.readLine() }
        #expect(try errorName(reply) == "timeout", "answered at its deadline, not by a shutdown: \(reply)")
        await harness.broker.waitUntilStopped()  // idle once the wait is over
        #expect(!pathExists(harness.path))
    }

    /// Canonically equivalent keys are distinct over the wire too: the request decoder keeps the bytes.
    @Test func keysAreTheirBytesOverTheWire() async throws {
        let harness = try await BrokerHarness.start()
        defer { Task { await harness.broker.shutdown() } }
        let client = try harness.connect()
        #expect(try errorName(client.request(#"{"action":"set","key":"caf\u00e9","value":1,"ttl":60000}"#)) == nil)
        #expect(try errorName(client.request(#"{"action":"get","key":"cafe\u0301"}"#)) == "not_found")
        #expect(try errorName(client.request("{\"action\":\"set\",\"key\":\"cafe\u{301}\",\"value\":2,\"ttl\":60000}")) == nil)
        #expect(try unversioned(client.request("{\"action\":\"get\",\"key\":\"caf\u{e9}\"}")) == #"{"ok":true,"value":1,"compressed":false}"#)
        #expect(try client.request(#"{"action":"lease","key":"slots","workerId":"\u212a"}"#) == #"{"ok":true,"value":0}"#)
        #expect(try client.request(#"{"action":"lease","key":"slots","workerId":"K"}"#) == #"{"ok":true,"value":1}"#)
    }
}
