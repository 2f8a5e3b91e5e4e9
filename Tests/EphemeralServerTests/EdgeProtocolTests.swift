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

/// Stores `A` (60 KB, under NIO's 64 KiB high-water mark) and `V` (100 KB), for tests that pile replies up.
private func setLargeValues(on harness: BrokerHarness) throws {
    let setup = try harness.connect()
    for (key, count) in [("A", 60_000), ("V", 100_000)] {
        let value = "\"" + String(repeating: "x", count: count) + "\""
        #expect(try errorName(setup.request(#"{"action":"set","key":"\#(key)","value":\#(value),"ttl":60000}"#)) == nil)
    }
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

    /// A reader that keeps up gets every reply of a pipelined burst far past the reply budget (40 × 256 KiB =
    /// 10 MiB), in order: the broker pauses taking its requests and goes on as the replies drain.
    @Test func aPipelinedBurstPastTheReplyBudgetIsAnsweredWhole() async throws {
        let harness = try await BrokerHarness.start()
        defer { Task { await harness.broker.shutdown() } }
        let client = try harness.connect()
        let value = "\"" + String(repeating: "v", count: 262_142) + "\""
        #expect(try errorName(client.request(#"{"action":"set","key":"big","value":\#(value),"ttl":60000}"#)) == nil)
        var burst = ""
        for id in 0..<40 { burst += #"{"action":"get","key":"big","id":\#(id)}"# + "\n" }
        try client.send(burst)
        for id in 0..<40 {
            let reply = try json(client.readLine())
            #expect(reply["id"] as? Int == id && (reply["value"] as? String)?.count == 262_142)
        }
        #expect(try errorName(client.request(#"{"action":"ping"}"#)) == nil)
    }

    /// A connection paused behind a parked wait, with less than NIO's high-water mark left to write (so no change
    /// of writability will come), goes on once the wait is answered by a request later in its own burst... which it
    /// must therefore reach: it is resumed as soon as what it wrote has drained.
    @Test func aPausedConnectionGoesOnWhenItsRepliesDrain() async throws {
        let harness = try await BrokerHarness.start()
        defer { Task { await harness.broker.shutdown() } }
        try setLargeValues(on: harness)
        let client = try RawConnection(path: harness.path, timeoutSeconds: 20)
        var burst = #"{"action":"get","key":"A","id":0}"# + "\n" + #"{"action":"wait","key":"K","timeout":15000,"id":1}"# + "\n"
        for id in 2..<12 { burst += #"{"action":"get","key":"V","id":\#(id)}"# + "\n" }
        burst += #"{"action":"set","key":"K","value":1,"ttl":60000,"id":12}"# + "\n"
        let started = monotonicSeconds()
        try client.send(burst)
        for id in 0...12 { #expect(try json(client.readLine())["id"] as? Int == id) }
        #expect(monotonicSeconds() - started < 5, "the wait was answered by its own burst's set, not its timeout")
    }

    /// A paused connection resumed while lapsed waits are being answered in a batch wakes another connection's
    /// wait: that reply is flushed too (it was written and never flushed, and its caller waited forever).
    @Test func aWakeupFromAConnectionResumedDuringABatchIsFlushed() async throws {
        let harness = try await BrokerHarness.start()
        defer { Task { await harness.broker.shutdown() } }
        try setLargeValues(on: harness)
        for round in 0..<3 {
            let waiter = try RawConnection(path: harness.path, timeoutSeconds: 10)
            try waiter.send(#"{"action":"wait","key":"C\#(round)","timeout":8000}"# + "\n")
            let busy = try RawConnection(path: harness.path, timeoutSeconds: 10)
            var burst = #"{"action":"get","key":"A"}"# + "\n" + #"{"action":"wait","key":"B","timeout":300}"# + "\n"
            for _ in 0..<10 { burst += #"{"action":"get","key":"V"}"# + "\n" }
            burst += #"{"action":"set","key":"C\#(round)","value":\#(round),"ttl":60000}"# + "\n"
            try busy.send(burst)
            for _ in 0..<13 { _ = try busy.readLine() }
            let started = monotonicSeconds()
            let reply = try json(try await onThread { try waiter.readLine() })
            #expect(reply["value"] as? Int == round, "round \(round): \(reply)")
            #expect(monotonicSeconds() - started < 2, "round \(round): the wakeup waited for a later flush")
        }
    }

    /// A connection's own waits are bounded (1,024 parked at once), and so is the broker's total.
    @Test func parkedRequestsAreBoundedPerConnection() async throws {
        let harness = try await BrokerHarness.start()
        defer { Task { await harness.broker.shutdown() } }
        let client = try harness.connect()
        var burst = ""
        for id in 0...1024 { burst += #"{"action":"wait","key":"k","timeout":2500,"id":\#(id)}"# + "\n" }  // none lapses before the last is read
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
