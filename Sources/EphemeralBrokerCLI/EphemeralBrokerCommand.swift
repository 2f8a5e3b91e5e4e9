import ArgumentParser
import EphemeralServer
import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Every subcommand names itself in its configuration: without a name, ArgumentParser asks the runtime for the
/// type's name, a protocol-conformance scan of the whole binary per subcommand that cost every short-lived
/// `ephemeral-broker` process a few milliseconds at start.
@main
struct EphemeralBrokerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ephemeral-broker",
        abstract: "An in-memory broker for coordinating parallel test runs on one machine.",
        discussion: """
            ephemeral-broker run -- swift test --parallel
            starts a broker on a private Unix socket, runs the command with EPHEMERAL_PIPE and a fresh \
            EPHEMERAL_SECRET in its environment, and exits with the command's status.
            """,
        subcommands: [
            Run.self, Serve.self, Get.self, Set.self, Del.self, List.self, Ping.self, Stats.self, Health.self,
            Metrics.self, Lease.self, Release.self, Incr.self, Wait.self, Shared.self,
        ]
    )

    /// Parses and runs, with exit status 2 for usage errors (as the control commands promise) instead of 64.
    /// An `ExitCode` a command throws is its status as it is, 64 included (a wrapped command's, say).
    /// `run -- CMD` without options skips ArgumentParser (see ``WrappedRun/init(plainArguments:)``).
    static func main() async {
        ParentDeathExec.runIfAsked(CommandLine.arguments)  // a command started with a parent-death signal
        SignalRelay.unblockInThisThread()
        reserveStandardDescriptors()
        do {
            if let wrapped = WrappedRun(plainArguments: CommandLine.arguments.dropFirst()) {
                try await wrapped.execute()
            }
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let status as ExitCode {
            terminate(status.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                FileHandleOutput.standardError(fullMessage(for: error) + "\n")
                terminate(2)
            }
            exit(withError: error)
        }
    }
}

/// Opens `/dev/null` on each of the standard descriptors 0, 1 and 2 that the caller closed (`run … <&-`), before
/// anything else opens a descriptor: otherwise the event loop's or a socket's descriptor would take the number, and
/// a command given "its standard input" would read the broker's own descriptor.
func reserveStandardDescriptors() {
    for descriptor: Int32 in 0...2 where fcntl(descriptor, F_GETFD) == -1 && errno == EBADF {
        _ = open("/dev/null", descriptor == 0 ? O_RDONLY : O_WRONLY)  // the lowest free number: this one
    }
}

/// Sets up swift-log once, before anything logs.
func bootstrapLogging(level: Logger.Level, format: BrokerLogFormat) {
    LoggingSystem.bootstrap { label in BrokerLogHandler(label: label, format: format, level: level) }
}

/// Writes to the standard streams with write(2), which needs no shared `FILE*`.
enum FileHandleOutput {
    static func standardOutput(_ text: String) { write(1, text) }
    static func standardError(_ text: String) { write(2, text) }

    private static func write(_ descriptor: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { raw in
            var offset = 0
            while offset < raw.count {
                #if canImport(Glibc)
                    let written = Glibc.write(descriptor, raw.baseAddress! + offset, raw.count - offset)
                #else
                    let written = Darwin.write(descriptor, raw.baseAddress! + offset, raw.count - offset)
                #endif
                if written <= 0 { return }
                offset += written
            }
        }
    }
}

func terminate(_ code: Int32) -> Never { exit(code) }
