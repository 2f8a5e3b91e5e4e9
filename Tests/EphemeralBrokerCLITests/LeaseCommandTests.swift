import BrokerTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `lease POOL -- CMD` behaves like flock(1): a second `lease` of a one-item pool never starts its command while
/// the first command runs, whatever happens to the first `lease`.
@Suite("lease -- CMD holds the item for as long as CMD lives")
struct LeaseCommandTests {
    /// A `serve` broker with a one-item pool, and a log file the commands write their tenures to.
    final class Bench {
        let path: String
        let scratch: String
        let server: ChildProcess
        var log: String { scratch + "/log" }
        var env: [String: String?] { ["EPHEMERAL_PIPE": path] }

        init() async throws {
            scratch = makeTemporaryDirectory()
            path = scratch + "/b.sock"
            server = try ChildProcess(brokerBinary, ["serve", "--socket", path, "--pool", "one=1"])
            guard try await server.firstLine() == path else { throw TestFailure("serve printed no path") }
        }

        /// A second `lease`, queued behind the first, whose command logs when it starts.
        func second() async throws -> ChildProcess {
            let waiter = try ChildProcess(
                brokerBinary, ["lease", "one", "--wait", "60s", "--", "sh", "-c", "echo second $(date +%s%N) >> \(log)"],
                environment: env)
            #expect(try await oneWaits())
            return waiter
        }

