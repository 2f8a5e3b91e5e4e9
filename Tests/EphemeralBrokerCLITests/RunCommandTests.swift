import BrokerTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("ephemeral-broker run, as a process")
struct RunCommandTests {
    /// Runs the binary with a private TMPDIR so leftovers can be checked.
    func run(_ arguments: [String], environment: [String: String?] = [:]) async throws -> (
        status: Int32, tmp: String, child: ChildProcess
    ) {
        let tmp = makeTemporaryDirectory()
        var env = environment
        env["TMPDIR"] = tmp
        let child = try ChildProcess(brokerBinary, arguments, environment: env)
        return (try await child.wait(), tmp, child)
    }

    func leftovers(_ tmp: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? ["<unreadable>"]
    }

    @Test func theChildGetsThePipeAndAFreshSecretAndNothingIsLeftBehind() async throws {
        let script =
            #"test -S "$EPHEMERAL_PIPE" && printf '%s %s %s' "$EPHEMERAL_PIPE" "${#EPHEMERAL_SECRET}" "$(stat -c %a "$(dirname "$EPHEMERAL_PIPE")")""#
        let result = try await run(["run", "--", "sh", "-c", script])
        #expect(result.status == 0, "\(result.child.errorOutput)")
        let fields = result.child.output.split(separator: " ")
        #expect(fields.count == 3)
        #expect(fields.first?.hasPrefix(result.tmp + "/eb-") == true)
        #expect(fields.dropFirst().first == "64", "a 32-byte hex secret")
        #expect(fields.last == "700", "the socket directory is private")
        #expect(leftovers(result.tmp).isEmpty, "socket and directory removed: \(leftovers(result.tmp))")
    }

    @Test func anUnusableTMPDIRFallsBackToTmpWithAWarning() async throws {
        let child = try ChildProcess(
            brokerBinary, ["run", "--", "sh", "-c", #"printf %s "$EPHEMERAL_PIPE""#],
            environment: ["TMPDIR": "/nonexistent/dir"])
        #expect(try await child.wait() == 0, "\(child.errorOutput)")
        #expect(child.output.hasPrefix("/tmp/eb-"))
        #expect(child.errorOutput.contains("TMPDIR is unusable"))
        #expect(child.errorOutput.contains("/nonexistent/dir: No such file or directory"))
    }

    @Test func aFullOrReadOnlyTemporaryDirectoryIsAClearErrorAndTheChildNeverRuns() async throws {
        // A private mount namespace, where /tmp is a tmpfs with no room for one more inode, or read-only.
        guard getuid() == 0 else {
            print("skipped: mounting a full /tmp in a private namespace needs root; running as uid \(getuid())")
            return
        }
        let probe = try ChildProcess("/usr/bin/unshare", ["-m", "true"])
        guard try await probe.wait() == 0 else {
            print("skipped: unshare -m is not permitted here: \(probe.errorOutput)")
            return
        }
        // The binary and the marker must live outside /tmp, which the namespace hides (CI may clone under /tmp):
        // the binary is copied to a tmpfs of its own, the marker goes to /dev/shm.
        let marker = "/dev/shm/ebt-ran-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(marker) }
        for (options, reason) in [("size=4k,nr_inodes=1", "No space left on device"), ("ro", "Read-only file system")] {
            let script =
                #"mount -t tmpfs bin /mnt && cp "$0" /mnt/eb && mount -t tmpfs -o \#(options) full /tmp && exec /mnt/eb run -- touch \#(marker)"#
            let child = try ChildProcess(
                "/usr/bin/unshare", ["-m", "sh", "-c", script, brokerBinary],
                environment: ["TMPDIR": nil, "TSAN_OPTIONS": nil])  // its suppressions file may be under /tmp
            #expect(try await child.wait() == 1, "\(child.errorOutput)")
            #expect(
                child.errorOutput.contains("cannot create a private directory under /tmp: \(reason)"),
                "\(child.errorOutput)")
            #expect(!pathExists(marker), "the child must not run without its broker")
        }
    }

