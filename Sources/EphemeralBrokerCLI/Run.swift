import ArgumentParser
import EphemeralServer
import EphemeralStore
import EphemeralWire
#if canImport(FoundationEssentials)
    import FoundationEssentials  // no ICU to load: a faster start for every short-lived worker process
#else
    import Foundation
#endif
import Logging
import Subprocess

/// `ephemeral-broker run -- CMD ARGS…`: a broker for the lifetime of one command.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Start a broker, run a command under it, and exit with the command's status.",
        discussion: """
            The command runs with EPHEMERAL_PIPE set and, unless --no-auth or a secret is given, a fresh random \
            EPHEMERAL_SECRET, in a process group of its own (in the terminal's foreground group when standard \
            input is a terminal). SIGINT, SIGTERM, SIGHUP and SIGQUIT go to that group. The exit status is the \
            command's; when a signal killed it, run dies of that signal too (a shell reports 128+N); 127 when it \
            cannot be started.
            """,
        aliases: ["start"]
    )

    @OptionGroup var options: BrokerOptions

    @Flag(help: "Do not print the per-pool summary when the command ends.")
    var noSummary = false

    @Option(
        help: "A shell command run once, with the broker up, before the command; the command is not run if it fails.")
    var before: String?

    @Option(help: "A shell command run once after the command and all its workers are done, with the broker still up.")
    var after: String?

    @Option(
        help: """
            How long the command's process group may outlive it (default 5s, at most 1h): what is left then gets \
            SIGTERM, then SIGKILL a second later, and is named on standard error.
            """)
    var grace: String?

    @Argument(parsing: .postTerminator, help: "The command to run, after --.")
    var command: [String] = []

    func validate() throws {
        guard !command.isEmpty else {
            throw ValidationError("missing command: ephemeral-broker run [options] -- CMD ARGS…")
        }
    }

    func run() async throws {
        let wrapped = WrappedRun(
            settings: options.settings, noSummary: noSummary, before: before, after: after, grace: grace,
            command: command)
        try await wrapped.execute()
    }
}

/// What `run` does once its arguments are known: start a broker, run the command under it, report, shut down.
///
/// Signals are caught from the first moment (``SignalRelay``): one that comes while a child runs (`--before`, the
/// command, `--after`) goes to it, and what follows still runs (`--after` is often a teardown); one that comes
/// between them, or during start-up, skips what was not started yet. Either way the broker is shut down and its socket directory removed before the wrapper exits, and a
/// command that died of a signal makes the wrapper die of the same signal.
struct WrappedRun {
    var settings = BrokerSettings()
    var noSummary = false
    var before: String?
    var after: String?
    /// How long the command's process group may outlive it before what is left is ended; `nil` for the default.
    var grace: String?
    var command: [String]

    /// How long leftover workers of the command may run on by default: 5 s.
    static let defaultGrace: Int64 = 5_000

