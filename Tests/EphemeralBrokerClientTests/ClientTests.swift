import BrokerTestSupport
import EphemeralBrokerClient
import EphemeralWire
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A real broker process (`ephemeral-broker serve`) on a fixed socket path.
final class ServedBroker {
    let path: String
    let secret: String?
    private(set) var process: ChildProcess

    init(secret: String? = "client-test-secret", arguments: [String] = [], path: String? = nil) async throws {
        self.path = path ?? makeTemporaryDirectory() + "/b.sock"
        self.secret = secret
        process = try Self.launch(path: self.path, secret: secret, arguments: arguments)
        guard try await process.firstLine() == self.path else { throw TestFailure("serve printed no path") }
    }

    static func launch(path: String, secret: String?, arguments: [String]) throws -> ChildProcess {
        try ChildProcess(brokerBinary, ["serve", "--socket", path] + arguments, environment: ["BROKER_SECRET": secret])
    }

    func client(timeout: Duration = .seconds(5), secret: String?? = .none) -> Client {
        Client(configuration: ClientConfiguration(socketPath: path, secret: secret ?? self.secret, timeout: timeout))
    }

    func stop() async throws {
        process.signal(SIGTERM)
        _ = try await process.wait()
    }

    /// Ends the broker at once (for `defer`, which cannot wait).
    func kill() { process.signal(SIGKILL) }

    deinit { process.signal(SIGKILL) }
}

struct Account: Codable, Equatable {
    var user: String
    var password: String
    var tags: [String]
}

func code(_ body: () async throws -> Void) async -> String? {
    do { try await body() } catch let error as BrokerError { return error.code.wireName } catch { return "\(error)" }
    return nil
}

