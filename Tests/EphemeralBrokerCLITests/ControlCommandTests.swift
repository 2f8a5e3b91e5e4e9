import BrokerTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Runs control commands as processes against one `serve` broker.
final class ControlHarness {
    let path: String
    let secret = "control-secret"
    let server: ChildProcess

    init(maxItems: Int = 3) async throws {
        path = makeTemporaryDirectory() + "/c.sock"
        server = try ChildProcess(
            brokerBinary, ["serve", "--socket", path, "--max-items", "\(maxItems)"],
            environment: ["BROKER_SECRET": secret])
        guard try await server.firstLine() == path else { throw TestFailure("serve printed no path") }
    }

    /// Runs `ephemeral-broker ARGS` with the broker's environment.
    func run(_ arguments: [String], environment: [String: String?] = [:]) async throws -> (
        status: Int32, out: String, err: String
    ) {
        var env: [String: String?] = ["EPHEMERAL_PIPE": path, "EPHEMERAL_SECRET": secret]
        for (key, value) in environment { env[key] = value }
        let child = try ChildProcess(brokerBinary, arguments, environment: env)
        let status = try await child.wait()
        return (status, child.output, child.errorOutput)
    }

    deinit { server.signal(SIGTERM) }
}

@Suite("Control commands, as processes")
struct ControlCommandTests {
    @Test func setGetDelListWithReadableAndJSONOutput() async throws {
        let broker = try await ControlHarness()
        #expect(try await broker.run(["set", "greeting", "hello world", "--ttl", "1m"]).status == 0)
        #expect(try await broker.run(["set", "config", #"{"retries": 3}"#, "--ttl", "60000"]).status == 0)
        #expect(try await broker.run(["set", "quoted", "42", "--string", "--ttl", "1m"]).status == 0)
        #expect(try await broker.run(["get", "greeting"]).out == "hello world\n")
        #expect(try await broker.run(["get", "greeting", "--json"]).out == "\"hello world\"\n")
        #expect(try await broker.run(["get", "config"]).out == #"{"retries":3}"# + "\n")
        #expect(try await broker.run(["get", "quoted", "--json"]).out == "\"42\"\n")
        let list = try await broker.run(["list", "--json"])
        #expect(list.status == 0)
        let keys = (try JSONSerialization.jsonObject(with: Data(list.out.utf8)) as? [[String: Any]])?.compactMap {
            $0["key"] as? String
        }
        #expect(keys == ["config", "greeting", "quoted"])
        #expect(try await broker.run(["list"]).out.contains("greeting\texpires in "))
        #expect(try await broker.run(["del", "greeting"]).status == 0)
        #expect(try await broker.run(["del", "greeting", "--json"]).out == "{\"ok\":true}\n")
        let missing = try await broker.run(["get", "greeting"])
        #expect(missing.status == 1)
        #expect(missing.err.contains("not_found"))
    }

    @Test func brokerErrorsExitOneWithTheirName() async throws {
        let broker = try await ControlHarness()
        let noTTL = try await broker.run(["set", "k", "v"])
        #expect(noTTL.status == 1 && noTTL.err.contains("ttl_required"))
        for index in 0..<3 { _ = try await broker.run(["set", "k\(index)", "\(index)", "--ttl", "1m"]) }
        let full = try await broker.run(["set", "k9", "9", "--ttl", "1m"])
        #expect(full.status == 1 && full.err.contains("max_items"))
        let wrongSecret = try await broker.run(["ping"], environment: ["EPHEMERAL_SECRET": "nope"])
        #expect(wrongSecret.status == 1 && wrongSecret.err.contains("auth_failed"))
        let noPipe = try await broker.run(["ping"], environment: ["EPHEMERAL_PIPE": nil])
        #expect(noPipe.status == 1 && noPipe.err.contains("EPHEMERAL_PIPE"))
        let gone = try await broker.run(["ping", "--socket", "/tmp/no-such-broker.sock", "--timeout", "300ms"])
        #expect(gone.status == 1 && (gone.err.contains("timeout") || gone.err.contains("connection_failed")))
    }

