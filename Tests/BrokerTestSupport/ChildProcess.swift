import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A real child process (the built CLI, node, a shell) with its output captured to files.
///
/// Spawned with `posix_spawn` and reaped with `waitpid`, so the only descriptors involved are the child's own:
/// Foundation's `Process` keeps descriptors of its own in this process, which under parallel tests closed sockets
/// that belonged to other tests.
public final class ChildProcess: @unchecked Sendable {
    /// The child's process ID.
    public let pid: pid_t
    private let outputPath: String
    private let errorPath: String
    private let lock = NSLock()
    private var status: Int32?
    private var signalNumber: Int32?

    /// Launches `executable` with `arguments`; `environment` entries are added to (or, with `nil`, removed from)
    /// the test's own environment. `TMPDIR`, unless `environment` names it, is a directory of the child's own, so
    /// what a killed broker leaves there goes with the test's directories.
    public init(
        _ executable: String, _ arguments: [String], environment: [String: String?] = [:],
        directory: String? = nil
    ) throws {
        let scratch = makeTemporaryDirectory()
        outputPath = scratch + "/stdout"
        errorPath = scratch + "/stderr"
        var env = ProcessInfo.processInfo.environment
        env["TMPDIR"] = scratch
        for (key, value) in environment { env[key] = value }
        env["SWIFT_BACKTRACE"] = "enable=no"
        // The shell redirects, changes directory, then becomes the command (exec): the pid, signals and exit
        // status are the command's own.
        let cd = directory.map { "cd '\($0)' && " } ?? ""
        let script = "\(cd)exec \"$0\" \"$@\" >'\(outputPath)' 2>'\(errorPath)' </dev/null"
        let argv = ["/bin/sh", "-c", script, executable] + arguments
        let envp = env.map { "\($0.key)=\($0.value)" }
        var child: pid_t = 0
        let result = withCStrings(argv) { argvPointers in
            withCStrings(envp) { envPointers in
                posix_spawn(&child, "/bin/sh", nil, nil, argvPointers, envPointers)
            }
        }
        guard result == 0 else { throw TestFailure("posix_spawn failed: \(result)") }
        pid = child
    }

    /// Everything written to standard output so far.
    public var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }
    /// Everything written to standard error so far.
    public var errorOutput: String { (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "" }

    /// Whether the child is still running (reaping it when it has exited).
    public var isRunning: Bool { reap(block: false) == nil }

    /// Waits for the process to exit, killing it after `seconds`.
    /// - Returns: The exit status, or 128+N for signal N, as a shell reports it.
    @discardableResult
    public func wait(seconds: Double = 60) async throws -> Int32 {
        if await waitFor(seconds: seconds, { !isRunning }), let status = reap(block: false) { return status }
        kill(pid, SIGKILL)
        _ = reap(block: true)
        throw TestFailure("process did not exit within \(seconds) s; stderr: \(errorOutput)")
    }

    /// The signal that ended the process, once reaped; `nil` when it exited (with any status, 128+N included).
    public var terminatingSignal: Int32? {
        lock.lock()
        defer { lock.unlock() }
        return signalNumber
    }

    /// Sends a signal to the process (unless it has been reaped).
    public func signal(_ number: Int32) {
        lock.lock()
        defer { lock.unlock() }
        if status == nil { kill(pid, number) }
    }

    /// The first line of standard output, waiting for it.
    public func firstLine(seconds: Double = 30) async throws -> String {
        guard await waitFor(seconds: seconds, { output.contains("\n") }) else {
            throw TestFailure("no output line; stderr: \(errorOutput)")
        }
        return String(output.split(separator: "\n").first ?? "")
    }

    private func reap(block: Bool) -> Int32? {
        lock.lock()
        defer { lock.unlock() }
        if let status { return status }
        var raw: Int32 = 0
        let reaped = waitpid(pid, &raw, block ? 0 : WNOHANG)
        guard reaped == pid else { return nil }
        let signal = raw & 0x7F
        status = signal == 0 ? (raw >> 8) & 0xFF : 128 + signal
        if signal != 0 { signalNumber = signal }
        return status
    }

    deinit {
        if reap(block: false) == nil {
            kill(pid, SIGKILL)
            _ = reap(block: true)
        }
    }
}

private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for pointer in pointers { free(pointer) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// The root of this package (for Fixtures and the built binary).
public let packageRoot: String = {
    var path = #filePath
    for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
    return path
}()

/// The built `ephemeral-broker` binary, next to the test bundle (or `EPHEMERAL_BROKER_BIN`).
public let brokerBinary: String = {
    if let explicit = ProcessInfo.processInfo.environment["EPHEMERAL_BROKER_BIN"] { return explicit }
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    if directory.lastPathComponent == "MacOS" {  // inside an .xctest bundle on macOS
        directory = directory.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
    return directory.appendingPathComponent("ephemeral-broker").path
}()
