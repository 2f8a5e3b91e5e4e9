import BrokerTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Wall-clock nanoseconds, comparable with `date +%s%N` in another process.
func epochNanoseconds() -> Int64 {
    var spec = timespec()
    clock_gettime(CLOCK_REALTIME, &spec)
    return Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec)
}

@Suite("Pools across worker processes")
struct PoolProcessTests {
    @Test func workersContendingForFewerItemsNeverOverlap() async throws {
        let scratch = makeTemporaryDirectory()
        let log = scratch + "/log"
        // 8 workers, 3 accounts: each records when it starts and stops using its account.
        let worker =
            #"echo "start $EPHEMERAL_LEASE_INDEX $(date +%s%N) $EPHEMERAL_LEASE" >> \#(log); sleep 0.1; echo "end $EPHEMERAL_LEASE_INDEX $(date +%s%N)" >> \#(log)"#
        let fleet =
            "for i in 1 2 3 4 5 6 7 8; do \"\(brokerBinary)\" lease accounts --wait 60s -- sh -c '\(worker)' & done; wait"
        try #"[{"user":"a"},{"user":"b"},{"user":"c"}]"#.write(
            toFile: scratch + "/accounts.json", atomically: true, encoding: .utf8)
        let run = try ChildProcess(
            brokerBinary, ["run", "--pool", "accounts=\(scratch)/accounts.json", "--", "sh", "-c", fleet])
        #expect(try await run.wait(seconds: 120) == 0, "\(run.errorOutput)")
        let events = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map {
            $0.split(separator: " ")
        }
        #expect(events.count == 16)
        var holder: [Substring: Int64] = [:]  // index → start of the current tenure
        var users: Set<Substring> = []
        for event in events.sorted(by: { Int64($0[2])! < Int64($1[2])! }) {
            let index = event[1]
            if event[0] == "start" {
                #expect(holder[index] == nil, "account \(index) was leased twice at once")
                holder[index] = Int64(event[2])
                users.insert(event[3])
            } else {
                holder[index] = nil
            }
        }
        #expect(users == [#"{"user":"a"}"#, #"{"user":"b"}"#, #"{"user":"c"}"#])
        #expect(run.errorOutput.contains("accounts: 8 grants"))
        #expect(run.errorOutput.contains("peak 3/3 held"))
    }

    @Test func aSIGKILLedHoldersItemGoesToTheNextWaiterAtOnce() async throws {
        let scratch = makeTemporaryDirectory()
        let path = scratch + "/b.sock"
        let server = try ChildProcess(brokerBinary, ["serve", "--socket", path, "--pool", "accounts=1"])
        #expect(try await server.firstLine() == path)
        defer { server.signal(SIGTERM) }
        let env: [String: String?] = ["EPHEMERAL_PIPE": path]
        let holder = try ChildProcess(
            brokerBinary, ["lease", "accounts", "--", "sh", "-c", "echo $$ > \(scratch)/child; exec sleep 60"],
            environment: env)
        #expect(await waitFor { pathExists(scratch + "/child") })
        let waiter = try ChildProcess(
            brokerBinary, ["lease", "accounts", "--wait", "30s", "--", "sh", "-c", "date +%s%N"], environment: env)
        #expect(
            try await waitFor {
                (try RawConnection(path: path).request(#"{"action":"stats"}"#)).contains(#""waiting":1"#)
            })
        let killedAt = epochNanoseconds()
        holder.signal(SIGKILL)
        #expect(try await waiter.wait() == 0, "\(waiter.errorOutput)")
        let grantedAt = Int64(waiter.output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        let milliseconds = Double(grantedAt - killedAt) / 1e6
        print(
            "SIGKILL of the holder → the waiter's command running: \(milliseconds) ms (includes starting sh and date)")
        #expect(milliseconds > 0 && milliseconds < 1000)
        if let child = Int32(
            (try? String(contentsOfFile: scratch + "/child", encoding: .utf8))?.trimmingCharacters(
                in: .whitespacesAndNewlines) ?? "")
        {
            kill(child, SIGKILL)
        }
        let stats = try RawConnection(path: path).request(#"{"action":"stats"}"#)
        #expect(stats.contains(#""releasedByDisconnect":1"#) && stats.contains(#""expired":0"#))
    }

    @Test func leaseCommandStatusesAndEnvironment() async throws {
        let scratch = makeTemporaryDirectory()
        let path = scratch + "/b.sock"
        let server = try ChildProcess(brokerBinary, ["serve", "--socket", path, "--pool", "one=1"])
        #expect(try await server.firstLine() == path)
        defer { server.signal(SIGTERM) }
        let env: [String: String?] = ["EPHEMERAL_PIPE": path]
        let status = try ChildProcess(
            brokerBinary,
            [
                "lease", "one", "--", "sh", "-c",
                "echo $EPHEMERAL_LEASE $EPHEMERAL_LEASE_INDEX $EPHEMERAL_LEASE_FENCE; exit 7",
            ], environment: env)
        #expect(try await status.wait() == 7)
        #expect(status.output == "null 0 1\n")
        let holder = try ChildProcess(brokerBinary, ["lease", "one", "--", "sleep", "30"], environment: env)
        defer { holder.signal(SIGKILL) }
        #expect(
            try await waitFor { (try RawConnection(path: path).request(#"{"action":"stats"}"#)).contains(#""held":1"#) }
        )
        let exhausted = try ChildProcess(brokerBinary, ["lease", "one", "--", "true"], environment: env)
        #expect(try await exhausted.wait() == 75)
        #expect(exhausted.errorOutput.contains("pool_exhausted"))
        let timedOut = try ChildProcess(
            brokerBinary, ["lease", "one", "--wait", "100ms", "--", "true"], environment: env)
        #expect(try await timedOut.wait() == 75)
        #expect(timedOut.errorOutput.contains("timeout"))
        let unknown = try ChildProcess(brokerBinary, ["lease", "nope", "--", "true"], environment: env)
        #expect(try await unknown.wait() == 1)
        #expect(unknown.errorOutput.contains("unknown_pool"))
    }

    @Test func aMalformedItemsFileIsAClearErrorAtStart() async throws {
        let scratch = makeTemporaryDirectory()
        try "{\"not\":\"an array\"}".write(toFile: scratch + "/bad.json", atomically: true, encoding: .utf8)
        let bad = try ChildProcess(brokerBinary, ["run", "--pool", "accounts=\(scratch)/bad.json", "--", "true"])
        #expect(try await bad.wait() == 2)
        #expect(bad.errorOutput.contains("\(scratch)/bad.json is not a JSON array"))
        let missing = try ChildProcess(brokerBinary, ["run", "--pool", "accounts=\(scratch)/none.json", "--", "true"])
        #expect(try await missing.wait() == 2)
        #expect(missing.errorOutput.contains("cannot read \(scratch)/none.json"))
        let zero = try ChildProcess(brokerBinary, ["run", "--pool", "accounts=0", "--", "true"])
        #expect(try await zero.wait() == 2)
    }
}
