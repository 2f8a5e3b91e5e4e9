import CEphemeralProcess
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

/// How a command ended.
enum Termination: Equatable {
    case exited(Int32)
    case signaled(Int32)

    /// The status a shell reports: the code, or `128 + N` for signal N.
    var status: Int32 {
        switch self {
        case .exited(let code): code
        case .signaled(let number): 128 + number
        }
    }
}

/// Runs the commands the wrapper runs for its user (`run`'s command and hooks, `lease`'s, `shared`'s) with
/// inherited standard streams, the wrapper's caught signals passed on, and a parent-death signal.
///
/// - Process group: when standard input is a terminal, the command stays in the wrapper's group, the terminal's
///   foreground group, so it can read the terminal (a background group would stop on SIGTTIN) and Ctrl-C reaches
///   the command, the wrapper and the calling shell alike. Otherwise it leads a group of its own, to which the
///   wrapper passes SIGINT, SIGTERM, SIGHUP and SIGQUIT, and whose leftover members `run` can find.
/// - Parent death (Linux): the command is started through this same binary (``ParentDeathExec``), which sets
///   `PR_SET_PDEATHSIG` and then executes it, so it does not outlive a wrapper that is SIGKILLed. The signal is
///   the caller's choice: SIGTERM for `run` (a test runner may stop its workers), SIGKILL for `lease` and
///   `shared` (the item or the claim is given back the moment the wrapper dies: the command must not go on using
///   it). Only the command itself gets it; its own children die with it only if it sees to that.
enum ChildRunner {
    /// What to start and how.
    struct Spec {
        var command: [String]
        /// Variables to set (or, with `nil`, remove).
        var environment: [Environment.Key: String?] = [:]
        /// Whether to give the command a process group of its own when standard input is not a terminal.
        var ownGroupUnlessTerminal = true
        /// The signal the command gets if the wrapper dies first (Linux); `nil` for none.
        var parentDeathSignal: Int32? = SIGTERM
    }

    /// A running command, for the caller's `body` while it runs.
    struct Running: Sendable {
        var pid: pid_t
        /// Its process group, when it has one of its own.
        var group: pid_t?

        /// Signals the command (its group, when it has one).
        func signal(_ number: Int32) {
            _ = kill(group.map { -$0 } ?? pid, number)
        }

        /// Stops the command: SIGTERM, then SIGKILL five seconds later unless the task running this is cancelled
        /// first (its caller cancels it once the command has exited: a reaped pid must not be signalled).
        func terminate() async {
            signal(SIGTERM)
            guard (try? await Task.sleep(for: .seconds(5))) != nil else { return }
            signal(SIGKILL)
        }
    }

    /// Whether standard input is a terminal whose foreground group is ours (an interactive shell's job): commands
    /// then stay in it. A terminal we are not in the foreground of (a background job, a `setsid`) sends us no
    /// Ctrl-C, so the command gets a group of its own, and our signals.
    static var inputIsTerminal: Bool { isatty(0) == 1 && tcgetpgrp(0) == getpgrp() }

    /// Runs a command to its end, with standard output and error inherited.
    /// - Returns: How it ended (127 when it could not be started), and its process group if it had its own.
    static func run(_ spec: Spec, relay: SignalRelay?, body: @escaping @Sendable (Running) async -> Void = { _ in })
        async -> (termination: Termination, group: pid_t?)
    {
        let outcome = await run(spec, relay: relay, output: .currentStandardOutput, body: body)
        return (outcome.termination, outcome.group)
    }