@Suite("Client against the real broker binary")
struct ClientTests {
    @Test func everyOperationAndError() async throws {
        let broker = try await ServedBroker(arguments: ["--max-items", "5", "--max-value-size", "2000"])
        defer { broker.kill() }
        let client = broker.client()

        let account = Account(user: "ada", password: "p@ss ✓", tags: ["a", "b"])
        try await client.set("account", account, ttl: .seconds(60))
        #expect(try await client.get("account", as: Account.self) == account)
        try await client.set("n", 42, ttl: .seconds(60))
        #expect(try await client.get("n") == 42)
        #expect(try await client.getJSON("n") == Array("42".utf8))
        try await client.setJSON("raw", json: Array(#" { "x" : [1, 2] } "#.utf8), ttl: .seconds(60))
        #expect(try await client.getJSON("raw") == Array(#"{"x":[1,2]}"#.utf8))
        #expect(try await client.list().map(\.key) == ["account", "n", "raw"])
        #expect(try await client.ping() < .seconds(5))
        let stats = try await client.stats()
        #expect(stats.items == 3 && stats.capacity.maxItems == 5)
        let health = try await client.health()
        #expect(health.status == "healthy" && !health.connections.draining)
        #expect(
            try await client.metrics().contains(#"ephemeral_broker_operations_total{action="set",result="success"} 3"#))
        #expect(try await client.lease("pool", workerId: "w1") == 0)
        #expect(try await client.lease("pool", workerId: "w2", ttl: .seconds(30)) == 1)
        #expect(try await client.release(workerId: "w1"))
        #expect(try await !client.release(workerId: "w1"))
        try await client.delete("n")
        try await client.delete("n")

        #expect(await code { _ = try await client.getJSON("n") } == "not_found")
        #expect(await code { try await client.set("x", 1, ttl: nil) } == "ttl_required")
        #expect(await code { _ = try await client.lease("other", workerId: "w2") } == "worker_already_has_lease")
        #expect(
            await code { try await client.set("big", String(repeating: "x", count: 3000), ttl: .seconds(1)) }
                == "too_large")
        #expect(await code { _ = try await client.get("account", as: Int.self) } == "invalid_value")
        #expect(
            await code { try await client.setJSON("bad", json: Array("{".utf8), ttl: .seconds(1)) } == "invalid_value")

        try await client.set("short", "s", ttl: .milliseconds(30))
        var outcome: String?
        let expired = await waitUntilAsync {
            outcome = await code { _ = try await client.getJSON("short") }
            return outcome != nil
        }
        #expect(expired && outcome == "expired")
        #expect(await code { _ = try await client.getJSON("short") } == "not_found")

        for index in 0..<3 { try await client.set("fill\(index)", index, ttl: .seconds(60)) }
        #expect(await code { try await client.set("one-too-many", 1, ttl: .seconds(60)) } == "max_items")
        #expect(await code { try await broker.client(secret: "wrong").ping() } == "auth_failed")
        #expect(await code { try await broker.client(secret: .some(nil)).ping() } == "auth_failed")
        #expect(throws: BrokerError.self) { try Client(environment: [:]) }
    }

    @Test func compressedValuesRoundTripAndAreStoredCompressed() async throws {
        let broker = try await ServedBroker(secret: nil)
        defer { broker.kill() }
        let client = broker.client()
        let big = Account(user: String(repeating: "u", count: 3000), password: "p", tags: [])
        try await client.set("big", big, ttl: .seconds(60))
        #expect(try await client.get("big", as: Account.self) == big)
        let raw = try RawConnection(path: broker.path).request(#"{"action":"get","key":"big"}"#)
        #expect(raw.contains(#""compressed":true"#))
        #expect(!raw.contains("uuuuuuuu"))
    }

    @Test func refusalsTheBrokerCannotSignAreReportedByTheirNames() async throws {
        let broker = try await ServedBroker(arguments: ["--max-request-size", "4096"])
        let client = broker.client()
        // Random hex does not compress below the limit: the broker refuses the line before reading it, unsigned.
        let big = (0..<8_000).map { _ in String(UInt8.random(in: 0...255), radix: 16) }.joined()
        #expect(await code { try await client.set("big", big, ttl: .seconds(60)) } == "too_large")
        #expect(await code { _ = try await client.ping() } == nil, "the connection goes on")
        #expect(await code { _ = try await client.get("big", as: String.self) } == "not_found")
    }

    @Test func aThousandConcurrentCallsOnOneClientAreAnsweredCorrectly() async throws {
        let broker = try await ServedBroker()
        defer { broker.kill() }
        let client = broker.client(timeout: .seconds(30))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<1000 {
                group.addTask {
                    try await client.set("k\(index)", ["index": index], ttl: .seconds(60))
                    let value: [String: Int] = try await client.get("k\(index)")
                    guard value == ["index": index] else { throw TestFailure("k\(index) read \(value)") }
                }
            }
            try await group.waitForAll()
        }
        #expect(try await client.stats().items == 1000)
        let connections = try await client.health().connections.open
        #expect(connections == 1, "one persistent connection carried every call")
    }

    @Test func aClientStarted300msBeforeItsBrokerSucceeds() async throws {
        let path = makeTemporaryDirectory() + "/late.sock"
        // The timeout covers the broker's start-up, slow under a sanitizer: the point is that the call succeeds.
        let client = Client(configuration: ClientConfiguration(socketPath: path, timeout: .seconds(30)))
        let ping = Task { try await client.ping() }
        try await Task.sleep(for: .milliseconds(300))  // the scenario itself: the broker comes up late
        let broker = try await ServedBroker(secret: nil, path: path)
        defer { broker.kill() }
        _ = try await ping.value
        #expect(try await client.list().isEmpty)
    }

    @Test func aBrokerRestartedUnderALiveClient() async throws {
        let path = makeTemporaryDirectory() + "/restart.sock"
        var broker = try await ServedBroker(path: path)
        let client = broker.client()
        try await client.set("before", 1, ttl: .seconds(60))
        try await broker.stop()
        broker = try await ServedBroker(path: path)
        defer { broker.kill() }
        try await client.ping()
        #expect(await code { _ = try await client.getJSON("before") } == "not_found", "a new broker starts empty")
    }

    @Test func theReplayProtectedFormIsWhatTheClientSends() async throws {
        let broker = try await ServedBroker(arguments: ["--require-nonce"])
        defer { broker.kill() }
        let client = broker.client()
        try await client.set("k", "v", ttl: .seconds(60))
        #expect(try await client.get("k") == "v")
    }
}

@Suite("Client against a misbehaving fake broker")
struct FakeBrokerTests {
    let secret = "fake-secret"

    func client(_ fake: FakeBroker, secret: String? = nil, timeout: Duration = .seconds(15)) -> Client {
        Client(configuration: ClientConfiguration(socketPath: fake.path, secret: secret, timeout: timeout))
    }

