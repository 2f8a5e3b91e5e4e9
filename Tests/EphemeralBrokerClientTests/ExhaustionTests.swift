import BrokerTestSupport
import EphemeralBrokerClient
import EphemeralWire
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The number of open connections the broker reports in `health`.
private func openConnections(_ connection: RawConnection) throws -> Int? {
    let health = try json(try connection.request(#"{"action":"health"}"#))
    return (health["connections"] as? [String: Any])?["open"] as? Int
}

/// Megabytes, for messages.
private func megabytes(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1_048_576) }

/// Attacks on the broker's memory and connections, against the real binary, with its resident memory measured
/// from `/proc` (Linux). Serialized so one test's memory peak is not another's.
@Suite("Resource exhaustion against the broker process", .serialized, .loadTest)
struct ExhaustionTests {
    /// A broker process (unsigned: these attacks need no secret to be made, and the broker must survive them
    /// before it checks any signature).
    func serve(_ arguments: [String] = []) async throws -> ServedBroker {
        try await ServedBroker(secret: nil, arguments: ["--log-level", "error"] + arguments)
    }

    /// The broker's peak resident memory so far.
    func peak(_ broker: ServedBroker) throws -> Int {
        try #require(ProcessProbe.peakResidentBytes(of: broker.process.pid), "no /proc/PID/status (not Linux?)")
    }

    @Test func aHundredMegabyteLineIsRefusedInBoundedMemoryWhileOthersAreServed() async throws {
        // A generous request timeout: this test is about memory, and under a sanitizer 100 MB take a while.
        let broker = try await serve(["--request-timeout", "10m"])
        let bystander = try RawConnection(path: broker.path)
        #expect(try errorName(bystander.request(#"{"action":"set","key":"keep","value":"v","ttl":60000}"#)) == nil)
        let before = try peak(broker)
        let path = broker.path
        let attack = Task {
            try await onThread { () throws -> [String] in
                let attacker = try RawConnection(path: path, timeoutSeconds: 60)
                try attacker.send(#"{"action":"set","key":"huge","ttl":60000,"value":""#)
                let megabyte = [UInt8](repeating: UInt8(ascii: "a"), count: 1 << 20)
                for _ in 0..<100 { try attacker.send(megabyte) }
                try attacker.send("\"}\n")
                return [try attacker.readLine(), try attacker.request(#"{"action":"ping"}"#)]
            }
        }
        var servedDuringAttack = 0
        while servedDuringAttack < 3 {  // the event loop keeps answering the bystander while the line streams in
            #expect(try errorName(bystander.request(#"{"action":"get","key":"keep"}"#)) == nil)
            servedDuringAttack += 1
        }
        let replies = try await attack.value
        #expect(try errorName(replies[0]) == "too_large")
        #expect(try errorName(replies[1]) == nil, "the attacker's connection goes on after the refusal")
        #expect(try errorName(bystander.request(#"{"action":"get","key":"huge"}"#)) == "not_found")
        let growth = try peak(broker) - before
        print("100 MB line: peak RSS grew by \(megabytes(growth))")
        #expect(growth < 24 << 20, "a 100 MB line must never be buffered whole (peak grew \(megabytes(growth)))")
    }

    @Test func aGzipBombIsRefusedWithoutInflatingIt() async throws {
        let broker = try await serve()
        // 100 MB of JSON that compresses to about 100 kB: inflating it would show in the broker's peak memory.
        let json = [UInt8](repeating: UInt8(ascii: "0"), count: 100 << 20)
        let bomb = String(decoding: ValueCompression.compress([UInt8(ascii: "\"")] + json + [UInt8(ascii: "\"")]), as: UTF8.self)
        let connection = try RawConnection(path: broker.path)
        #expect(try errorName(connection.request(#"{"action":"ping"}"#)) == nil)
        let before = try peak(broker)
        let reply = try connection.request(
            #"{"action":"set","key":"bomb","ttl":60000,"compressed":true,"value":\#(bomb)}"#)
        #expect(try errorName(reply) == "too_large")
        #expect(try errorName(connection.request(#"{"action":"get","key":"bomb"}"#)) == "not_found")
        let growth = try peak(broker) - before
        print("gzip bomb (100 MB inflated): peak RSS grew by \(megabytes(growth))")
        #expect(growth < 16 << 20, "the bomb must not be inflated (peak grew \(megabytes(growth)))")
    }

    @Test func slowlorisPeersAreCutOffWhileIdleAndBusyConnectionsAreServed() async throws {
        let broker = try await serve(["--request-timeout", "1s"])
        let idle = try RawConnection(path: broker.path)  // opened first, silent throughout: never timed out
        let busy = try RawConnection(path: broker.path)
        #expect(try errorName(busy.request(#"{"action":"ping"}"#)) == nil)
        let before = try peak(broker)
        let path = broker.path
        // 20 peers each dribble one byte a second of a request that never ends.
        let dribblers = (0..<20).map { _ in
            Task {
                try await onThread { () throws -> String in
                    let peer = try RawConnection(path: path, timeoutSeconds: 1)
                    let bytes = Array(#"{"action":"set","key":"slow","value":"#.utf8)
                    for byte in bytes {
                        try peer.send([byte])
                        if let line = try peer.readLineIfAny() { return line }
                    }
                    throw TestFailure("the broker let a line dribble for \(bytes.count) seconds")
                }
            }
        }
        var pings = 0
        while !dribblers.isEmpty, pings < 5 {  // served while the slow peers hold their connections
            #expect(try errorName(busy.request(#"{"action":"ping"}"#)) == nil)
            pings += 1
        }
        for dribbler in dribblers {
            #expect(try errorName(try await dribbler.value) == "request_timeout")
        }
        #expect(try await waitFor { try openConnections(busy) == 2 }, "every slow peer was closed")
        #expect(try errorName(idle.request(#"{"action":"ping"}"#)) == nil, "an idle connection is never cut off")
        #expect(try errorName(busy.request(#"{"action":"get","key":"slow"}"#)) == "not_found")
        let growth = try peak(broker) - before
        #expect(growth < 16 << 20, "peak grew \(megabytes(growth))")
    }

    @Test func twoThousandSimultaneousConnectionsMeetTheCapAndTheBrokerKeepsServing() async throws {
        let broker = try await serve()  // the default cap: 1,024 connections
        let control = try RawConnection(path: broker.path)
        #expect(try errorName(control.request(#"{"action":"set","key":"keep","value":"v","ttl":60000}"#)) == nil)
        let before = try peak(broker)
        let path = broker.path
        // 2,000 connections held at once; the broker admits 1,023 more (the cap of 1,024 counts the control
        // connection) and tells each of the other 977 `too_many_connections` before closing it.
        let outcomes = try await onThread { () throws -> (admitted: Int, refused: Int, open: Int?, served: String?) in
            let connections = try (0..<2_000).map { _ in try RawConnection(path: path, timeoutSeconds: 10) }
            var polls = connections.map { pollfd(fd: $0.fileDescriptor, events: Int16(POLLIN), revents: 0) }
            var readable = Set<Int>()
            let deadline = monotonicSeconds() + 30
            while readable.count < 977, monotonicSeconds() < deadline {
                for index in polls.indices { polls[index].revents = 0 }
                _ = poll(&polls, nfds_t(polls.count), 200)
                for index in polls.indices where polls[index].revents != 0 { readable.insert(index) }
            }
            var refused = 0
            for index in readable.sorted() {
                let reply = try connections[index].readLine()
                guard try errorName(reply) == "too_many_connections" else {
                    throw TestFailure("a refused connection was told \(reply)")
                }
                guard connections[index].readsEndOfFile() else { throw TestFailure("a refused connection stayed open") }
                refused += 1
            }
            // Checked while all 2,000 are still held:
            return (connections.count - refused, refused, try openConnections(control),
                    try errorName(control.request(#"{"action":"get","key":"keep"}"#)))
        }
        #expect(outcomes.admitted + outcomes.refused == 2_000)
        #expect(outcomes.admitted == 1_023, "the cap (1,024) counts the control connection")
        #expect(outcomes.open == 1_024)
        #expect(outcomes.served == nil, "the broker still serves at its cap")
        let growth = try peak(broker) - before
        print("2,000 connections: peak RSS grew by \(megabytes(growth))")
        #expect(growth < 64 << 20, "peak grew \(megabytes(growth))")
        #expect(try await waitFor { try openConnections(control) == 1 }, "every connection's place is given back")
        let later = try RawConnection(path: broker.path)
        #expect(try errorName(later.request(#"{"action":"ping"}"#)) == nil)
    }

    @Test func fiveHundredClientsAgainstACapOfSixteenRetryAndLoseNoRequest() async throws {
        let broker = try await serve(["--max-connections", "16"])
        let path = broker.path
        // Each client makes its own connection at once: most are refused at the cap (or find the backlog full,
        // EAGAIN) and retry. `increment` is not idempotent, so the total also proves none ran twice.
        let totals = try await withThrowingTaskGroup(of: Int64.self) { group in
            for index in 0..<500 {
                group.addTask {
                    let client = Client(
                        configuration: ClientConfiguration(socketPath: path, secret: nil, timeout: .seconds(60)))
                    let count = try await client.increment("count")  // the first call: it meets the cap
                    try await client.set("client-\(index)", index, ttl: .seconds(60))
                    await client.close()
                    return count
                }
            }
            return try await group.reduce(into: [Int64]()) { $0.append($1) }
        }
        #expect(totals.sorted() == Array(1...500), "every increment applied exactly once")
        let reader = Client(configuration: ClientConfiguration(socketPath: path, secret: nil))
        for index in 0..<500 {
            #expect(try await reader.get("client-\(index)", as: Int.self) == index)
        }
        let metrics = try await reader.metrics()
        #expect(!metrics.contains(#"ephemeral_broker_connections_closed_total{error="too_many_connections"} 0"#), "the cap was really reached")
    }

    @Test func aClientFindingTheBacklogFullRetriesItsConnectAndItsRequestLandsOnce() async throws {
        let broker = try await serve()
        let path = broker.path
        broker.process.signal(SIGSTOP)  // a broker too busy to accept: its listen backlog fills up
        let queued = fillListenBacklog(of: path)
        #expect(queued.count >= 1 && queued.count < 10_000, "the backlog filled at \(queued.count)")
        let client = Client(configuration: ClientConfiguration(socketPath: path, secret: nil, timeout: .seconds(30)))
        let increment = Task { try await client.increment("landed") }
        // The scenario itself: the broker stays stopped while the client's connects meet a full backlog (EAGAIN).
        try await Task.sleep(for: .milliseconds(300))
        broker.process.signal(SIGCONT)
        for descriptor in queued { close(descriptor) }
        #expect(try await increment.value == 1)
        #expect(try await client.increment("landed") == 2, "the first increment ran exactly once")
    }
}