    /// Runs a command to its end, collecting its standard output as `output` does.
    static func run<Output: OutputProtocol>(
        _ spec: Spec, relay: SignalRelay?, output: Output,
        body: @escaping @Sendable (Running) async -> Void = { _ in }
    ) async -> (termination: Termination, group: pid_t?, output: Output.OutputType?) {
        guard let resolved = ExecutableLookup.resolve(spec.command[0], path: currentEnvironment()["PATH"]) else {
            FileHandleOutput.standardError("ephemeral-broker: command not found: \(spec.command[0])\n")
            return (.exited(127), nil, nil)
        }
        let ownGroup = spec.ownGroupUnlessTerminal && !inputIsTerminal
        var platform = PlatformOptions()
        if ownGroup { platform.processGroupID = 0 }
        let (executable, arguments) = ParentDeathExec.wrap(resolved, Array(spec.command.dropFirst()), spec.parentDeathSignal)
        do {
            let result = try await ExecutableLookup.withShellFallback(executable, arguments) { executable, arguments in
                try await Subprocess.run(
                    .path(FilePath(executable)),
                    arguments: Arguments(arguments),
                    environment: .inherit.updating(spec.environment),
                    platformOptions: platform,
                    input: .currentStandardInput,
                    output: output,
                    error: .currentStandardError
                ) { execution -> pid_t in
                    let pid = execution.processIdentifier.value
                    relay?.attach(SignalRelay.Child(pid: pid, ownGroup: ownGroup))
                    await body(Running(pid: pid, group: ownGroup ? pid : nil))
                    return pid
                }
            }
            relay?.detach()
            let termination: Termination =
                switch result.terminationStatus {
                case .exited(let code): .exited(Int32(truncatingIfNeeded: code))
                case .signaled(let number): .signaled(Int32(truncatingIfNeeded: number))
                }
            return (termination, ownGroup ? result.closureResult : nil, result.standardOutput)
        } catch {
            relay?.detach()
            FileHandleOutput.standardError("ephemeral-broker: cannot run \(spec.command[0]): \(error)\n")
            return (.exited(127), nil, nil)
        }
    }

