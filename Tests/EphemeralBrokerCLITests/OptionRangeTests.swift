import BrokerTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("Options are checked, never trusted")
struct OptionRangeTests {
    /// Each of these is refused at start with exit 2, a message naming the option, and nothing left behind; the
    /// first one crashed the broker at its first request before options had ranges.
    @Test(arguments: [
        ["--max-request-size", "9223372036854775807"], ["--max-request-size", "0"],
        ["--max-value-size", "2000000000"], ["--max-items", "100000001"], ["--max-items", "-1"],
        ["--max-connections", "0"], ["--max-connections", "65537"], ["--ttl", "0"], ["--ttl", "9000000000000000"],
        ["--sweeper-interval", "0"], ["--sweeper-interval", "25h"], ["--request-timeout", "25h"],
        ["--heartbeat-interval", "0"], ["--drain-timeout", "2h"], ["--idle-timeout", "0"], ["--secret", ""],
        ["--pool", "a=1000001"], ["--pool", "a=1", "--pool", "a=2"],
    ])
    func anOptionOutOfItsRangeIsRefusedAtStart(option: [String]) async throws {
        for command in ["run", "serve"] {
            let tmp = makeTemporaryDirectory()
            let arguments = [command] + option + (command == "run" ? ["--", "true"] : [])
            let child = try ChildProcess(brokerBinary, arguments, environment: ["TMPDIR": tmp])
            #expect(try await child.wait() == 2, "\(arguments): \(child.errorOutput)")
            let named = option[0] == "--pool" ? "pool a" : option[0]
            #expect(child.errorOutput.contains(named), "\(arguments): \(child.errorOutput)")
            #expect(child.output.isEmpty, "\(arguments) printed \(child.output)")
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? ["?"]).isEmpty)
        }
    }

    @Test func theRangesLimitsThemselvesAreAccepted() async throws {
        let child = try ChildProcess(
            brokerBinary,
            [
                "run", "--max-request-size", "1073741824", "--max-value-size", "1073741824", "--max-items", "0",
                "--max-connections", "65536", "--drain-timeout", "0", "--sweeper-interval", "24h",
                "--pool", "a=1000000", "--no-summary", "--",
                brokerBinary, "ping",
            ])
        #expect(try await child.wait() == 0, "\(child.errorOutput)")
        #expect(child.output.hasPrefix("pong "))
    }

    @Test func aNegativeNumberIsAnOptionValue() async throws {
        let broker = try await ControlHarness()
        #expect(try await broker.run(["incr", "c", "--by", "-5"]).out == "-5\n")
        #expect(try await broker.run(["incr", "c", "--by", "-5", "--json"]).out == #"{"value":-10}"# + "\n")
    }

    @Test func readableOutputEscapesControlCharacters() async throws {
        let broker = try await ControlHarness()
        let evil = "\u{1B}]0;owned\u{07}\u{1B}[2J"
        #expect(try await broker.run(["set", "value", "red\(evil)\r\nline\ttab\u{9B}", "--string", "--ttl", "1m"]).status == 0)
        #expect(try await broker.run(["set", "key\(evil)", "1", "--ttl", "1m"]).status == 0)
        let value = try await broker.run(["get", "value"])
        #expect(value.out == #"red\u001b]0;owned\u0007\u001b[2J\u000d"# + "\nline\ttab\\u009b\n")
        let list = try await broker.run(["list"])
        #expect(list.out.contains(#"key\u001b]0;owned\u0007\u001b[2J"# + "\texpires in "), "\(list.out)")
        for output in [value.out, list.out] {
            #expect(!output.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x07 || $0.value == 0x9B })
        }
        // JSON output is JSON: the escapes are JSON's own.
        #expect(try await broker.run(["get", "value", "--json"]).out.contains(#"\u001b"#))
    }
}

@Suite("What the command inherits")
struct InheritanceTests {
    /// `run … <&- >&- 2>&-`: the command's standard descriptors are /dev/null, never one of the wrapper's own (its
    /// event loop's or its socket's, which would take the lowest free numbers).
    @Test func closedStandardDescriptorsReachTheCommandAsDevNull() async throws {
        let scratch = makeTemporaryDirectory()
        let probe = "for n in 0 1 2; do t=$(readlink /proc/$$/fd/$n || echo closed); echo \"$t\" > \(scratch)/fd$n; done"
        for form in [["run", "--"], ["run", "--no-summary", "--"]] {
            let quoted = (form + ["sh", "-c", probe]).map { shellQuoted($0) }.joined(separator: " ")
            let child = try ChildProcess(
                "/bin/sh", ["-c", "exec \(shellQuoted(brokerBinary)) \(quoted) <&- >&- 2>&-"])
            #expect(try await child.wait() == 0)
            for descriptor in 0...2 {
                let target = try String(contentsOfFile: "\(scratch)/fd\(descriptor)", encoding: .utf8)
                #expect(target == "/dev/null\n" || target == "closed\n", "\(form) fd \(descriptor): \(target)")
            }
        }
    }

    /// A script without a `#!` line runs with /bin/sh, as execvp runs it.
    @Test func aScriptWithoutAShebangRunsWithTheShell() async throws {
        let scratch = makeTemporaryDirectory()
        let script = scratch + "/plain-script"
        // Written by a child process: a file this process had open for writing while another test forked would
        // be "text file busy" to exec.
        let writer = try ChildProcess(
            "/bin/sh", ["-c", #"printf 'echo "from a plain script: $*"\nexit 3\n' > "$1"; chmod +x "$1""#, "sh", script])
        #expect(try await writer.wait() == 0)
        let run = try ChildProcess(brokerBinary, ["run", "--", script, "a", "b"])
        #expect(try await run.wait() == 3, "\(run.errorOutput)")
        #expect(run.output == "from a plain script: a b\n")
        let path = scratch + "/s.sock"
        let server = try ChildProcess(brokerBinary, ["serve", "--socket", path, "--pool", "one=1"])
        #expect(try await server.firstLine() == path)
        defer { server.signal(SIGTERM) }
        let lease = try ChildProcess(brokerBinary, ["lease", "one", "--", script], environment: ["EPHEMERAL_PIPE": path])
        #expect(try await lease.wait() == 3, "\(lease.errorOutput)")
        #expect(lease.output == "from a plain script: \n")
    }
}

/// Quotes a string for a POSIX shell.
func shellQuoted(_ text: String) -> String {
    "'" + text.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
}
