import EphemeralWire
import Subprocess

#if canImport(System)
    import System
#else
    import SystemPackage
#endif

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Runs a command with inherited standard streams and reports its status as a shell would.
enum ChildRunner {
    /// Runs `command` with `environment` added to ours.
    /// - Parameters:
    ///   - command: The command and its arguments; the command is looked up in `PATH`.
    ///   - environment: Variables to set (or, with `nil`, remove).
    ///   - ownProcessGroup: Puts the command in its own process group, to which SIGINT, SIGTERM, SIGHUP and
    ///     SIGQUIT sent to this process are forwarded.
    /// - Returns: The command's exit status, `128 + N` when signal N killed it, 127 when it could not start.
    static func run(_ command: [String], environment: [Environment.Key: String?], ownProcessGroup: Bool) async -> Int32
    {
        await runReportingGroup(command, environment: environment, ownProcessGroup: ownProcessGroup).status
    }

    /// ``run(_:environment:ownProcessGroup:)``, also returning the command's process group (its pid).
    static func runReportingGroup(_ command: [String], environment: [Environment.Key: String?], ownProcessGroup: Bool)
        async -> (status: Int32, group: pid_t?)
    {
        guard let executable = ExecutableLookup.resolve(command[0], path: currentEnvironment()["PATH"]) else {
            FileHandleOutput.standardError("ephemeral-broker: command not found: \(command[0])\n")
            return (127, nil)
        }
        let childGroup = Locked<pid_t?>(nil)
        let pendingSignal = Locked<Int32?>(nil)
        var forwarder: SignalForwarder?
        if ownProcessGroup {
            forwarder = SignalForwarder([SIGINT, SIGTERM, SIGHUP, SIGQUIT]) { number in
                if let group = childGroup.withLock({ $0 }) {
                    kill(-group, number)
                } else {
                    pendingSignal.withLock { $0 = number }
                }
            }
        }
        defer { forwarder?.cancel() }
        var platform = PlatformOptions()
        if ownProcessGroup { platform.processGroupID = 0 }
        do {
            let result = try await ExecutableLookup.withShellFallback(executable, Array(command.dropFirst())) {
                executable, arguments in
                try await Subprocess.run(
                    .path(FilePath(executable)),
                    arguments: Arguments(arguments),
                    environment: .inherit.updating(environment),
                    platformOptions: platform,
                    input: .currentStandardInput,
                    output: .currentStandardOutput,
                    error: .currentStandardError
                ) { execution in
                    let pid = execution.processIdentifier.value
                    childGroup.withLock { $0 = pid }
                    if let number = pendingSignal.withLock({ $0 }) { kill(-pid, number) }
                }
            }
            let group = childGroup.withLock { $0 }
            switch result.terminationStatus {
            case .exited(let code): return (Int32(truncatingIfNeeded: code), group)
            case .signaled(let number): return (128 + Int32(truncatingIfNeeded: number), group)
            }
        } catch {
            FileHandleOutput.standardError("ephemeral-broker: cannot run \(command[0]): \(error)\n")
            return (127, nil)
        }
    }

    /// Waits until no process is left in `group` (the command's background workers), for at most `seconds`.
    /// - Returns: Whether the group emptied in time.
    static func waitForGroupToEmpty(_ group: pid_t, seconds: Double) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        while ContinuousClock.now < deadline {
            if kill(-group, 0) != 0, errno == ESRCH { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }
}

/// Finds a command the way a shell does, so a missing command is reported before any broker starts.
enum ExecutableLookup {
    /// - Returns: The path to execute, or `nil` when there is no executable file by that name.
    static func resolve(_ name: String, path: String?) -> String? {
        if name.contains("/") { return isExecutableFile(name) ? name : nil }
        for directory in (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory.isEmpty ? "." : String(directory))/\(name)"
            if isExecutableFile(candidate) { return candidate }
        }
        return nil
    }

    /// Runs `spawn` with the executable and its arguments; when the kernel refuses the file as no executable format
    /// (`ENOEXEC`: a script without a `#!` line), runs it again as `/bin/sh FILE ARGS…`, as `execvp` does.
    static func withShellFallback<R>(
        _ executable: String, _ arguments: [String],
        _ spawn: (_ executable: String, _ arguments: [String]) async throws -> R
    ) async throws -> R {
        do {
            return try await spawn(executable, arguments)
        } catch let error as SubprocessError where error.underlyingError?.rawValue == ENOEXEC {
            return try await spawn("/bin/sh", [executable] + arguments)
        }
    }

    private static func isExecutableFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG && access(path, X_OK) == 0
    }
}
