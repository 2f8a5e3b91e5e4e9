import BrokerTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Whether a process is gone: no such process, or a zombie (where no init reaps orphans, as in a container, a dead
/// process stays a zombie).
func processIsGone(_ pid: pid_t) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return kill(pid, 0) != 0 }
    guard let close = stat.lastIndex(of: ")") else { return false }
    return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
}

/// The pid a script wrote into `file`, waiting for it.
func pid(in file: String) async throws -> pid_t {
    #expect(await waitFor { ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").hasSuffix("\n") })
    return try #require(pid_t((try String(contentsOfFile: file, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
}

@Suite("Signals at every moment, and nothing left behind")
struct SignalTests {
    func leftovers(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? ["<unreadable>"]).filter {
            $0 != "stdout" && $0 != "stderr" && !$0.hasSuffix(".pid")
        }
    }

    /// 30 of 30 `serve`s sent SIGTERM right after printing their path exit within 3 s, leaving no socket, lock
    /// or private directory.
    @Test func serveStopsCleanlyOnSIGTERMRightAfterPrintingItsPath() async throws {
        for round in 0..<30 {
            let tmp = makeTemporaryDirectory()
            let arguments = round % 2 == 0 ? ["serve", "--socket", tmp + "/b.sock"] : ["serve"]
            let serve = try ChildProcess(brokerBinary, arguments, environment: ["TMPDIR": tmp])
            _ = try await serve.firstLine()
            serve.signal(SIGTERM)
            #expect(try await serve.wait(seconds: 3) == 0, "round \(round): \(serve.errorOutput)")
            #expect(leftovers(tmp).isEmpty, "round \(round): \(leftovers(tmp))")
        }
    }

    /// SIGTERM during `serve`'s start-up, however early: it stops within 3 s and leaves nothing (it dies of the
    /// signal if it came before anything was made, and exits 0 once it had begun).
    @Test func serveStopsCleanlyOnSIGTERMDuringStartUp() async throws {
        for round in 0..<30 {
            let tmp = makeTemporaryDirectory()
            let arguments = round % 2 == 0 ? ["serve", "--socket", tmp + "/b.sock"] : ["serve"]
            let serve = try ChildProcess(brokerBinary, arguments, environment: ["TMPDIR": tmp])
            usleep(useconds_t(round * 2_000))
            serve.signal(SIGTERM)
            let status = try await serve.wait(seconds: 3)
            #expect(status == 0 || serve.terminatingSignal == SIGTERM, "round \(round): \(status) \(serve.errorOutput)")
            #expect(leftovers(tmp).isEmpty, "round \(round): \(leftovers(tmp))")
        }
    }

    /// SIGTERM at start-up, however early: `run` stops, dies of the signal, and leaves nothing; the command never
    /// runs once the signal has come.
    @Test func runStopsCleanlyOnSIGTERMDuringStartUp() async throws {
        for round in 0..<30 {
            let tmp = makeTemporaryDirectory()
            let run = try ChildProcess(
                brokerBinary, ["run", "--no-summary", "--", "sh", "-c", "exec sleep 30"], environment: ["TMPDIR": tmp])
            if round % 3 != 0 { usleep(useconds_t(round * 1_000)) }
            run.signal(SIGTERM)
            _ = try await run.wait(seconds: 3)
            #expect(run.terminatingSignal == SIGTERM, "round \(round): \(run.errorOutput)")
            #expect(leftovers(tmp).isEmpty, "round \(round): \(leftovers(tmp))")
        }
    }

    /// SIGTERM during `--before`, the command, the wait for its background workers and `--after`: what runs gets
    /// it, `run` ends within 3 s, no hook or worker is left running and no socket directory is left.
    @Test(arguments: ["before", "command", "workers", "after"])
    func runStopsCleanlyOnSIGTERMInEveryPhase(phase: String) async throws {
        let tmp = makeTemporaryDirectory()
        let scratch = makeTemporaryDirectory()
        let hold = { (name: String) in "echo $$ > \(scratch)/\(name).pid; echo \(name)-started; exec sleep 30" }
        var arguments = ["run", "--no-summary", "--grace", "1h", "--log-level", "debug"]
        switch phase {
        case "before": arguments += ["--before", hold("before"), "--", "true"]
        case "command": arguments += ["--", "sh", "-c", hold("command")]
        case "workers":  // the command has exited, and run waits for the worker it left
            arguments += ["--", "sh", "-c", "sh -c '\(hold("workers"))' &"]
        default: arguments += ["--after", hold("after"), "--", "true"]
        }
        let run = try ChildProcess(brokerBinary, arguments, environment: ["TMPDIR": tmp])
        let name = phase == "workers" ? "workers" : phase
        let held = try await pid(in: "\(scratch)/\(name).pid")
        if phase == "workers" {
            #expect(await waitFor { run.errorOutput.contains("waiting for what is left of its process group") })
        }
        run.signal(SIGTERM)
        let status = try await run.wait(seconds: 3)
        #expect(status == 143, "\(phase): \(run.errorOutput)")
        #expect(run.terminatingSignal == SIGTERM, "\(phase): the wrapper dies of the signal")
        #expect(await waitFor(seconds: 3) { processIsGone(held) }, "\(phase): its process \(held) is still running")
        #expect(leftovers(tmp).isEmpty, "\(phase): \(leftovers(tmp))")
        if phase == "before" {
            #expect(run.errorOutput.contains("--before failed"), "\(run.errorOutput)")
        }
    }

    /// A signal the command handles does not skip `--after` (a teardown is what Ctrl-C most needs): `run` ends as
    /// the command did.
    @Test func aSignalTheCommandHandlesStillRunsAfter() async throws {
        let tmp = makeTemporaryDirectory()
        let run = try ChildProcess(
            brokerBinary,
            [
                "run", "--no-summary", "--after", "echo after-ran", "--", "sh", "-c",
                "trap 'exit 0' TERM; echo command-started; while :; do sleep 0.05; done",
            ], environment: ["TMPDIR": tmp])
        #expect(await waitFor { run.output.contains("command-started") })
        run.signal(SIGTERM)
        #expect(try await run.wait() == 0, "\(run.errorOutput)")
        #expect(run.output.contains("after-ran"), "\(run.output) \(run.errorOutput)")
        #expect(leftovers(tmp).isEmpty)
    }

    /// A command killed by a signal makes `run` die of it too, so a calling shell sees a signal death.
    @Test(arguments: [SIGINT, SIGTERM, SIGKILL, SIGQUIT])
    func aCommandKilledByASignalKillsTheWrapperWithIt(signal: Int32) async throws {
        let tmp = makeTemporaryDirectory()
        for form in [["run", "--"], ["run", "--no-summary", "--"]] {
            let run = try ChildProcess(brokerBinary, form + ["sh", "-c", "kill -\(signal) $$"], environment: ["TMPDIR": tmp])
            #expect(try await run.wait() == 128 + signal)
            #expect(run.terminatingSignal == signal, "\(form)")
            #expect(leftovers(tmp).isEmpty)
        }
        let exited = try ChildProcess(brokerBinary, ["run", "--", "sh", "-c", "exit 3"], environment: ["TMPDIR": tmp])
        #expect(try await exited.wait() == 3)
        #expect(exited.terminatingSignal == nil)
    }

    /// The command gets a parent-death signal: a SIGKILLed wrapper does not leave it running (Linux).
    @Test func aSIGKILLedWrappersCommandDoesNotOutliveIt() async throws {
        let scratch = makeTemporaryDirectory()
        let run = try ChildProcess(
            brokerBinary, ["run", "--", "sh", "-c", "echo $$ > \(scratch)/command.pid; exec sleep 60"])
        let command = try await pid(in: scratch + "/command.pid")
        run.signal(SIGKILL)
        _ = try await run.wait()
        #expect(await waitFor(seconds: 3) { processIsGone(command) }, "the command \(command) outlived its wrapper")
    }

    /// Members of the command's process group still running a grace period after it exits are ended (SIGTERM,
    /// then SIGKILL) and named; workers that finish within it are waited for.
    @Test func leftoverWorkersAreEndedAfterTheGracePeriodAndNamed() async throws {
        let scratch = makeTemporaryDirectory()
        let run = try ChildProcess(
            brokerBinary,
            [
                "run", "--grace", "1500ms", "--", "sh", "-c",
                "sh -c 'echo $$ > \(scratch)/stubborn.pid; trap \"\" TERM; while :; do sleep 0.05; done' & "
                    + "(sleep 0.1; echo quick-worker-done) & echo command-done",
            ])
        #expect(try await run.wait(seconds: 10) == 0, "\(run.errorOutput)")
        #expect(run.output.contains("command-done") && run.output.contains("quick-worker-done"))
        let stubborn = try await pid(in: scratch + "/stubborn.pid")
        #expect(processIsGone(stubborn), "SIGKILL ends what ignores SIGTERM")
        #expect(run.errorOutput.contains("(--grace 1500 ms); ended: "), "\(run.errorOutput)")
        #expect(run.errorOutput.contains("sh (pid \(stubborn))"), "\(run.errorOutput)")
        let tidy = try ChildProcess(brokerBinary, ["run", "--", "sh", "-c", "(sleep 0.1) & echo ok"])
        #expect(try await tidy.wait() == 0)
        #expect(!tidy.errorOutput.contains("outlived"), "\(tidy.errorOutput)")
        let bad = try ChildProcess(brokerBinary, ["run", "--grace", "2h", "--", "true"])
        #expect(try await bad.wait() == 2)
        #expect(bad.errorOutput.contains("--grace"))
    }
}

/// `run` on a real pseudo-terminal (`Fixtures/pty/run_in_pty.py`, Python's `pty`): a command that reads the
/// terminal works, and Ctrl-C stops the command, the wrapper and the calling shell's loop alike.
@Suite("A terminal")
struct TerminalTests {
    @Test(arguments: ["input", "cat", "stty", "ctrl-c-loop"])
    func aCommandUsesTheTerminalAndCtrlCStopsEverything(scenario: String) async throws {
        let script = packageRoot + "/Fixtures/pty/run_in_pty.py"
        let child = try ChildProcess("/usr/bin/python3", [script, brokerBinary, scenario])
        #expect(try await child.wait(seconds: 30) == 0, "\(child.output) \(child.errorOutput)")
        #expect(child.output == "ok\n", "\(child.output)")
    }
}