        /// Whether, within the deadline, one request waits in the broker.
        func oneWaits() async throws -> Bool {
            try await waitFor {
                (try json(RawConnection(path: path).request(#"{"action":"stats"}"#))["stats"] as? [String: Any])?[
                    "waiting"] as? Int == 1
            }
        }

        /// The log's events as (name, nanoseconds), in time order.
        func events() throws -> [(String, Int64)] {
            try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map {
                let parts = $0.split(separator: " ")
                return (String(parts[0]), Int64(parts[1])!)
            }.sorted { $0.1 < $1.1 }
        }

        deinit { server.signal(SIGTERM) }
    }

    @Test func theItemIsHeldPastItsTTLWhileTheCommandRuns() async throws {
        let bench = try await Bench()
        let first = try ChildProcess(
            brokerBinary,
            [
                "lease", "one", "--ttl", "300ms", "--", "sh", "-c",
                // Runs on until the second lease queues, then for three more TTLs.
                "echo first-start $(date +%s%N) >> \(bench.log); while [ ! -e \(bench.scratch)/go ]; do sleep 0.05; done; "
                    + "sleep 1; echo first-end $(date +%s%N) >> \(bench.log)",
            ], environment: bench.env)
        #expect(await waitFor { pathExists(bench.log) })
        let second = try await bench.second()
        #expect(FileManager.default.createFile(atPath: bench.scratch + "/go", contents: nil))
        #expect(try await first.wait() == 0, "\(first.errorOutput)")
        #expect(try await second.wait() == 0, "\(second.errorOutput)")
        #expect(try bench.events().map(\.0) == ["first-start", "first-end", "second"], "held past five TTLs")
    }

    /// SIGINT, SIGTERM, SIGHUP or SIGQUIT to `lease` goes to CMD (which here takes half a second to wind down); the
    /// item goes back only after CMD has exited, and `lease` ends as CMD did.
    @Test(arguments: [SIGINT, SIGTERM, SIGHUP, SIGQUIT])
    func aSignalledLeaseGivesTheItemBackOnlyAfterItsCommandExits(signal: Int32) async throws {
        let bench = try await Bench()
        let script =
            "trap 'sleep 0.5; echo first-end $(date +%s%N) >> \(bench.log); exit 0' \(signal); "
            + "echo first-start $(date +%s%N) >> \(bench.log); while :; do sleep 0.05; done"
        let first = try ChildProcess(brokerBinary, ["lease", "one", "--", "sh", "-c", script], environment: bench.env)
        #expect(await waitFor { pathExists(bench.log) })
        let second = try await bench.second()
        first.signal(signal)
        #expect(try await first.wait() == 0, "\(first.errorOutput)")
        #expect(try await second.wait() == 0, "\(second.errorOutput)")
        #expect(try bench.events().map(\.0) == ["first-start", "first-end", "second"])
    }

    /// SIGKILL to `lease`: its command is SIGKILLed with it (the parent-death signal), so it is gone by the time the
    /// next holder's command starts.
    @Test func aSIGKILLedLeasesCommandIsGoneBeforeTheNextHolderStarts() async throws {
        let bench = try await Bench()
        let first = try ChildProcess(
            brokerBinary,
            ["lease", "one", "--", "sh", "-c", "echo $$ > \(bench.scratch)/first.pid; exec sleep 60"],
            environment: bench.env)
        let command = try await pid(in: bench.scratch + "/first.pid")
        let waiter = try ChildProcess(
            brokerBinary,
            [
                "lease", "one", "--wait", "60s", "--", "sh", "-c",
                "s=$(cut -d' ' -f3 /proc/\(command)/stat 2>/dev/null || echo gone); echo $s > \(bench.scratch)/seen",
            ], environment: bench.env)
        #expect(try await bench.oneWaits())
        first.signal(SIGKILL)
        #expect(try await waiter.wait() == 0, "\(waiter.errorOutput)")
        let seen = try String(contentsOfFile: bench.scratch + "/seen", encoding: .utf8)
        #expect(seen == "gone\n" || seen == "Z\n", "the first command was \(seen) when the second started")
    }

    /// What CMD started goes on using the item after CMD itself has died (`sh -c` dies at once at a signal its
    /// worker takes 300 ms to handle): the item goes back only once the whole process group is gone.
    @Test func theItemGoesBackOnlyOnceTheCommandsWholeProcessGroupIsGone() async throws {
        let bench = try await Bench()
        let worker =  // inside the outer shell's double quotes: its $ are escaped
            "trap 'sleep 0.3; echo worker-end \\$(date +%s%N) >> \(bench.log); exit 0' TERM; "
            + "echo worker-start \\$(date +%s%N) >> \(bench.log); while :; do sleep 0.05; done"
        let first = try ChildProcess(
            brokerBinary, ["lease", "one", "--", "sh", "-c", "sh -c \"\(worker)\" & wait"], environment: bench.env)
        #expect(await waitFor { pathExists(bench.log) })
        let second = try await bench.second()
        first.signal(SIGTERM)
        _ = try await first.wait()
        #expect(try await second.wait() == 0, "\(second.errorOutput)")
        #expect(try bench.events().map(\.0) == ["worker-start", "worker-end", "second"], "\(first.errorOutput)")
    }

    /// `shared` stops a computation that runs past `--compute-timeout` before another worker may take its claim:
    /// two computations never run at once, and the late one stores nothing.
    @Test func aComputationPastItsTimeoutIsStoppedBeforeAnotherStarts() async throws {
        let bench = try await Bench()
        let first = try ChildProcess(
            brokerBinary,
            [
                "shared", "login", "--ttl", "1h", "--compute-timeout", "1s", "--", "sh", "-c",
                "echo first-start $(date +%s%N) >> \(bench.log); sleep 3; echo first-end $(date +%s%N) >> \(bench.log); "
                    + "echo late",
            ], environment: bench.env)
        #expect(await waitFor { pathExists(bench.log) })
        let next = try ChildProcess(
            brokerBinary,
            [
                "shared", "login", "--ttl", "1h", "--wait", "60s", "--", "sh", "-c",
                "echo second $(date +%s%N) >> \(bench.log); echo in-time",
            ], environment: bench.env)
        #expect(try await next.wait() == 0, "\(next.errorOutput)")
        #expect(next.output == "in-time\n")
        #expect(try await first.wait() != 0)
        #expect(first.errorOutput.contains("took longer than --compute-timeout"), "\(first.errorOutput)")
        #expect(try bench.events().map(\.0) == ["first-start", "second"], "the first computation was stopped")
        let third = try ChildProcess(
            brokerBinary, ["shared", "login", "--ttl", "1h", "--", "echo", "never-run"], environment: bench.env)
        #expect(try await third.wait() == 0)
        #expect(third.output == "in-time\n")
    }

    /// The same for `shared KEY -- CMD` while it computes: SIGKILLed, its command goes with it, so the next worker
    /// (who now holds the claim) never computes while the first computation still runs.
    @Test func aSIGKILLedSharedsComputationIsGoneBeforeTheNextOneStarts() async throws {
        let bench = try await Bench()
        let first = try ChildProcess(
            brokerBinary,
            ["shared", "login", "--ttl", "1h", "--", "sh", "-c", "echo $$ > \(bench.scratch)/first.pid; exec sleep 60"],
            environment: bench.env)
        let command = try await pid(in: bench.scratch + "/first.pid")
        let next = try ChildProcess(
            brokerBinary,
            [
                "shared", "login", "--ttl", "1h", "--wait", "60s", "--", "sh", "-c",
                "cut -d' ' -f3 /proc/\(command)/stat 2>/dev/null || echo gone",
            ], environment: bench.env)
        #expect(try await bench.oneWaits())
        first.signal(SIGKILL)
        #expect(try await next.wait() == 0, "\(next.errorOutput)")
        #expect(next.output == "gone\n" || next.output == "Z\n", "the first computation was \(next.output)")
    }

    /// SIGTERM to `shared` while it computes goes to the computation; its claim goes to the next worker only once
    /// the computation has ended.
    @Test func aSignalledSharedsComputationEndsBeforeTheNextOneStarts() async throws {
        let bench = try await Bench()
        let first = try ChildProcess(
            brokerBinary,
            [
                "shared", "login", "--ttl", "1h", "--", "sh", "-c",
                "trap 'sleep 0.5; echo first-end $(date +%s%N) >> \(bench.log); exit 1' TERM; "
                    + "echo first-start $(date +%s%N) >> \(bench.log); while :; do sleep 0.05; done",
            ], environment: bench.env)
        #expect(await waitFor { pathExists(bench.log) })
        let next = try ChildProcess(
            brokerBinary,
            [
                "shared", "login", "--ttl", "1h", "--wait", "60s", "--", "sh", "-c",
                "echo second $(date +%s%N) >> \(bench.log); echo token",
            ], environment: bench.env)
        #expect(try await bench.oneWaits())
        first.signal(SIGTERM)
        #expect(try await first.wait() == 1, "the computation's status: \(first.errorOutput)")
        #expect(try await next.wait() == 0, "\(next.errorOutput)")
        #expect(next.output == "token\n")
        #expect(try bench.events().map(\.0) == ["first-start", "first-end", "second"])
    }

    /// A renewal the broker refuses (someone released the item) stops the command and says so.
    @Test func aRefusedRenewalStopsTheCommand() async throws {
        let bench = try await Bench()
        let first = try ChildProcess(
            brokerBinary, ["lease", "one", "--ttl", "300ms", "--", "sh", "-c", "echo $$ > \(bench.scratch)/first.pid; exec sleep 60"],
            environment: bench.env)
        let command = try await pid(in: bench.scratch + "/first.pid")
        let other = try RawConnection(path: bench.path)
        #expect(try errorName(other.request(#"{"action":"release","pool":"one","index":0,"fence":1}"#)) == nil)
        #expect(try await first.wait() == 1)
        #expect(first.errorOutput.contains("the lease on item 0 of pool one was lost"), "\(first.errorOutput)")
        #expect(await waitFor(seconds: 3) { processIsGone(command) })
    }
}