    @Test func twoRunsGetDifferentSecretsAndNoAuthGivesNone() async throws {
        let first = try await run(["run", "--", "sh", "-c", "printf %s \"$EPHEMERAL_SECRET\""]).child.output
        let second = try await run(["run", "--", "sh", "-c", "printf %s \"$EPHEMERAL_SECRET\""]).child.output
        #expect(first.count == 64 && second.count == 64 && first != second)
        let none = try await run(
            ["run", "--no-auth", "--", "sh", "-c", "printf %s \"${EPHEMERAL_SECRET-unset}\""],
            environment: ["EPHEMERAL_SECRET": "outer"])
        #expect(none.child.output == "unset")
        let given = try await run(
            ["run", "--", "sh", "-c", "printf %s \"$EPHEMERAL_SECRET\""], environment: ["BROKER_SECRET": "mine"])
        #expect(given.child.output == "mine")
    }

    @Test(arguments: [
        ("exit 0", Int32(0)), ("exit 3", 3), ("exit 64", 64), ("kill -INT $$", 130), ("kill -KILL $$", 137),
        ("kill -TERM $$", 143),
    ])
    func exitStatusIsTheChilds(script: String, expected: Int32) async throws {
        // Read without ArgumentParser, and with it (an option before `--`): 64 is ArgumentParser's usage status,
        // which must not turn into ours (2).
        for form in [["run", "--"], ["run", "--no-summary", "--"]] {
            let result = try await run(form + ["sh", "-c", script])
            #expect(result.status == expected, "\(form)")
            #expect(leftovers(result.tmp).isEmpty)
        }
    }

    @Test func aMissingCommandIs127AndLeavesNoSocket() async throws {
        let result = try await run(["run", "--", "no-such-command-\(getpid())"])
        #expect(result.status == 127)
        #expect(result.child.errorOutput.contains("command not found"))
        #expect(leftovers(result.tmp).isEmpty)
        let path = try await run(["run", "--", "/nonexistent/bin/tool"])
        #expect(path.status == 127)
    }

    @Test func theOriginalSpellingStartWorks() async throws {
        #expect(try await run(["start", "--", "sh", "-c", "test -S \"$EPHEMERAL_PIPE\""]).status == 0)
    }

    @Test func signalsToTheWrapperReachTheChildsProcessGroup() async throws {
        let tmp = makeTemporaryDirectory()
        let marker = tmp + "/marker"
        // The child traps TERM, records it, and exits 42: the wrapper must forward, wait, and pass the status on.
        let script = "trap 'echo got-term > \(marker); exit 42' TERM; echo ready; while true; do sleep 0.05; done"
        let child = try ChildProcess(brokerBinary, ["run", "--", "sh", "-c", script], environment: ["TMPDIR": tmp])
        #expect(try await child.firstLine() == "ready")
        child.signal(SIGTERM)
        #expect(try await child.wait() == 42)
        #expect((try? String(contentsOfFile: marker, encoding: .utf8)) == "got-term\n")
    }

    @Test func invalidOptionValuesAreErrorsAtStart() async throws {
        let badDuration = try await run(["run", "--ttl", "soon", "--", "true"])
        #expect(badDuration.status == 2)
        #expect(badDuration.child.errorOutput.contains("--ttl"))
        let badEnv = try await run(["run", "--", "true"], environment: ["BROKER_MAX_ITEMS": "-4"])
        #expect(badEnv.status == 2)
        #expect(badEnv.child.errorOutput.contains("BROKER_MAX_ITEMS"))
        #expect(try await run(["run", "--log-format", "xml", "--", "true"]).status == 2)
        #expect(try await run(["run"]).status == 2)
    }

    @Test func environmentVariablesConfigureTheBroker() async throws {
        let script =
            #"printf '{"action":"health"}\n' | python3 -c 'import socket,os,sys; s=socket.socket(socket.AF_UNIX); s.connect(os.environ["EPHEMERAL_PIPE"]); s.sendall(sys.stdin.buffer.read()); print(s.recv(65536).decode())'"#
        let result = try await run(
            ["run", "--no-auth", "--", "sh", "-c", script], environment: ["BROKER_MAX_ITEMS": "77"])
        #expect(result.status == 0, "\(result.child.errorOutput)")
        #expect(result.child.output.contains(#""maxItems":77"#))
    }