    @Test func unsignedOrWronglySignedRepliesAreRejected() async throws {
        let unsigned = try FakeBroker { _ in .write(#"{"ok":true,"id":$ID,"pong":1}"# + "\n") }
        defer { unsigned.stop() }
        #expect(await code { try await client(unsigned, secret: secret).ping() } == "bad_reply_signature")
        let wrong = try FakeBroker { _ in
            .write(#"{"ok":true,"pong":1,"hmac":""# + String(repeating: "ab", count: 32) + "\"}\n")
        }
        defer { wrong.stop() }
        #expect(await code { try await client(wrong, secret: secret).ping() } == "bad_reply_signature")
        // Signed with the right secret but for another request's nonce: a replayed reply.
        let body = #"{"ok":true,"pong":1"#
        let mac = Array(body.utf8).withUnsafeBytes {
            JSONLineWriter.replyMAC(
                signer: FrameSigner(secret: secret), nonce: "another-nonce", replyWithoutMAC: $0, closingBrace: true)
        }
        let replayed = try FakeBroker { _ in .write(body + #","hmac":""# + mac + "\"}\n") }
        defer { replayed.stop() }
        #expect(await code { try await client(replayed, secret: secret).ping() } == "bad_reply_signature")
    }

    @Test func garbageIsAClearErrorAndTheClientRecovers() async throws {
        let count = Counter()
        let fake = try FakeBroker { _ in
            count.next() == 0 ? .write("garbage\n") : .write(#"{"ok":true,"id":$ID,"pong":1}"# + "\n")
        }
        defer { fake.stop() }
        let client = client(fake)
        #expect(await code { try await client.ping() } == "invalid_reply")
        #expect(await code { try await client.ping() } == nil)
    }

    @Test func silenceTimesOutWithinTheTimeoutAndTheNextCallUsesAFreshConnection() async throws {
        // The fake never answers this client's first request (id 1), and answers every other one. (Keyed on the
        // id, not on arrival order: on a loaded machine the first call may time out before its request leaves.)
        let fake = try FakeBroker { line in
            FakeBroker.id(in: line) == "1" ? .ignore : .write(#"{"ok":true,"id":$ID,"pong":1}"# + "\n")
        }
        defer { fake.stop() }
        let client = client(fake, timeout: .seconds(5))  // room for the next call on a loaded machine
        let start = ContinuousClock.now
        #expect(await code { try await client.ping() } == "timeout")
        #expect(ContinuousClock.now - start < .seconds(25), "the error comes at the timeout, not never")
        let next = await code { try await client.ping() }
        #expect(next == nil, "\(next ?? "")")
    }

    @Test func aBrokerClosingMidReplyFailsNonIdempotentCallsAndRetriesIdempotentOnes() async throws {
        let count = Counter()
        let fake = try FakeBroker { line in
            if count.next() == 0 { return .writeThenClose(#"{"ok":true,"rele"#) }
            return .write(
                line.contains("release")
                    ? #"{"ok":true,"id":$ID,"released":true}"# + "\n" : #"{"ok":true,"id":$ID,"pong":1}"# + "\n")
        }
        defer { fake.stop() }
        let client = client(fake)
        #expect(
            await code { try await client.release(workerId: "w") } == "connection_failed", "release is never sent twice"
        )
        let again = Counter()
        let flaky = try FakeBroker { _ in again.next() == 0 ? .close : .write(#"{"ok":true,"id":$ID,"pong":1}"# + "\n")
        }
        defer { flaky.stop() }
        #expect(
            await code { try await self.client(flaky).ping() } == nil, "ping is idempotent: retried on a new connection"
        )
    }

    @Test func anOutOfTurnReplyDoesNotReachTheWrongCaller() async throws {
        // Every request gets two replies: the second is out of turn.
        let fake = try FakeBroker { line in
            let key = line.contains("\"a\"") ? "a" : "b"
            return .write(
                #"{"ok":true,"id":$ID,"value":"\#(key)","compressed":false}"# + "\n"
                    + #"{"ok":true,"id":0,"value":"intruder","compressed":false}"# + "\n")
        }
        defer { fake.stop() }
        let client = client(fake)
        for _ in 0..<20 {
            async let first = try? client.get("a", as: String.self)
            async let second = try? client.get("b", as: String.self)
            let (a, b) = await (first, second)
            #expect(a == nil || a == "a")
            #expect(b == nil || b == "b")
        }
    }
}

/// A thread-safe counter for fake brokers' scripts.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func next() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value - 1
    }
}