    /// Runs it all, and exits: with the command's status (or that of `--before` or `--after` when they fail), or
    /// by the signal that ended the command or the wrapper.
    /// - Throws: `ExitCode` when the broker or the command cannot start; a `ValidationError` for a bad setting.
    func execute() async throws -> Never {
        let relay = SignalRelay()
        let environment = currentEnvironment()
        var resolved = try settings.resolve(environment: environment)
        let definitions = try settings.poolDefinitions()
        let graceMilliseconds = try grace.map { text in
            guard let milliseconds = DurationParser.milliseconds(text),
                OptionRange.Durations.drain.milliseconds.contains(milliseconds)
            else {
                throw ValidationError("invalid duration '\(text)' for --grace: from 0ms to 1h, e.g. 500ms, 10s")
            }
            return milliseconds
        } ?? Self.defaultGrace
        bootstrapLogging(level: resolved.logLevel, format: resolved.logFormat)
        let logger = Logger(label: "ephemeral-broker")
        resolved.configuration.logger = logger
        if resolved.configuration.idleTimeout != nil {
            logger.warning("--idle-timeout applies to serve only; the wrapped command decides how long run lasts")
            resolved.configuration.idleTimeout = nil
        }
        if !settings.noAuth, resolved.configuration.secret == nil {
            resolved.configuration.secret = FrameSigner.randomSecret()
        }
        guard ExecutableLookup.resolve(command[0], path: environment["PATH"]) != nil else {
            FileHandleOutput.standardError("ephemeral-broker: command not found: \(command[0])\n")
            throw ExitCode(127)
        }

        let broker = Broker(configuration: resolved.configuration)
        /// Shuts the broker down and ends the process: by the signal that stopped things, or with `status`.
        func finish(_ status: Int32, signal: Int32? = nil) async -> Never {
            await broker.shutdown()
            if let signal = signal ?? relay.unforwarded { relay.dieBySignal(signal) }
            terminate(status)
        }
        /// ``finish(_:signal:)`` as a child ended: with its status, or by its signal.
        func finish(as termination: Termination) async -> Never {
            switch termination {
            case .exited(let code): await finish(code)
            case .signaled(let number): await finish(128 + number, signal: number)
            }
        }
        /// A signal came before `phase` began: it is skipped, and the wrapper ends as `termination` says (the
        /// command's, when it has run) or by the signal.
        func stopped(before phase: String, termination: Termination? = nil) async -> Never {
            let signal = relay.unforwarded!
            FileHandleOutput.standardError("ephemeral-broker: stopped by signal \(signal); \(phase) was not run\n")
            await finish(as: termination ?? .signaled(signal))
        }
        let pipe: String
        do {
            pipe = try await broker.start()
            try await definitions.define(on: broker)
        } catch {
            FileHandleOutput.standardError("ephemeral-broker: \(error)\n")
            await finish(1)
        }
        var childEnvironment: [Environment.Key: String?] = ["EPHEMERAL_PIPE": pipe]
        childEnvironment["EPHEMERAL_SECRET"] = .some(resolved.configuration.secret)  // nil removes an outer one
        func run(_ command: [String]) async -> (termination: Termination, group: pid_t?) {
            await ChildRunner.run(ChildRunner.Spec(command: command, environment: childEnvironment), relay: relay)
        }
        if let before {
            if relay.unforwarded != nil { await stopped(before: "--before") }
            let termination = await run(["/bin/sh", "-c", before]).termination
            guard termination == .exited(0) else {
                FileHandleOutput.standardError(
                    "ephemeral-broker: --before failed with status \(termination.status); the command was not run\n")
                await finish(as: termination)
            }
        }
        if relay.unforwarded != nil { await stopped(before: "the command") }
        var (termination, group) = await run(command)
        if let group, !ChildRunner.members(of: group).isEmpty {
            logger.debug(
                "the command exited; waiting for what is left of its process group",
                metadata: ["grace_ms": "\(graceMilliseconds)"])
            let (ended, after) = await ChildRunner.settleGroup(group, milliseconds: graceMilliseconds) {
                relay.unforwarded != nil
            }
            if !ended.isEmpty {
                FileHandleOutput.standardError(
                    "ephemeral-broker: \(ChildRunner.describe(ended, after: after, grace: "--grace \(graceMilliseconds) ms"))\n")
            }
        }
        if let after {
            if relay.unforwarded != nil { await stopped(before: "--after", termination: termination) }
            let afterTermination = await run(["/bin/sh", "-c", after]).termination
            if afterTermination != .exited(0) {
                FileHandleOutput.standardError(
                    "ephemeral-broker: --after failed with status \(afterTermination.status)\n")
                if termination == .exited(0) { termination = afterTermination }  // the command's failure comes first
            }
        }
        if !noSummary {
            let summaries = await broker.poolSummaries()
            if !summaries.isEmpty { FileHandleOutput.standardError(PoolReport.text(summaries)) }
        }
        await finish(as: termination)
    }
}

extension WrappedRun {
    /// `run -- CMD ARGS…` (or `start -- …`) with no options, the form nearly every wrapped run takes, read without
    /// ArgumentParser: its reflection over the two dozen options of `run` cost every wrapped run about 3 ms.
    /// - Returns: `nil` for any other command line, which ArgumentParser then parses.
    init?(plainArguments arguments: some Collection<String>) {
        var rest = arguments[...]
        guard rest.popFirst().map({ $0 == "run" || $0 == "start" }) == true, rest.popFirst() == "--", !rest.isEmpty
        else { return nil }
        self.init(command: Array(rest))
    }
}

extension [PoolDefinition] {
    /// Defines every pool on a started broker.
    func define(on broker: Broker) async throws {
        for pool in self { try await broker.definePool(pool.name, capacity: pool.capacity, items: pool.items) }
    }
}

/// One `--pool` argument: `NAME=FILE` with a JSON array of items, or `NAME=N`.
struct PoolDefinition {
    var name: String
    var capacity: Int?
    var items: [[UInt8]]?

    init(argument: String) throws {
        guard let equals = argument.firstIndex(of: "="), equals != argument.startIndex else {
            throw ValidationError("--pool takes NAME=FILE or NAME=COUNT, not '\(argument)'")
        }
        name = String(argument[..<equals])
        let source = String(argument[argument.index(after: equals)...])
        if let count = Int(source) {
            guard (1...Store.maxPoolCapacity).contains(count) else {
                throw ValidationError("pool \(name): the count must be from 1 to \(Store.maxPoolCapacity), not \(count)")
            }
            capacity = count
            return
        }
        guard let data = FileManager.default.contents(atPath: source) else {
            throw ValidationError("pool \(name): cannot read \(source)")
        }
        guard let elements = JSONText.arrayElements(Array(data)) else {
            throw ValidationError("pool \(name): \(source) is not a JSON array of items")
        }
        guard !elements.isEmpty else { throw ValidationError("pool \(name): \(source) has no items") }
        guard elements.count <= Store.maxPoolCapacity else {
            throw ValidationError("pool \(name): \(source) has more than \(Store.maxPoolCapacity) items")
        }
        items = elements
    }
}

/// The end-of-run summary, one line per pool.
enum PoolReport {
    static func text(_ summaries: [PoolSummary]) -> String {
        var text = "ephemeral-broker: pool summary\n"
        for pool in summaries {
            let longest = String(Double(pool.longestWait) / 1000)
            text +=
                "  \(pool.pool): \(pool.grants) grants, \(pool.waits) waited (longest \(longest) s), "
                + "peak \(pool.peakHolders)/\(pool.capacity) held, \(pool.releasedByDisconnect) released by disconnect, "
                + "\(pool.expired) expired, \(pool.timedOut) waits timed out\n"
        }
        return text
    }
}
