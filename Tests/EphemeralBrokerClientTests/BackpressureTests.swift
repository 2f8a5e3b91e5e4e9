import BrokerTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Megabytes, for messages.
private func megabytes(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1_048_576) }

/// Peers that do not read their replies, or pile them up behind a parked request, against the real binary: its
/// peak resident memory (`VmHWM`, from `/proc`) must stay within 64 MiB of where it was, and another client's
/// pings must keep being answered. Before the broker bounded what waits to be written, one connection took it to
/// 4 GiB in 7 s.
///
/// The latency bounds here are loose on purpose (100 ms for a ping, 500 ms for a stall): they fail the broken
/// behaviour, seconds long, on the debug build CI tests, without timing a healthy one on a shared 2-core machine.
/// BENCHMARKS.md measures the real figures on a release build (`Benchmarks/backpressure.py`).
@Suite("Backpressure: what a peer does not read", .serialized, .loadTest)
struct BackpressureTests {
    static let value = "\"" + String(repeating: "x", count: 262_142) + "\""  // 256 KiB, the largest by default

    func serve() async throws -> (ServedBroker, RawConnection) {
        let broker = try await ServedBroker(secret: nil, arguments: ["--log-level", "error"])
        let control = try RawConnection(path: broker.path)
        #expect(try errorName(control.request(#"{"action":"set","key":"big","ttl":600000,"value":\#(Self.value)}"#)) == nil)
        return (broker, control)
    }

    func peak(_ broker: ServedBroker) throws -> Int {
        try #require(ProcessProbe.peakResidentBytes(of: broker.process.pid), "no /proc/PID/status (not Linux?)")
    }

    /// The slowest of `count` pings in a row, in milliseconds.
    func slowestPing(_ connection: RawConnection, count: Int = 50) throws -> Double {
        var slowest = 0.0
        for _ in 0..<count {
            let started = monotonicSeconds()
            #expect(try errorName(connection.request(#"{"action":"ping"}"#)) == nil)
            slowest = max(slowest, (monotonicSeconds() - started) * 1000)
        }
        return slowest
    }

    /// `get`s of `key`, `count` of them in one write.
    func gets(_ count: Int, key: String = "big") -> [UInt8] {
        Array(String(repeating: #"{"action":"get","key":"\#(key)"}"# + "\n", count: count).utf8)
    }

    @Test func getsPipelinedBehindAParkedWaitAreBounded() async throws {
        let (broker, control) = try await serve()
        let before = try peak(broker)
        let attacker = try RawConnection(path: broker.path)
        try attacker.send(#"{"action":"wait","key":"never","timeout":60000}"# + "\n")
        // 4,000 replies of 256 KiB would be 1 GiB held behind the wait.
        let sent = try await onThread { attacker.sendWhileRead(gets(4_000)) }
        let slowest = try slowestPing(control)
        let growth = try peak(broker) - before
        print("gets behind a parked wait: \(sent) request bytes taken, peak RSS grew \(megabytes(growth)), slowest ping \(slowest) ms")
        #expect(growth < 64 << 20, "peak grew \(megabytes(growth))")
        #expect(slowest < 100, "another client's ping took \(slowest) ms")
        // The wait ends: its reply comes first, then the held ones in order, and the connection goes on.
        #expect(try errorName(control.request(#"{"action":"set","key":"never","value":1,"ttl":60000}"#)) == nil)
        #expect(try json(attacker.readLine())["value"] as? Int == 1)
        for _ in 0..<50 { #expect(try attacker.readLine().hasPrefix(#"{"ok":true,"value":"xxx"#)) }
    }

    @Test func sixteenClientsThatNeverReadAreBounded() async throws {
        let (broker, control) = try await serve()
        let before = try peak(broker)
        let path = broker.path
        let attackers = try (0..<16).map { _ in try RawConnection(path: path) }
        // 400 replies of 256 KiB each: 1.6 GB in all if the broker wrote them into memory.
        let requests = gets(400)
        try await withThrowingTaskGroup(of: Int.self) { group in
            for attacker in attackers { group.addTask { try await onThread { attacker.sendWhileRead(requests) } } }
            for try await _ in group {}
        }
        let slowest = try slowestPing(control)
        let growth = try peak(broker) - before
        print("16 clients that never read: peak RSS grew \(megabytes(growth)), slowest ping \(slowest) ms")
        #expect(growth < 64 << 20, "peak grew \(megabytes(growth))")
        #expect(slowest < 100, "another client's ping took \(slowest) ms")
    }

    @Test func aClientThatClosesWithMegabytesUnreadIsForgotten() async throws {
        let (broker, control) = try await serve()
        let before = try peak(broker)
        for _ in 0..<4 {
            let attacker = try RawConnection(path: broker.path)
            _ = try await onThread { attacker.sendWhileRead(gets(100_000)) }  // 3 MB of requests
        }  // each closes here, its replies unread
        #expect(
            try await waitFor {
                (try json(control.request(#"{"action":"health"}"#))["connections"] as? [String: Any])?["open"] as? Int
                    == 1
            })
        let growth = try peak(broker) - before
        print("4 clients closing with megabytes unread: peak RSS grew \(megabytes(growth))")
        #expect(growth < 64 << 20, "peak grew \(megabytes(growth))")
        #expect(try slowestPing(control) < 100)
    }

    /// 64,000 waits lapsing within a second are answered in batches, with other connections served between them:
    /// every wait is answered `timeout`, and another client is not held up for the whole lot (answered at once,
    /// they took over a second on this build).
    @Test func manyWaitsLapsingAtOnceDoNotStallOthers() async throws {
        let (broker, control) = try await serve()
        let path = broker.path
        let connections = try (0..<64).map { _ in try RawConnection(path: path, timeoutSeconds: 30) }
        let deadline = monotonicSeconds() + 2
        let burst = Array(
            String(repeating: #"{"action":"wait","key":"never","timeout":2000}"# + "\n", count: 1_000).utf8)
        for connection in connections { try connection.send(burst) }
        // From a moment before the deadline (all 64,000 are parked by then) until well after it.
        #expect(try errorName(control.request(#"{"action":"ping"}"#)) == nil)
        #expect(monotonicSeconds() < deadline - 0.3, "parking took too long for the test to mean anything")
        while monotonicSeconds() < deadline - 0.3 {
            #expect(try errorName(control.request(#"{"action":"ping"}"#)) == nil)
        }
        var slowest = 0.0
        while monotonicSeconds() < deadline + 1.5 {
            let started = monotonicSeconds()
            #expect(try errorName(control.request(#"{"action":"ping"}"#)) == nil)
            slowest = max(slowest, (monotonicSeconds() - started) * 1000)
        }
        let answered = try await withThrowingTaskGroup(of: Int.self) { group in
            for connection in connections {
                group.addTask {
                    try await onThread {
                        var timeouts = 0
                        for _ in 0..<1_000 where try errorName(connection.readLine()) == "timeout" { timeouts += 1 }
                        return timeouts
                    }
                }
            }
            return try await group.reduce(0, +)
        }
        print("64,000 waits lapsing at once: slowest ping meanwhile \(slowest) ms")
        #expect(answered == 64_000)
        #expect(slowest < 500, "another client's ping took \(slowest) ms while the waits lapsed")
    }
}
