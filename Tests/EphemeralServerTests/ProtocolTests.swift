import BrokerTestSupport
import EphemeralServer
import EphemeralStore
import EphemeralWire
import Foundation
import Testing

@Suite("Wire protocol over a real socket")
struct ProtocolTests {
    @Test func everyActionAnswersAsTheOriginal() async throws {
        let harness = try await BrokerHarness.start()
        defer { Task { await harness.broker.shutdown() } }
        let connection = try harness.connect()
        let now = harness.clock.now()

        let pong = try json(try connection.request(#"{"action":"ping"}"#))
        #expect(pong["ok"] as? Bool == true)
        #expect((pong["pong"] as? NSNumber)?.int64Value == now)

        #expect(
            try unversioned(try connection.request(#"{"action":"set","key":"k","value":{"a": [1, "é"]},"ttl":1000}"#))
                == #"{"ok":true}"#)
        #expect(
            try unversioned(try connection.request(#"{"action":"get","key":"k"}"#))
                == #"{"ok":true,"value":{"a":[1,"é"]},"compressed":false}"#)

        let list = try json(try connection.request(#"{"action":"list"}"#))
        let items = try #require(list["items"] as? [String: [String: Any]])
        #expect((items["k"]?["expires"] as? NSNumber)?.int64Value == now + 1000)
        #expect(items["k"]?["hasValue"] as? Bool == true)
        #expect(items["k"]?["value"] == nil, "list never shows values")

        let stats = try #require(try json(try connection.request(#"{"action":"stats"}"#))["stats"] as? [String: Any])
        #expect(stats["items"] as? Int == 1)
        #expect(stats["leases"] as? Int == 0)
        let memory = try #require(stats["memory"] as? [String: Any])
        #expect((memory["rss"] as? Int ?? 0) > 0)
        #expect((memory["approximateStoreBytes"] as? Int ?? 0) > 0)
        #expect(stats["uptime"] is NSNumber)

        let health = try json(try connection.request(#"{"action":"health"}"#))
        #expect(health["status"] as? String == "healthy")
        let capacity = try #require(health["capacity"] as? [String: Any])
        #expect(capacity["items"] as? Int == 1)
        #expect(capacity["maxItems"] as? Int == 10_000)
        #expect(capacity["atCapacity"] as? Bool == false)
        let connections = try #require(health["connections"] as? [String: Any])
        #expect(connections["draining"] as? Bool == false)
        #expect(connections["open"] as? Int == 1)

        #expect(try connection.request(#"{"action":"lease","key":"p","workerId":"w1"}"#) == #"{"ok":true,"value":0}"#)
        #expect(
            try connection.request(#"{"action":"lease","key":"p","workerId":"w2","ttl":500}"#)
                == #"{"ok":true,"value":1}"#)
        #expect(
            try errorName(try connection.request(#"{"action":"lease","key":"q","workerId":"w1"}"#))
                == "worker_already_has_lease")
        #expect(try connection.request(#"{"action":"release","workerId":"w1"}"#) == #"{"ok":true,"released":true}"#)
        #expect(try connection.request(#"{"action":"release","workerId":"w1"}"#) == #"{"ok":true,"released":false}"#)

        #expect(try unversioned(try connection.request(#"{"action":"del","key":"k"}"#)) == #"{"ok":true}"#)
        #expect(try unversioned(try connection.request(#"{"action":"del","key":"k"}"#)) == #"{"ok":true}"#)
        #expect(try errorName(try connection.request(#"{"action":"get","key":"k"}"#)) == "not_found")

        let metrics = try json(try connection.request(#"{"action":"metrics"}"#))
        #expect(metrics["format"] as? String == "prometheus")
        let text = try #require(metrics["metrics"] as? String)
        #expect(text.contains(#"ephemeral_broker_operations_total{action="set",result="success"} 1"#))
        #expect(text.contains(#"ephemeral_broker_operations_total{action="lease",result="error"} 1"#))
        #expect(text.contains("ephemeral_broker_capacity_items 0"))
        #expect(text.contains("ephemeral_broker_capacity_max 10000"))
        #expect(text.contains("ephemeral_broker_leases 1"))
        #expect(text.contains("ephemeral_broker_connections 1"))
    }

    @Test func expiryIsDrivenByTheInjectedClock() async throws {
        let harness = try await BrokerHarness.start()
        defer { Task { await harness.broker.shutdown() } }
        let connection = try harness.connect()
        _ = try connection.request(#"{"action":"set","key":"t","value":1,"ttl":100}"#)
        harness.clock.advance(by: 99)
        #expect(try errorName(try connection.request(#"{"action":"get","key":"t"}"#)) == nil)
        harness.clock.advance(by: 1)
        #expect(try errorName(try connection.request(#"{"action":"get","key":"t"}"#)) == "expired")
        #expect(try errorName(try connection.request(#"{"action":"get","key":"t"}"#)) == "not_found")
        let text = try json(try connection.request(#"{"action":"metrics"}"#))["metrics"] as? String ?? ""
        #expect(text.contains(#"ephemeral_broker_expired_total{type="items"} 1"#))
    }

    @Test func badInputGetsNamedErrorsAndChangesNothing() async throws {
        let harness = try await BrokerHarness.start {
            $0.store.maxItems = 2
            $0.store.maxValueSize = 16
            $0.maxRequestSize = 256
        }
        defer { Task { await harness.broker.shutdown() } }
        let connection = try harness.connect()
        _ = try connection.request(#"{"action":"set","key":"keep","value":"original","ttl":60000}"#)
        let cases: [(String, String)] = [
            ("{not json", "invalid_json"), ("null", "invalid_request"), ("[1]", "invalid_request"),
            ("42", "invalid_request"), (#"{"key":"keep"}"#, "invalid_request"),
            (#"{"action":"nope"}"#, "unknown_action"),
            (#"{"action":"get"}"#, "key_required"),
            (#"{"action":"set","key":"keep","value":1,"ttl":"5"}"#, "invalid_ttl"),
            (#"{"action":"set","key":"keep","value":1,"ttl":-5}"#, "invalid_ttl"),
            (#"{"action":"set","key":"keep","value":1}"#, "ttl_required"),
            (#"{"action":"set","key":"keep","value":"0123456789abcdefXYZ","ttl":5}"#, "too_large"),
            (#"{"action":"set","key":"keep","value":"!!","ttl":5,"compressed":true}"#, "invalid_compressed_value"),
            (#"{"action":"lease","key":"p"}"#, "key_and_worker_required"),
            (#"{"action":"release"}"#, "worker_required"),
            (String(repeating: "x", count: 300), "too_large"),
        ]
        for (line, expected) in cases {
            #expect(try errorName(try connection.request(line)) == expected, "\(line)")
        }
        _ = try connection.request(#"{"action":"set","key":"second","value":2,"ttl":60000}"#)
        #expect(
            try errorName(try connection.request(#"{"action":"set","key":"third","value":3,"ttl":60000}"#))
                == "max_items")
        #expect(
            try unversioned(try connection.request(#"{"action":"get","key":"keep"}"#))
                == #"{"ok":true,"value":"original","compressed":false}"#)
        let stats = try json(try connection.request(#"{"action":"stats"}"#))["stats"] as? [String: Any]
        #expect(stats?["items"] as? Int == 2)
        #expect(stats?["leases"] as? Int == 0)
    }

    @Test func pipelinedRepliesComeInRequestOrder() async throws {
        let harness = try await BrokerHarness.start()
        defer { Task { await harness.broker.shutdown() } }
        let connection = try harness.connect()
        var batch = ""
        for index in 0..<500 {
            batch += #"{"action":"set","key":"k\#(index)","value":\#(index),"ttl":60000}"# + "\n"
            batch += #"{"action":"get","key":"k\#(index)"}"# + "\n"
        }
        try connection.send(batch)
        for index in 0..<500 {
            #expect(try unversioned(try connection.readLine()) == #"{"ok":true}"#)
            #expect(try unversioned(try connection.readLine()) == #"{"ok":true,"value":\#(index),"compressed":false}"#)
        }
    }


    /// A request can answer an earlier one of the same connection and the same read: a `set` wakes a `wait` sent
    /// just before it. Replies still come in request order, with the woken one in its place, whether the four
    /// requests arrive in one write or one by one.
    @Test func aRequestThatAnswersAnEarlierOneOfItsOwnBurstKeepsTheOrder() async throws {
        let harness = try await BrokerHarness.start()
        defer { Task { await harness.broker.shutdown() } }
        for (round, oneWrite) in [(0, true), (1, false)] {
            let connection = try harness.connect()
            let lines = [
                #"{"action":"ping","id":1}"#,
                #"{"action":"wait","key":"ready\#(round)","timeout":5000,"id":2}"#,
                #"{"action":"ping","id":3}"#,
                #"{"action":"set","key":"ready\#(round)","value":"go","ttl":60000,"id":4}"#,
                #"{"action":"ping","id":5}"#,
            ]
            if oneWrite {
                try connection.send(lines.map { $0 + "\n" }.joined())
            } else {
                for line in lines { try connection.send(line + "\n") }
            }
            var replies: [[String: Any]] = []
            for _ in lines { replies.append(try json(try connection.readLine())) }
            #expect(replies.map { $0["id"] as? Int } == [1, 2, 3, 4, 5], "one write: \(oneWrite)")
            #expect(replies[1]["value"] as? String == "go")
            #expect(replies.allSatisfy { $0["ok"] as? Bool == true })
        }
    }
    @Test func utf8SplitAcrossWritesDecodes() async throws {
        let harness = try await BrokerHarness.start()
        defer { Task { await harness.broker.shutdown() } }
        let connection = try harness.connect()
        let line = Array((#"{"action":"set","key":"ключ😀","value":"värde 😀","ttl":60000}"# + "\n").utf8)
        for byte in line { try connection.send([byte]) }
        #expect(try unversioned(try connection.readLine()) == #"{"ok":true}"#)
        #expect(
            try unversioned(try connection.request(#"{"action":"get","key":"ключ😀"}"#))
                == #"{"ok":true,"value":"värde 😀","compressed":false}"#)
    }

    @Test func anOversizedLineIsRefusedAndTheConnectionGoesOn() async throws {
        let harness = try await BrokerHarness.start { $0.maxRequestSize = 1024 }
        defer { Task { await harness.broker.shutdown() } }
        let connection = try harness.connect()
        let huge = #"{"action":"set","key":"big","ttl":5,"value":""# + String(repeating: "é", count: 600) + "\"}"
        #expect(huge.utf8.count > 1024 && huge.utf16.count < 1024, "bytes, not UTF-16 units, are counted")
        #expect(try errorName(try connection.request(huge)) == "too_large")
        #expect(try errorName(try connection.request(#"{"action":"get","key":"big"}"#)) == "not_found")
        try connection.send(String(repeating: "z", count: 200_000))
        #expect(try errorName(try connection.readLine()) == "too_large", "reported as soon as the limit is crossed")
        try connection.send(String(repeating: "z", count: 200_000) + "\n")
        #expect(try errorName(try connection.request(#"{"action":"ping"}"#)) == nil)
    }

    @Test func aPeerVanishingMidRequestDisturbsNoOne() async throws {
        let harness = try await BrokerHarness.start()
        defer { Task { await harness.broker.shutdown() } }
        let steady = try harness.connect()
        _ = try steady.request(#"{"action":"set","key":"k","value":1,"ttl":60000}"#)
        do {
            let vanishing = try harness.connect()
            try vanishing.send(#"{"action":"set","key":"k","value":"half"#)
        }
        #expect(
            try await waitFor {
                let health = try json(try steady.request(#"{"action":"health"}"#))
                return (health["connections"] as? [String: Any])?["open"] as? Int == 1
            })
        #expect(
            try unversioned(try steady.request(#"{"action":"get","key":"k"}"#))
                == #"{"ok":true,"value":1,"compressed":false}"#)
        let metrics = try json(try steady.request(#"{"action":"metrics"}"#))["metrics"] as? String ?? ""
        // In flight: only the `metrics` request answering this; the half request never counted.
        #expect(metrics.contains("ephemeral_broker_requests_in_flight 1\n"), "the half request left nothing in flight")
    }

    @Test func drainAnswersDrainingThenStopRemovesEverything() async throws {
        let harness = try await BrokerHarness.start()
        let existing = try harness.connect()
        _ = try existing.request(#"{"action":"set","key":"secret","value":"s","ttl":60000}"#)
        await harness.broker.drain()
        let refusal = try existing.request(#"{"action":"get","key":"secret","id":7}"#)
        #expect(try errorName(refusal) == "draining")
        #expect(try json(refusal)["id"] as? Int == 7, "a draining reply answers its request by id")
        let late = try harness.connect()
        #expect(try errorName(try late.request(#"{"action":"ping"}"#)) == "draining")
        await harness.broker.stop()
        #expect(existing.readsEndOfFile())
        #expect(!pathExists(harness.path))
        #expect(!pathExists(String(harness.path[..<harness.path.lastIndex(of: "/")!])))
        await harness.broker.waitUntilStopped()
    }

    @Test func thePrivateDirectoryIs0700() async throws {
        let harness = try await BrokerHarness.start { $0.socket = .privateDirectory(pipeId: "named") }
        defer { Task { await harness.broker.shutdown() } }
        let directory = String(harness.path[..<harness.path.lastIndex(of: "/")!])
        #expect(permissions(of: directory) == 0o700)
        #expect(harness.path.hasSuffix("/broker-named.sock"))
        #expect(harness.path.utf8.count < 108)
    }

    @Test func idleTimeoutStopsTheBrokerCleanly() async throws {
        let broker = Broker(configuration: BrokerConfiguration(idleTimeout: 50))
        let path = try await broker.start()
        await broker.waitUntilStopped()
        #expect(!pathExists(path))
    }
}

@Suite("Signing and replay over a real socket")
struct SigningTests {
    let secret = "test-secret"

    @Test func unsignedIsRefusedSignedIsServedAndRepliesAreSigned() async throws {
        let harness = try await BrokerHarness.start { $0.secret = "test-secret" }
        defer { Task { await harness.broker.shutdown() } }
        let connection = try harness.connect()
        #expect(
            try errorName(try connection.request(#"{"action":"set","key":"k","value":1,"ttl":60000}"#)) == "auth_failed"
        )
        #expect(
            try errorName(
                try connection.signedRequest(#"{"action":"set","key":"k","value":1,"ttl":60000}"#, secret: "wrong"))
                == "auth_failed")
        let reply = try connection.signedRequest(#"{"action":"get","key":"k"}"#, secret: secret)
        #expect(try errorName(reply) == "not_found", "the refused sets stored nothing")
        #expect(
            try errorName(
                try connection.signedRequest(#"{"action":"set","key":"k","value":1,"ttl":60000}"#, secret: secret))
                == nil)
        let signed = try connection.signedRequest(#"{"action":"get","key":"k"}"#, secret: secret)
        let body = String(signed.dropLast(#","hmac":""#.count + 64 + 2)) + "}"
        let expected = Array(body.utf8).withUnsafeBytes {
            JSONLineWriter.replyMAC(
                signer: FrameSigner(secret: secret), nonce: nil, replyWithoutMAC: $0, closingBrace: false)
        }
        #expect(signed == String(body.dropLast()) + #","hmac":""# + expected + #""}"#)
    }

    @Test func aDrainingReplyToASignedRequestIsSigned() async throws {
        let harness = try await BrokerHarness.start { $0.secret = "test-secret" }
        let connection = try harness.connect()
        await harness.broker.drain()
        let reply = try connection.signedRequest(#"{"action":"ping","id":3}"#, secret: secret)
        #expect(try errorName(reply) == "draining")
        #expect(try json(reply)["id"] as? Int == 3)
        #expect((try json(reply)["hmac"] as? String)?.count == 64, "signed like every reply to a signed request")
        await harness.broker.shutdown()
    }

    @Test func replayedAndStaleRequestsAreRefused() async throws {
        let harness = try await BrokerHarness.start { $0.secret = "test-secret" }
        defer { Task { await harness.broker.shutdown() } }
        let connection = try harness.connect()
        let now = harness.clock.now()
        let fresh = #"{"action":"ping","ts":\#(now),"nonce":"nonce-abcdef01"}"#
        #expect(try errorName(try connection.signedRequest(fresh, secret: secret)) == nil)
        #expect(try errorName(try connection.signedRequest(fresh, secret: secret)) == "replayed")
        let stale = #"{"action":"ping","ts":\#(now - 60_000),"nonce":"nonce-abcdef02"}"#
        #expect(try errorName(try connection.signedRequest(stale, secret: secret)) == "replayed")
    }

    @Test func requireNonceRefusesTheOriginalClientsForm() async throws {
        let harness = try await BrokerHarness.start {
            $0.secret = "test-secret"
            $0.requireNonce = true
        }
        defer { Task { await harness.broker.shutdown() } }
        let connection = try harness.connect()
        #expect(try errorName(try connection.signedRequest(#"{"action":"ping"}"#, secret: secret)) == "auth_failed")
    }
}

@Suite("Fixed socket paths")
struct FixedSocketTests {
    @Test func socketIs0700AndAStaleOneIsReplaced() async throws {
        let directory = makeTemporaryDirectory()
        let path = directory + "/b.sock"
        try makeStaleSocket(at: path)
        let broker = Broker(configuration: BrokerConfiguration(socket: .path(path)))
        #expect(try await broker.start() == path)
        #expect(permissions(of: path) == 0o700)
        #expect(try errorName(try RawConnection(path: path).request(#"{"action":"ping"}"#)) == nil)
        await broker.shutdown()
        #expect(!pathExists(path))
        #expect(!pathExists(path + ".lock"))
    }

    @Test func aDirectoryWritableByOthersIsRefused() async throws {
        let directory = makeTemporaryDirectory()
        chmod(directory, 0o777)
        let broker = Broker(configuration: BrokerConfiguration(socket: .path(directory + "/b.sock")))
        await #expect(throws: SocketSetupError.self) { try await broker.start() }
        #expect(!pathExists(directory + "/b.sock"))
        await broker.stop()
    }

    @Test func ofTwoConcurrentStartsExactlyOneWins() async throws {
        let path = makeTemporaryDirectory() + "/b.sock"
        let brokers = (0..<4).map { _ in Broker(configuration: BrokerConfiguration(socket: .path(path))) }
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for broker in brokers { group.addTask { (try? await broker.start()) != nil } }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 }.count == 1)
        #expect(try errorName(try RawConnection(path: path).request(#"{"action":"ping"}"#)) == nil)
        for broker in brokers { await broker.shutdown() }
    }
}

@Suite("Resource limits over real sockets")
struct ResourceLimitTests {
    @Test func theConnectionCapRefusesOneMoreAndKeepsServingTheRest() async throws {
        let harness = try await BrokerHarness.start { $0.maxConnections = 2 }
        defer { Task { await harness.broker.shutdown() } }
        let first = try harness.connect()
        var second: RawConnection? = try harness.connect()
        #expect(try errorName(try first.request(#"{"action":"ping"}"#)) == nil)
        #expect(try errorName(try second!.request(#"{"action":"ping"}"#)) == nil)
        let refused = try harness.connect()
        #expect(try errorName(try refused.readLine()) == "too_many_connections")
        #expect(refused.readsEndOfFile())
        #expect(try errorName(try first.request(#"{"action":"ping"}"#)) == nil, "the others keep being served")
        second = nil
        #expect(
            try await waitFor {
                let health = try json(try first.request(#"{"action":"health"}"#))
                return (health["connections"] as? [String: Any])?["open"] as? Int == 1
            })
        let admitted = try harness.connect()
        #expect(try errorName(try admitted.request(#"{"action":"ping"}"#)) == nil, "a freed place is reused")
        let text = try json(try first.request(#"{"action":"metrics"}"#))["metrics"] as? String ?? ""
        #expect(text.contains("ephemeral_broker_connections 2"))
    }
}
