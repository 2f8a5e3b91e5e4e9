import ArgumentParser
import EphemeralServer
import EphemeralWire
import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `ephemeral-broker serve`: a standalone broker until SIGINT, SIGTERM or the idle timeout.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run a standalone broker and print its socket path.",
        discussion: "Requests are signed only when a secret is given (--secret or BROKER_SECRET), as in the original."
    )

    @OptionGroup var options: BrokerOptions

    @Flag(help: "Print 'export EPHEMERAL_PIPE=…' after the path, for eval in a shell.")
    var printEnv = false

    func run() async throws {
        // Caught before anything is observable: a signal during start-up stops the broker as soon as it is up.
        let started = Locked<Broker?>(nil)
        let relay = SignalRelay { _ in
            if let broker = started.withLock({ $0 }) { Task { await broker.shutdown() } }
        }
        let settings = options.settings
        var resolved = try settings.resolve(environment: currentEnvironment())
        let definitions = try settings.poolDefinitions()
        bootstrapLogging(level: resolved.logLevel, format: resolved.logFormat)
        resolved.configuration.logger = Logger(label: "ephemeral-broker")
        let broker = Broker(configuration: resolved.configuration)
        let path: String
        do {
            path = try await broker.start()
            try await definitions.define(on: broker)
        } catch {
            FileHandleOutput.standardError("ephemeral-broker: \(error)\n")
            await broker.shutdown()
            throw ExitCode(1)
        }
        started.withLock { $0 = broker }
        guard relay.received == nil else {  // stopped while starting
            await broker.shutdown()
            return
        }
        FileHandleOutput.standardOutput(path + "\n")
        if printEnv { FileHandleOutput.standardOutput("export EPHEMERAL_PIPE=\(shellQuoted(path))\n") }
        await broker.waitUntilStopped()
    }
}

/// The process's environment as a dictionary.
func currentEnvironment() -> [String: String] {
    var result = [String: String]()
    var pointer = environ
    while let entry = pointer.pointee {
        let text = String(decoding: UnsafeRawBufferPointer(start: entry, count: strlen(entry)), as: UTF8.self)
        if let equals = text.firstIndex(of: "=") {
            result[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        pointer += 1
    }
    return result
}

/// Quotes a string for a POSIX shell.
func shellQuoted(_ text: String) -> String {
    "'" + text.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
}