    /// `run -- CMD` is read without ArgumentParser (it starts faster); with an option before `--` ArgumentParser reads
    /// it. Both must give the command the same broker: settings from the environment, a fresh secret, the status.
    @Test(arguments: [["run", "--"], ["start", "--"], ["run", "--no-summary", "--"], ["run", "--before", "true", "--"]])
    func thePlainAndTheParsedFormsGiveTheSameBroker(form: [String]) async throws {
        let script = #""$0" health | grep -c '"maxItems" : 77'; printf '%s\n' "${#EPHEMERAL_SECRET}"; exit 3"#
        let result = try await run(
            form + ["sh", "-c", script, brokerBinary], environment: ["BROKER_MAX_ITEMS": "77", "BROKER_SECRET": nil])
        #expect(result.status == 3, "\(result.child.errorOutput)")
        #expect(result.child.output == "1\n64\n")
        #expect(leftovers(result.tmp).isEmpty)
    }

    @Test func aPlainFormWithoutACommandOrWithAnOptionAfterTheSeparatorIsNotAnOption() async throws {
        let empty = try await run(["run", "--"])
        #expect(empty.status == 2)
        #expect(empty.child.errorOutput.contains("missing command"))
        let notAnOption = try await run(["run", "--", "--no-auth"])
        #expect(notAnOption.status == 127)
        #expect(notAnOption.child.errorOutput.contains("command not found: --no-auth"))
    }

    @Test func jsonLogsAreOneObjectPerLine() async throws {
        let result = try await run(["run", "--log-format", "json", "--debug", "--", "true"])
        let lines = result.child.errorOutput.split(separator: "\n")
        #expect(!lines.isEmpty)
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["level"] is String && object?["message"] is String, "\(line)")
            #expect(!line.contains(result.child.output) || result.child.output.isEmpty)
        }
    }
}

@Suite("The original Node client against our broker")
struct NodeCompatibilityTests {
    @Test func theOriginalClientsProtocolPassesEveryCheck() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/node") else {
            Issue.record("node is not installed; the compatibility test needs it (Debian: apt-get install nodejs)")
            return
        }
        // A sweep during the script's 80 ms expiry wait would turn `expired` into `not_found`: push it out.
        for auth in [[String](), ["--no-auth"]] {
            let child = try ChildProcess(
                brokerBinary,
                ["run", "--sweeper-interval", "1h"] + auth + ["--", "node", "Fixtures/node/compat-check.mjs"],
                directory: packageRoot)
            #expect(try await child.wait() == 0, "\(child.output)\n\(child.errorOutput)")
            #expect(child.output.contains("checks passed"))
            #expect(!child.output.contains("not ok"))
        }
    }

    @Test func theDemoRuns() async throws {
        let child = try ChildProcess(brokerBinary, ["run", "--", "Fixtures/demo.sh"], directory: packageRoot)
        #expect(try await child.wait() == 0, "\(child.output)\n\(child.errorOutput)")
        #expect(child.output.contains("leases=0"))
    }
}

@Suite("Secrets stay out of logs, replies and arguments")
struct SecretLeakTests {
    @Test func theSecretAppearsNowhereButTheEnvironment() async throws {
        let secret = "s3cret-" + String(UInt64.random(in: 1...UInt64.max), radix: 16)
        let script = #"""
            "$B" set token '"v"' --ttl 1m; "$B" get token; "$B" list --json; "$B" stats --json; "$B" health --json; \
            "$B" metrics; "$B" get missing; "$B" set big "$(head -c 4000 /dev/zero | tr '\0' x)" --ttl 1m; \
            EPHEMERAL_SECRET=wrong "$B" ping; ps -eo args
            """#
        let child = try ChildProcess(
            brokerBinary,
            [
                "run", "--debug", "--log-format", "json", "--max-value-size", "1000",
                "--", "sh", "-c", script,
            ],
            environment: ["B": brokerBinary, "BROKER_SECRET": secret])
        #expect(try await child.wait(seconds: 60) == 0, "the script ends with ps, which succeeds")
        let everything = child.output + child.errorOutput
        #expect(
            everything.contains("not_found") && everything.contains("too_large") && everything.contains("auth_failed"),
            "the run exercised the error paths")
        #expect(everything.contains("ephemeral_broker_requests_total"), "and the metrics")
        #expect(!everything.contains(secret), "the secret leaked into output, logs or process arguments")
    }
}
