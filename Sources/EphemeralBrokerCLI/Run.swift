import ArgumentParser
import EphemeralServer
import EphemeralWire
import Logging
import Subprocess
import Synchronization

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

/// `ephemeral-broker run -- CMD ARGS…`: a broker for the lifetime of one command.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a broker, run a command under it, and exit with the command's status.",
        discussion: """
            The command runs in its own process group with EPHEMERAL_PIPE set and, unless --no-auth or a secret is \
            given, a fresh random EPHEMERAL_SECRET. SIGINT, SIGTERM and SIGHUP go to the command's process group. \
            The exit status is the command's, 128+N when a signal N killed it, and 127 when it cannot be started.
            """,
        aliases: ["start"]
    )

    @OptionGroup var options: BrokerOptions

    @Argument(parsing: .postTerminator, help: "The command to run, after --.")
    var command: [String] = []

    func validate() throws {
        guard !command.isEmpty else { throw ValidationError("missing command: ephemeral-broker run [options] -- CMD ARGS…") }
    }

    func run() async throws {
        let environment = currentEnvironment()
        var resolved = try options.resolve(environment: environment)
        bootstrapLogging(level: resolved.logLevel, format: resolved.logFormat)
        resolved.configuration.logger = Logger(label: "ephemeral-broker")
        let logger = Logger(label: "ephemeral-broker")
        if resolved.configuration.idleTimeout != nil {
            logger.warning("--idle-timeout applies to serve only; the wrapped command decides how long run lasts")
            resolved.configuration.idleTimeout = nil
        }
        if !options.noAuth, resolved.configuration.secret == nil {
            resolved.configuration.secret = FrameSigner.randomSecret()
        }
        guard let executable = ExecutableLookup.resolve(command[0], path: environment["PATH"]) else {
            FileHandleOutput.standardError("ephemeral-broker: command not found: \(command[0])\n")
            throw ExitCode(127)
        }

        let broker = Broker(configuration: resolved.configuration)
        let pipe: String
        do {
            pipe = try await broker.start()
        } catch {
            FileHandleOutput.standardError("ephemeral-broker: \(error)\n")
            throw ExitCode(1)
        }
        var childEnvironment: [Environment.Key: String?] = ["EPHEMERAL_PIPE": pipe]
        childEnvironment["EPHEMERAL_SECRET"] = .some(resolved.configuration.secret)

        let status = await runChild(executable: executable, environment: childEnvironment, logger: logger)
        await broker.shutdown()
        throw ExitCode(status)
    }

    /// Runs the child in its own process group, forwarding termination signals to that group.
    /// - Returns: The wrapper's exit status for the child's termination.
    private func runChild(executable: String, environment: [Environment.Key: String?], logger: Logger) async -> Int32 {
        let childGroup = Mutex<pid_t?>(nil)
        let pendingSignal = Mutex<Int32?>(nil)
        let forwarder = SignalForwarder([SIGINT, SIGTERM, SIGHUP, SIGQUIT]) { number in
            let group = childGroup.withLock { $0 }
            if let group {
                kill(-group, number)
            } else {
                pendingSignal.withLock { $0 = number }
            }
        }
        defer { forwarder.cancel() }
        var platform = PlatformOptions()
        platform.processGroupID = 0
        do {
            let result = try await Subprocess.run(
                .path(FilePath(executable)),
                arguments: Arguments(Array(command.dropFirst())),
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
            switch result.terminationStatus {
            case .exited(let code): return Int32(truncatingIfNeeded: code)
            case .signaled(let number): return 128 + Int32(truncatingIfNeeded: number)
            }
        } catch {
            FileHandleOutput.standardError("ephemeral-broker: cannot run \(command[0]): \(error)\n")
            logger.debug("spawn failed", metadata: ["error": "\(error)"])
            return 127
        }
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

    private static func isExecutableFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG && access(path, X_OK) == 0
    }
}