    /// The processes of `group` still running (the command's background workers), with their names. A zombie is
    /// not running: where no init reaps orphans (a container's), a dead worker would otherwise count forever.
    static func members(of group: pid_t) -> [(pid: pid_t, name: String)] {
        #if os(Linux)
            guard let directory = opendir("/proc") else { return [] }
            defer { closedir(directory) }
            var found: [(pid: pid_t, name: String)] = []
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) {
                    String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
                }
                guard let pid = pid_t(name), getpgid(pid) == group, let stat = procStat(pid), stat.state != "Z"
                else { continue }
                found.append((pid, stat.name))
            }
            return found.sorted { $0.pid < $1.pid }
        #else
            return kill(-group, 0) == 0 ? [(group, "?")] : []
        #endif
    }

    /// A process's name and state letter, from `/proc/PID/stat` (`pid (name) S …`).
    private static func procStat(_ pid: pid_t) -> (name: String, state: Character)? {
        let descriptor = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = read(descriptor, &buffer, buffer.count)
        guard count > 0 else { return nil }
        let text = String(decoding: buffer[..<count], as: UTF8.self)
        guard let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")") else { return nil }
        let state = text[text.index(after: close)...].first { $0 != " " } ?? "?"
        return (String(text[text.index(after: open)..<close]), state)
    }

    /// Waits until no process of `group` runs, for at most `milliseconds`, or until `stop` says to stop.
    /// - Returns: Whether the group emptied.
    static func waitForGroupToEmpty(_ group: pid_t, milliseconds: Int64, stop: () -> Bool = { false }) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(milliseconds)
        while true {
            if members(of: group).isEmpty { return true }
            guard ContinuousClock.now < deadline, !stop() else { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Waits up to `milliseconds` for `group` to empty, then ends what is left: SIGTERM, and SIGKILL for what
    /// survives a second of it.
    /// - Returns: What was ended, and how long the group had run on when it was.
    static func settleGroup(_ group: pid_t, milliseconds: Int64, stop: () -> Bool = { false }) async
        -> (ended: [(pid: pid_t, name: String)], after: Duration)
    {
        let started = ContinuousClock.now
        if await waitForGroupToEmpty(group, milliseconds: milliseconds, stop: stop) { return ([], .zero) }
        let after = ContinuousClock.now - started
        return (await endGroup(group), after)
    }

    /// How long `lease` and `shared` let what is left of their command's process group run on before they end it
    /// and give the item or the claim back: what the command started may still be using it.
    static let holdersGrace: Int64 = 5_000

    /// After a holding command (`lease`'s, `shared`'s) exits: waits for, then ends, what is left of its group,
    /// saying so, before the caller gives back what the group may be using.
    static func settleHolder(_ group: pid_t?, what: String) async {
        guard let group else { return }
        let (ended, after) = await settleGroup(group, milliseconds: holdersGrace)
        guard !ended.isEmpty else { return }
        FileHandleOutput.standardError(
            "ephemeral-broker: \(describe(ended, after: after, grace: "grace \(holdersGrace) ms")) before giving back "
                + "\(what)\n")
    }

    /// "the command's process group outlived it by … ms (GRACE); ended: NAME (pid N), …", for a message.
    static func describe(_ ended: [(pid: pid_t, name: String)], after: Duration, grace: String) -> String {
        let names = ended.map { "\($0.name) (pid \($0.pid))" }.joined(separator: ", ")
        return "the command's process group outlived it by \(Int64(after / .milliseconds(1))) ms (\(grace)); "
            + "ended: \(names)"
    }

    /// Ends what is left of `group` once the command has exited: SIGTERM, and SIGKILL for what survives a second
    /// of it. - Returns: the members that were still running, for the summary.
    static func endGroup(_ group: pid_t) async -> [(pid: pid_t, name: String)] {
        let left = members(of: group)
        guard !left.isEmpty else { return [] }
        kill(-group, SIGTERM)
        if !(await waitForGroupToEmpty(group, milliseconds: 1000)) { kill(-group, SIGKILL) }
        return left
    }
}

/// Starts a command with a parent-death signal (Linux): `ephemeral-broker` re-executes itself with a marker
/// argument, sets `PR_SET_PDEATHSIG`, checks its parent is still the wrapper, and executes the command in its
/// place (same process, same pid). swift-subprocess has no hook between fork and exec on Linux, and a
/// parent-death signal set from a forking thread would follow that thread, not the process.
enum ParentDeathExec {
    static let marker = "--exec-with-parent-death-signal"

    /// The executable and arguments to spawn for `executable` with `arguments`.
    static func wrap(_ executable: String, _ arguments: [String], _ signal: Int32?) -> (String, [String]) {
        #if os(Linux)
            guard let signal, let me = selfPath else { return (executable, arguments) }
            return (me, [marker, String(signal), String(getpid()), executable] + arguments)
        #else
            return (executable, arguments)
        #endif
    }

    /// This binary, as the kernel knows it.
    private static let selfPath: String? = {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    /// Run first thing in `main`: when this process is such a start, sets the signal and becomes the command.
    static func runIfAsked(_ arguments: [String]) {
        #if os(Linux)
            guard arguments.count >= 5, arguments[1] == marker, let signal = Int32(arguments[2]),
                let parent = pid_t(arguments[3])
            else { return }
            _ = eb_set_parent_death_signal(signal)
            if getppid() != parent { SignalRelay.dieBySignal(signal) }  // the wrapper died before the signal was set
            let command = Array(arguments[4...])
            execute(command)
            if errno == ENOEXEC { execute(["/bin/sh"] + command) }  // as execvp runs a script without #!
            let reason = String(cString: strerror(errno))
            FileHandleOutput.standardError("ephemeral-broker: cannot run \(command[0]): \(reason)\n")
            exit(errno == ENOENT ? 127 : 126)
        #endif
    }

    private static func execute(_ command: [String]) {
        var pointers: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) }
        pointers.append(nil)
        _ = execv(command[0], pointers)
        for pointer in pointers { free(pointer) }
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
