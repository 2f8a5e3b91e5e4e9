import BrokerTestSupport
import EphemeralWire
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The value `Fixtures/python/set_worker.py` stores under `key`: the key repeated to 100 characters, so a value
/// cut short, altered or stored under another key cannot match.
private func expectedValue(_ key: String) -> String {
    String(String(repeating: key + "|", count: 100 / (key.count + 1) + 1).prefix(100))
}

@Suite("Nothing lost under load", .loadTest)
struct NothingLostTests {
    /// Sets per client: the full 10,000 unless `EPHEMERAL_NOTHING_LOST_SETS` says otherwise (the sanitizer runs,
    /// where the broker is about ten times slower, use fewer).
    static let setsPerClient = ProcessInfo.processInfo.environment["EPHEMERAL_NOTHING_LOST_SETS"].flatMap(Int.init)
        ?? 10_000

    @Test func thirtyTwoClientsSomeKilledMidwayEveryAcknowledgedSetReadsBackExactly() async throws {
        let count = Self.setsPerClient
        let secret = "nothing-lost-secret"
        let broker = try await ServedBroker(secret: secret, arguments: ["--max-items", "\(32 * count + 10)"])
        let script = packageRoot + "/Fixtures/python/set_worker.py"
        let workers = try (0..<32).map { index in
            try ChildProcess(
                "python3", [script, "w\(index)", "\(count)"],
                environment: ["EPHEMERAL_PIPE": broker.path, "EPHEMERAL_SECRET": secret])
        }
        // Every eighth worker is SIGKILLed once it has a fifth of its sets acknowledged: it dies with requests
        // written and unanswered, and perhaps with a request half written.
        let victims = Set(stride(from: 0, to: 32, by: 8))
        for index in victims.sorted() {
            let worker = workers[index]
            #expect(
                await waitFor(seconds: 120) { worker.output.split(separator: "\n").count >= count / 5 },
                "worker \(index) made no progress: \(worker.errorOutput)")
            worker.signal(SIGKILL)
        }
        for (index, worker) in workers.enumerated() {
            let status = try await worker.wait(seconds: 300)
            #expect(status == (victims.contains(index) ? 128 + SIGKILL : 0), "worker \(index): \(worker.errorOutput)")
        }
        // Acknowledged: every complete line a worker printed (a killed worker's last line may be cut short).
        var acknowledged = Set<String>()
        for worker in workers {
            let output = worker.output
            let complete = output.hasSuffix("\n") ? output : String(output[..<(output.lastIndex(of: "\n") ?? output.startIndex)])
            acknowledged.formUnion(complete.split(separator: "\n").map(String.init))
        }
        let keys = (0..<32).flatMap { worker in (0..<count).map { "w\(worker)-\($0)" } }
        let path = broker.path
        let found = try await onThread { try Self.readAll(keys, path: path, secret: secret) }
        var missing = 0
        var damaged = 0
        var unacknowledgedButWhole = 0
        for (key, value) in zip(keys, found) {
            switch value {
            case nil where acknowledged.contains(key): missing += 1
            case nil: break
            case let value? where value != expectedValue(key): damaged += 1
            case _? where !acknowledged.contains(key): unacknowledgedButWhole += 1
            case _?: break
            }
        }
        #expect(acknowledged.count >= (32 - victims.count) * count + victims.count * (count / 5))
        #expect(missing == 0, "acknowledged sets that did not read back")
        #expect(damaged == 0, "values that do not match what was set")
        print(
            "nothing lost: \(keys.count) keys, \(acknowledged.count) acknowledged, all read back exactly; "
                + "\(unacknowledgedButWhole) stored but never acknowledged (a killed worker's last replies), all whole")
    }

    /// Reads every key with signed, pipelined `get`s, 500 at a time; `nil` for `not_found`.
    static func readAll(_ keys: [String], path: String, secret: String) throws -> [String?] {
        let connection = try RawConnection(path: path, timeoutSeconds: 60)
        let signer = FrameSigner(secret: secret)
        var values = [String?]()
        values.reserveCapacity(keys.count)
        var start = 0
        while start < keys.count {
            let batch = keys[start..<min(start + 500, keys.count)]
            var bytes = [UInt8]()
            for key in batch {
                let payload = #"{"action":"get","key":"\#(key)"}"#
                let mac = Array(payload.utf8).withUnsafeBytes { signer.hexMAC($0) }
                bytes += Array((String(payload.dropLast()) + #","hmac":""# + mac + "\"}\n").utf8)
            }
            try connection.send(bytes)
            for _ in batch {
                let line = try connection.readLine()
                let reply = try json(line)
                if reply["ok"] as? Bool == true {
                    values.append(reply["value"] as? String ?? "<not a string>")
                } else if reply["error"] as? String == "not_found" {
                    values.append(nil)
                } else {
                    throw TestFailure("unexpected reply: \(line)")
                }
            }
            start += batch.count
        }
        return values
    }
}