    @Test func usageErrorsExitTwo() async throws {
        let broker = try await ControlHarness()
        #expect(try await broker.run(["get"]).status == 2)
        #expect(try await broker.run(["set", "k", "v", "--ttl", "soon"]).status == 2)
        #expect(try await broker.run(["lease", "pool"]).status == 2, "--worker is required")
        #expect(try await broker.run(["frobnicate"]).status == 2)
    }

    @Test func pingStatsHealthMetrics() async throws {
        let broker = try await ControlHarness()
        #expect(try await broker.run(["ping"]).out.hasPrefix("pong "))
        #expect(try await broker.run(["ping", "--json"]).out.hasPrefix(#"{"ok":true,"latencyMs":"#))
        let stats = try await broker.run(["stats", "--json"])
        #expect(stats.status == 0)
        #expect((try JSONSerialization.jsonObject(with: Data(stats.out.utf8)) as? [String: Any])?["items"] as? Int == 0)
        #expect(try await broker.run(["stats"]).out.contains("\"maxItems\" : 3"))
        let health = try await broker.run(["health", "--json"])
        #expect(
            (try JSONSerialization.jsonObject(with: Data(health.out.utf8)) as? [String: Any])?["status"] as? String
                == "healthy")
        #expect(try await broker.run(["metrics"]).out.contains("# TYPE ephemeral_broker_requests_total counter"))
        #expect(try await broker.run(["metrics", "--json"]).out.hasPrefix(#"{"metrics":"#))
    }

    @Test func leaseAndRelease() async throws {
        let broker = try await ControlHarness()
        #expect(try await broker.run(["lease", "accounts", "--worker", "a"]).out == "0\n")
        #expect(try await broker.run(["lease", "accounts", "--worker", "b", "--ttl", "30s"]).out == "1\n")
        #expect(try await broker.run(["lease", "accounts", "--worker", "a", "--json"]).out == "{\"value\":0}\n")
        let twice = try await broker.run(["lease", "other", "--worker", "a"])
        #expect(twice.status == 1 && twice.err.contains("worker_already_has_lease"))
        #expect(try await broker.run(["release", "--worker", "a"]).out == "true\n")
        #expect(try await broker.run(["release", "--worker", "a", "--json"]).out == "{\"released\":false}\n")
    }
}

@Suite("Swift and Node workers share compressed values")
struct CrossLanguageTests {
    @Test func nodeWritesSwiftReadsAndSwiftWritesNodeReads() async throws {
        let broker = try await ControlHarness(maxItems: 10_000)
        let env: [String: String?] = ["EPHEMERAL_PIPE": broker.path, "EPHEMERAL_SECRET": broker.secret]
        let writer = try ChildProcess(
            "/usr/bin/env", ["node", "Fixtures/node/compat-check.mjs"],
            environment: env.merging(["COMPAT_WRITE_KEY": "from-node"]) { $1 }, directory: packageRoot)
        #expect(try await writer.wait() == 0, "\(writer.output)\(writer.errorOutput)")
        let raw = try await broker.run(["get", "from-node", "--json"])
        #expect(raw.status == 0)
        let value = try JSONSerialization.jsonObject(with: Data(raw.out.utf8)) as? [String: Any]
        #expect(value?["from"] as? String == "node")
        #expect((value?["pad"] as? String)?.count == 4000)

        let big = #"{"from":"swift","pad":""# + String(repeating: "s", count: 3000) + "\"}"
        #expect(try await broker.run(["set", "from-swift", big, "--ttl", "1m"]).status == 0)
        let stored = try RawConnection(path: broker.path).signedRequest(
            #"{"action":"get","key":"from-swift"}"#, secret: broker.secret)
        #expect(stored.contains(#""compressed":true"#), "the Swift client compressed it as the original does")
        let reader = try ChildProcess(
            "/usr/bin/env", ["node", "Fixtures/node/compat-check.mjs"],
            environment: env.merging(["COMPAT_READ_KEY": "from-swift"]) { $1 }, directory: packageRoot)
        #expect(try await reader.wait() == 0, "\(reader.output)\(reader.errorOutput)")
        let line = reader.output.split(separator: "\n").first { $0.hasPrefix("compat-read: ") } ?? ""
        #expect(line == "compat-read: " + big)
    }
}
