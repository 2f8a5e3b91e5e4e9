import BrokerTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("ephemeral-broker serve, as a process")
struct ServeCommandTests {
    @Test func printsThePathServesAndShutsDownCleanlyOnSIGTERM() async throws {
        let tmp = makeTemporaryDirectory()
        let server = try ChildProcess(brokerBinary, ["serve", "--print-env"], environment: ["TMPDIR": tmp])
        let path = try await server.firstLine()
        #expect(path.hasPrefix(tmp))
        #expect(try await waitFor { server.output.contains("export EPHEMERAL_PIPE='\(path)'") })
        let connection = try RawConnection(path: path)
        #expect(try connection.request(#"{"action":"ping"}"#).hasPrefix(#"{"ok":true,"pong":"#))
        server.signal(SIGTERM)
        #expect(try await server.wait() == 0)
        #expect(connection.readsEndOfFile(), "open connections are closed at shutdown")
        #expect(!pathExists(path))
        #expect((try? FileManager.default.contentsOfDirectory(atPath: tmp))?.isEmpty == true)
    }

    @Test func heartbeatsAreLoggedWithCounts() async throws {
        let server = try ChildProcess(brokerBinary, ["serve", "--heartbeat-interval", "50ms", "--log-format", "json"])
        _ = try await server.firstLine()
        defer { server.signal(SIGTERM) }
        #expect(await waitFor { server.errorOutput.contains(#""message":"heartbeat""#) })
        #expect(server.errorOutput.contains(#""items":"0""#) && server.errorOutput.contains(#""connections":"#))
    }

    @Test func idleTimeoutShutsDownByItself() async throws {
        let tmp = makeTemporaryDirectory()
        let server = try ChildProcess(brokerBinary, ["serve", "--idle-timeout", "300ms"], environment: ["TMPDIR": tmp])
        let path = try await server.firstLine()
        #expect(try await server.wait(seconds: 20) == 0)
        #expect(!pathExists(path))
    }

    @Test func aLiveBrokerOnTheSamePathIsAnErrorAndAStaleSocketIsReplaced() async throws {
        let path = makeTemporaryDirectory() + "/fixed.sock"
        try makeStaleSocket(at: path)
        let first = try ChildProcess(brokerBinary, ["serve", "--socket", path])
        #expect(try await first.firstLine() == path)
        let second = try ChildProcess(brokerBinary, ["serve", "--socket", path])
        #expect(try await second.wait() == 1)
        #expect(second.errorOutput.contains("already running"))
        #expect(try RawConnection(path: path).request(#"{"action":"ping"}"#).contains(#""ok":true"#))
        first.signal(SIGINT)
        #expect(try await first.wait() == 0)
        #expect(!pathExists(path))
    }

    @Test func ofConcurrentStartsOnOnePathExactlyOneWins() async throws {
        let path = makeTemporaryDirectory() + "/race.sock"
        let servers = try (0..<4).map { _ in try ChildProcess(brokerBinary, ["serve", "--socket", path]) }
        #expect(try await waitFor { servers.filter { !$0.isRunning }.count == 3 })
        var losers: [Int32] = []
        for server in servers where !server.isRunning { losers.append(try await server.wait()) }
        #expect(losers == [1, 1, 1])
        let winner = try #require(servers.first { $0.isRunning })
        #expect(try await winner.firstLine() == path)
        #expect(try RawConnection(path: path).request(#"{"action":"ping"}"#).contains(#""ok":true"#))
        winner.signal(SIGTERM)
        #expect(try await winner.wait() == 0)
    }

    @Test func aSIGKILLedBrokersPathIsRecoveredByTheNextServe() async throws {
        let path = makeTemporaryDirectory() + "/k.sock"
        let killed = try ChildProcess(brokerBinary, ["serve", "--socket", path])
        #expect(try await killed.firstLine() == path)
        killed.signal(SIGKILL)
        #expect(try await killed.wait() == 137)
        #expect(pathExists(path), "a killed broker cannot clean up")
        let next = try ChildProcess(brokerBinary, ["serve", "--socket", path])
        #expect(try await next.firstLine() == path)
        #expect(try RawConnection(path: path).request(#"{"action":"ping"}"#).contains(#""ok":true"#))
        next.signal(SIGTERM)
        #expect(try await next.wait() == 0)
    }

    @Test func anotherUserCannotConnect() async throws {
        guard getuid() == 0 else {
            print("skipped: connecting as another uid needs root (setpriv --reuid); running as uid \(getuid())")
            return
        }
        let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let setpriv else {
            print("skipped: setpriv is not installed (util-linux)")
            return
        }
        let tmp = makeTemporaryDirectory()
        chmod(tmp, 0o755)
        let server = try ChildProcess(brokerBinary, ["serve"], environment: ["TMPDIR": tmp])
        let path = try await server.firstLine()
        defer { server.signal(SIGTERM) }
        let probe =
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ntry:\n s.connect(sys.argv[1]); s.sendall(b'{\"action\":\"ping\"}\\n'); print('reply', s.recv(100))\nexcept OSError as e:\n print('refused', e.errno)"
        let intruder = try ChildProcess(
            setpriv, ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", probe, path])
        #expect(try await intruder.wait() == 0, "\(intruder.errorOutput)")
        #expect(intruder.output.hasPrefix("refused"), "another uid must not reach the broker: \(intruder.output)")
        let owner = try ChildProcess("/usr/bin/python3", ["-c", probe, path])
        #expect(try await owner.wait() == 0)
        #expect(owner.output.hasPrefix("reply b'{\"ok\":true"))
    }

    @Test func thePeerCredentialCheckRefusesAnotherUserEvenPastFilePermissions() async throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            print("skipped: needs root and /usr/bin/setpriv to connect as another uid; running as uid \(getuid())")
            return
        }
        let directory = makeTemporaryDirectory()
        chmod(directory, 0o755)
        let path = directory + "/open.sock"
        let server = try ChildProcess(brokerBinary, ["serve", "--socket", path])
        #expect(try await server.firstLine() == path)
        defer { server.signal(SIGTERM) }
        chmod(path, 0o777)  // take the file-permission barrier away: only SO_PEERCRED stands in the way now
        let probe =
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ntry:\n s.sendall(b'{\"action\":\"ping\"}\\n'); data = s.recv(100)\nexcept OSError:\n data = b''\nprint('closed' if data == b'' else 'reply %r' % data)"
        let intruder = try ChildProcess(
            "/usr/bin/setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", probe, path])
        #expect(try await intruder.wait() == 0, "\(intruder.errorOutput)")
        #expect(intruder.output.hasPrefix("closed"), "the broker must close on another uid: \(intruder.output)")
        #expect(server.errorOutput.contains("refused a connection from another user"))
    }
}
