import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real child process (the built CLI, node, a shell) with its output captured to files.
public final class ChildProcess: @unchecked Sendable {
    /// The underlying process.
    public let process: Process
    private let outputPath: String
    private let errorPath: String

    /// Launches `executable` with `arguments`; `environment` entries are added to (or, with `nil`, removed from)
    /// the test's own environment.
    public init(_ executable: String, _ arguments: [String], environment: [String: String?] = [:],
                directory: String? = nil) throws
    {
        let scratch = makeTemporaryDirectory()
        outputPath = scratch + "/stdout"
        errorPath = scratch + "/stderr"
        process = Process()
        // The shell redirects and then becomes the command (exec), so the pid, signals and exit status are the
        // command's own. Handing Foundation file handles to Process instead risks a descriptor being closed twice,
        // which under parallel tests can close a socket another test just opened.
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "exec \"$0\" \"$@\" >'\(outputPath)' 2>'\(errorPath)' </dev/null", executable] + arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        env["SWIFT_BACKTRACE"] = "enable=no"
        process.environment = env
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    /// Everything written to standard output so far.
    public var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }
    /// Everything written to standard error so far.
    public var errorOutput: String { (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "" }

    /// Waits for the process to exit, killing it after `seconds`.
    /// - Returns: The exit status, or 128+N for signal N, as a shell reports it.
    @discardableResult
    public func wait(seconds: Double = 60) throws -> Int32 {
        let finished = waitUntil(seconds: seconds) { !process.isRunning }
        if !finished {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw TestFailure("process did not exit within \(seconds) s; stderr: \(errorOutput)")
        }
        process.waitUntilExit()
        return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }

    /// Sends a signal to the process.
    public func signal(_ number: Int32) { kill(process.processIdentifier, number) }

    /// The first line of standard output, waiting for it.
    public func firstLine(seconds: Double = 30) throws -> String {
        guard waitUntil(seconds: seconds, { output.contains("\n") }) else {
            throw TestFailure("no output line; stderr: \(errorOutput)")
        }
        return String(output.split(separator: "\n").first ?? "")
    }
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
