import BrokerTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Whether the test runs as root; prints why it is skipped when not.
private func runningAsRoot(_ needed: String) -> Bool {
    guard getuid() == 0 else {
        print("skipped: \(needed) needs root; running as uid \(getuid())")
        return false
    }
    return true
}

@Suite("The socket's directory is ours alone")
struct SocketDirectoryTests {
    /// Another user's 0755 directory: that user could swap the socket and read every value workers set.
    @Test func aFixedPathInAnotherUsersDirectoryIsRefused() async throws {
        guard runningAsRoot("making a directory of another user") else { return }
        let directory = makeTemporaryDirectory() + "/theirs"
        mkdir(directory, 0o755)
        chown(directory, 65534, 65534)
        let serve = try ChildProcess(brokerBinary, ["serve", "--socket", directory + "/b.sock"])
        #expect(try await serve.wait() == 1)
        #expect(serve.errorOutput.contains("socket directory \(directory) belongs to uid 65534"), "\(serve.errorOutput)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? ["?"]).isEmpty)
    }

    @Test func runDoesNotUseATMPDIROfAnotherUser() async throws {
        guard runningAsRoot("making a directory of another user") else { return }
        let theirs = makeTemporaryDirectory() + "/tmp-of-another"
        mkdir(theirs, 0o777)
        chown(theirs, 65534, 65534)
        let run = try ChildProcess(
            brokerBinary, ["run", "--", "sh", "-c", #"printf %s "$EPHEMERAL_PIPE""#], environment: ["TMPDIR": theirs])
        #expect(try await run.wait() == 0, "\(run.errorOutput)")
        #expect(run.output.hasPrefix("/tmp/eb-"), "\(run.output)")
        #expect(run.errorOutput.contains("TMPDIR is unusable"))
        #expect(run.errorOutput.contains("\(theirs) belongs to uid 65534"), "\(run.errorOutput)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: theirs)) ?? ["?"]).isEmpty)
    }

    @Test func aLockFileThatIsASymlinkOrNotOursIsRefusedAndFollowedNowhere() async throws {
        let directory = makeTemporaryDirectory()
        let path = directory + "/b.sock"
        let target = directory + "/target"
        symlink(target, path + ".lock")
        let linked = try ChildProcess(brokerBinary, ["serve", "--socket", path])
        #expect(try await linked.wait() == 1)
        #expect(linked.errorOutput.contains("it is a symbolic link"), "\(linked.errorOutput)")
        #expect(!pathExists(target), "the link was followed")
        #expect(!pathExists(path))
        unlink(path + ".lock")
        mkdir(path + ".lock", 0o700)
        let notAFile = try ChildProcess(brokerBinary, ["serve", "--socket", path])
        #expect(try await notAFile.wait() == 1)
        #expect(notAFile.errorOutput.contains("lock file"), "\(notAFile.errorOutput)")
        rmdir(path + ".lock")
        if getuid() == 0 {
            #expect(FileManager.default.createFile(atPath: path + ".lock", contents: nil))
            chown(path + ".lock", 65534, 65534)
            let theirs = try ChildProcess(brokerBinary, ["serve", "--socket", path])
            #expect(try await theirs.wait() == 1)
            #expect(theirs.errorOutput.contains("is not a regular file of yours"), "\(theirs.errorOutput)")
        }
    }

    @Test func aFailedStartLeavesNoLockFile() async throws {
        let directory = makeTemporaryDirectory()
        let path = directory + "/b.sock"
        #expect(FileManager.default.createFile(atPath: path, contents: Data("not a socket".utf8)))
        let serve = try ChildProcess(brokerBinary, ["serve", "--socket", path])
        #expect(try await serve.wait() == 1)
        #expect(serve.errorOutput.contains("is not a socket"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["b.sock"])
    }

    /// 107 bytes is Linux's limit (`sun_path` with its NUL); NIO alone connects to at most 103, and the staging
    /// directory beside the socket once made paths near the limit fail under a name the user never gave.
    @Test func everySocketPathUpToTheSystemsLimitWorksAndALongerOneIsRefusedByItsName() async throws {
        let base = makeTemporaryDirectory()
        // Long names in a short directory, a short name in a long directory (its staging path was longer), and the
        // longest name there is room for (its /proc/self/fd/N/ path would be too long).
        let longest = 107 - base.utf8.count - 3
        for (length, name) in [(103, 40), (104, 40), (107, 40), (107, 6), (107, longest)] {
            let directory = base + "/" + String(repeating: "d", count: length - name - 2 - base.utf8.count)
            mkdir(directory, 0o700)
            let path = directory + "/" + String(repeating: "s", count: name)
            #expect(path.utf8.count == length)
            let serve = try ChildProcess(brokerBinary, ["serve", "--socket", path])
            #expect(try await serve.firstLine() == path, "\(length): \(serve.errorOutput)")
            let set = try ChildProcess(
                brokerBinary, ["set", "k", "v", "--ttl", "1m"], environment: ["EPHEMERAL_PIPE": path])
            #expect(try await set.wait() == 0, "\(length): \(set.errorOutput)")
            let get = try ChildProcess(brokerBinary, ["get", "k"], environment: ["EPHEMERAL_PIPE": path])
            #expect(try await get.wait() == 0, "\(length): \(get.errorOutput)")
            #expect(get.output == "v\n")
            serve.signal(SIGTERM)
            #expect(try await serve.wait() == 0)
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
            rmdir(directory)
        }
        let long = base + "/" + String(repeating: "l", count: 108 - base.utf8.count - 1)
        let refused = try ChildProcess(brokerBinary, ["serve", "--socket", long])
        #expect(try await refused.wait() == 1)
        #expect(refused.errorOutput.contains("socket path exceeds 107 bytes: \(long)"), "\(refused.errorOutput)")
    }
}
