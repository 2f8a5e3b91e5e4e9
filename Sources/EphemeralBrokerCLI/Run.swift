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
            The command runs in its own process group with EPHEMERAL_PIPE set and, unless --no-auth or a secret is \
            given, a fresh random EPHEMERAL_SECRET. SIGINT, SIGTERM, SIGHUP and SIGQUIT go to the command's process \
            group. The exit status is the command's, 128+N when a signal N killed it, and 127 when it cannot be \
            started.
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

    @Argument(parsing: .postTerminator, help: "The command to run, after --.")
    var command: [String] = []

    func validate() throws {
        guard !command.isEmpty else {
            throw ValidationError("missing command: ephemeral-broker run [options] -- CMD ARGS…")
        }
    }

    func run() async throws {
        let wrapped = WrappedRun(
            settings: options.settings, noSummary: noSummary, before: before, after: after, command: command)
        throw ExitCode(try await wrapped.execute())
    }
}

/// What `run` does once its arguments are known: start a broker, run the command under it, report, shut down.
struct WrappedRun {
    var settings = BrokerSettings()
    var noSummary = false
    var before: String?
    var after: String?
    var command: [String]

    /// Runs it all.
    /// - Returns: The exit status for `run`: the command's, or that of `--before` or `--after` when they fail.
    /// - Throws: `ExitCode` when the broker or the command cannot start; a `ValidationError` for a bad setting.
    func execute() async throws -> Int32 {
        let environment = currentEnvironment()
        var resolved = try settings.resolve(environment: environment)
        let definitions = try settings.poolDefinitions()
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
        let pipe: String
        do {
            pipe = try await broker.start()
            try await definitions.define(on: broker)
        } catch {
            FileHandleOutput.standardError("ephemeral-broker: \(error)\n")
            await broker.shutdown()
            throw ExitCode(1)
        }
        var childEnvironment: [Environment.Key: String?] = ["EPHEMERAL_PIPE": pipe]
        childEnvironment["EPHEMERAL_SECRET"] = .some(resolved.configuration.secret)  // nil removes an outer one
        if let before {
            let status = await ChildRunner.run(
                ["/bin/sh", "-c", before], environment: childEnvironment,
                ownProcessGroup: false)
            guard status == 0 else {
                FileHandleOutput.standardError(
                    "ephemeral-broker: --before failed with status \(status); the command was not run\n")
                await broker.shutdown()
                return status
            }
        }
        var (status, group) = await ChildRunner.runReportingGroup(
            command, environment: childEnvironment,
            ownProcessGroup: true)
        if let after {
            if let group, !(await ChildRunner.waitForGroupToEmpty(group, seconds: 30)) {
                logger.warning("workers of the command are still running after 30 s; running --after anyway")
            }
            let afterStatus = await ChildRunner.run(
                ["/bin/sh", "-c", after], environment: childEnvironment,
                ownProcessGroup: false)
            if afterStatus != 0 {
                FileHandleOutput.standardError("ephemeral-broker: --after failed with status \(afterStatus)\n")
                if status == 0 { status = afterStatus }
            }
        }
        if !noSummary {
            let summaries = await broker.poolSummaries()
            if !summaries.isEmpty { FileHandleOutput.standardError(PoolReport.text(summaries)) }
        }
        await broker.shutdown()
        return status
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
