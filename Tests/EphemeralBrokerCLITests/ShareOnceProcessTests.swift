import BrokerTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("Compute once, counters, read limits and run hooks, across processes")
struct ShareOnceProcessTests {
    /// Runs `script` (sh) under `ephemeral-broker run`, with `$B` the broker binary and `$T` a scratch directory.
    func underBroker(_ script: String, arguments: [String] = []) async throws -> (
        status: Int32, child: ChildProcess, scratch: String
    ) {
        let scratch = makeTemporaryDirectory()
        let child = try ChildProcess(
            brokerBinary, ["run"] + arguments + ["--", "sh", "-c", script],
            environment: ["B": brokerBinary, "T": scratch], directory: packageRoot)
        return (try await child.wait(seconds: 120), child, scratch)
    }

    func lines(_ path: String) -> [Substring] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n")
    }

    @Test func sixteenProcessesComputeOnceAndAllGetTheSameValue() async throws {
        let compute = #"echo ran >> "$T/count"; sleep 0.3; echo "token-$$""#
        let script =
            #"for i in $(seq 16); do "$B" shared auth --ttl 1h -- sh -c '\#(compute)' > "$T/out.$i" & done; wait"#
        let run = try await underBroker(script)
        #expect(run.status == 0, "\(run.child.errorOutput)")
        #expect(lines(run.scratch + "/count").count == 1, "the computation ran exactly once")
        let values = Set((1...16).map { lines(run.scratch + "/out.\($0)").first ?? "" })
        #expect(values.count == 1 && values.first?.hasPrefix("token-") == true, "\(values)")
    }

    @Test func aFailedFirstComputationIsRetriedOnceAndStillRunsOnlyOnce() async throws {
        // The first process to compute fails; a waiting one takes over; nobody else computes.
        let compute =
            #"if mkdir "$T/failed-once" 2>/dev/null; then sleep 0.2; exit 9; fi; echo ran >> "$T/count"; sleep 0.2; echo ok-$$"#
        let script =
            #"for i in $(seq 16); do "$B" shared auth --ttl 1h -- sh -c '\#(compute)' > "$T/out.$i"; echo $? > "$T/status.$i" & done; wait"#
        let run = try await underBroker(script)
        #expect(run.status == 0, "\(run.child.errorOutput)")
        #expect(lines(run.scratch + "/count").count == 1, "one success after one failure")
        let statuses = (1...16).map { lines(run.scratch + "/status.\($0)").first ?? "" }
        #expect(
            statuses.filter { $0 == "9" }.count == 1,
            "only the failed computer reports its failure: \(statuses)\n\(run.child.errorOutput)")
        let values = Set((1...16).compactMap { lines(run.scratch + "/out.\($0)").first })
        #expect(values.count == 1, "every other process got the one value: \(values)")
    }

    @Test func aComputingProcessSIGKILLedMidwayIsReplacedAndNobodyHangs() async throws {
        // The first computer kills its own `ephemeral-broker shared` process (its parent) with SIGKILL.
        let compute =
            #"if mkdir "$T/killed-once" 2>/dev/null; then kill -9 $PPID; sleep 5; exit 1; fi; echo ran >> "$T/count"; echo ok-$$"#
        let script =
            #"for i in $(seq 8); do "$B" shared auth --ttl 1h --wait 60s -- sh -c '\#(compute)' > "$T/out.$i"; echo $? > "$T/status.$i" & done; wait"#
        let run = try await underBroker(script)
        #expect(run.status == 0, "\(run.child.errorOutput)")
        #expect(lines(run.scratch + "/count").count == 1, "another process computed, once")
        let statuses = (1...8).map { lines(run.scratch + "/status.\($0)").first ?? "" }
        // The workers' standard error (a sanitizer's report among it) is the `run` child's: show it with a failure.
        #expect(
            statuses.filter { $0 == "137" }.count == 1 && statuses.filter { $0 == "0" }.count == 7,
            "\(statuses)\n\(run.child.errorOutput)")
    }

    @Test func sixteenProcessesTimesAThousandIncrementsMakeSixteenThousand() async throws {
        let script =
            #"for i in $(seq 16); do python3 Fixtures/python/incr_worker.py hits 1000 & done; wait; "$B" get hits"#
        let run = try await underBroker(script)
        #expect(run.status == 0, "\(run.child.errorOutput)")
        #expect(run.child.output == "16000\n")
    }

    @Test func aReadLimitedValueIsReadByExactlyNOfMContenders() async throws {
        let script =
            #""$B" set invite '"code-7"' --ttl 1m --max-reads 3; for i in $(seq 10); do ("$B" get invite > "$T/got.$i" 2>/dev/null; echo $? > "$T/status.$i") & done; wait"#
        let run = try await underBroker(script)
        #expect(run.status == 0, "\(run.child.errorOutput)")
        let statuses = (1...10).map { lines(run.scratch + "/status.\($0)").first ?? "" }
        #expect(statuses.filter { $0 == "0" }.count == 3, "\(statuses)")
        let got = (1...10).compactMap { lines(run.scratch + "/got.\($0)").first }
        #expect(got == ["code-7", "code-7", "code-7"])
    }

    @Test func beforeRunsFirstAfterRunsLastAndStatusesAreKept() async throws {
        let before = #""$B" set seeded yes --ttl 1m && echo before >> "$T/order""#
        let after = #"echo "after $("$B" get seeded) $("$B" get late)" >> "$T/order""#
        // The child leaves a background worker behind: --after waits for it.
        let script =
            #"echo child >> "$T/order"; (sleep 0.3; "$B" set late done --ttl 1m; echo worker >> "$T/order") & exit 3"#
        let run = try await underBroker(script, arguments: ["--before", before, "--after", after])
        #expect(run.status == 3, "the child's status stands")
        #expect(lines(run.scratch + "/order") == ["before", "child", "worker", "after yes done"])

        let failingBefore = try await underBroker(#"echo child >> "$T/order""#, arguments: ["--before", "exit 4"])
        #expect(failingBefore.status == 4)
        #expect(lines(failingBefore.scratch + "/order").isEmpty, "the child does not start")
        #expect(failingBefore.child.errorOutput.contains("--before failed with status 4"))

        let failingAfter = try await underBroker("true", arguments: ["--after", "exit 5"])
        #expect(failingAfter.status == 5)
        #expect(failingAfter.child.errorOutput.contains("--after failed with status 5"))
        let bothFail = try await underBroker("exit 2", arguments: ["--after", "exit 5"])
        #expect(bothFail.status == 2, "the after hook's failure does not hide the child's")
        #expect(bothFail.child.errorOutput.contains("--after failed with status 5"))
    }

    @Test func incrAndWaitCommands() async throws {
        let script =
            #""$B" incr n; "$B" incr n --by 10; "$B" set word '"x"' --ttl 1m; "$B" incr word; echo "status $?"; ("$B" wait ready --wait 20s > "$T/waited") & "$B" set ready 42 --ttl 1m; wait; cat "$T/waited"; "$B" wait never --wait 100ms; echo "status $?""#
        let run = try await underBroker(script)
        #expect(run.child.output == "1\n11\nstatus 1\n42\nstatus 1\n", "\(run.child.errorOutput)")
        #expect(run.child.errorOutput.contains("not_a_number") && run.child.errorOutput.contains("timeout"))
    }
}
