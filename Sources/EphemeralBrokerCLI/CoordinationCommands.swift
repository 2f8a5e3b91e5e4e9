import ArgumentParser
import EphemeralBrokerClient
import EphemeralWire
#if canImport(FoundationEssentials)
    import FoundationEssentials  // no ICU to load: a faster start for every short-lived worker process
#else
    import Foundation
#endif
import Subprocess

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

struct Incr: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "incr",
        abstract: "Add to an integer counter atomically; print the new value.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The counter's key.") var key: String
    @Option(parsing: .unconditional, help: "How much to add (may be negative: --by -5).") var by: Int64 = 1
    @Option(help: "The counter's TTL when it is created (default: the broker's).") var ttl: String?

    func run() async throws {
        let ttl = try durationOption(ttl)
        try await withBrokerErrors {
            let value = try await client.client().increment(key, by: by, ttl: ttl)
            FileHandleOutput.standardOutput(client.json ? "{\"value\":\(value)}\n" : "\(value)\n")
        }
    }
}

struct Wait: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wait",
        abstract: "Wait until a key has a value; print it.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The key.") var key: String
    @Option(help: "How long to wait for the key (e.g. 30s).") var wait: String = "30s"

    func run() async throws {
        let wait = try durationOption(wait, "--wait")!
        try await withBrokerErrors {
            let value = try await client.client().waitJSON(forKey: key, timeout: wait)
            FileHandleOutput.standardOutput(
                (client.json ? String(decoding: value, as: UTF8.self) : readable(value)) + "\n")
        }
    }
}

struct Shared: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shared",
        abstract: "Print a value computed once for the whole run: CMD runs only if nobody has computed it yet.",
        discussion: """
            The first caller runs CMD and stores its standard output (without the trailing newline) as a string; \
            every concurrent caller waits for that result instead of running CMD again. If CMD fails, nothing is \
            stored, this exits with CMD's status, and a waiting caller runs CMD instead.
            """)
    @OptionGroup var client: ClientOptions
    @Argument(help: "The key.") var key: String
    @Option(help: "How long the computed value lives (e.g. 1h).") var ttl: String
    @Option(help: "How long to wait for another caller's computation.") var wait: String = "120s"
    @Option(help: "How long CMD may run before another caller may take over.") var computeTimeout: String = "60s"
    @Argument(parsing: .postTerminator, help: "The command that computes the value, after --.") var command: [String] =
        []

    func validate() throws {
        guard !command.isEmpty else {
            throw ValidationError("missing command: ephemeral-broker shared KEY --ttl 1h -- CMD…")
        }
    }

    func run() async throws {
        guard let ttl = try durationOption(ttl), let wait = try durationOption(wait, "--wait"),
            let computeTimeout = try durationOption(computeTimeout, "--compute-timeout")
        else { throw ValidationError("invalid durations") }
        // Until the command runs there is nothing to undo: a signal ends this process at once, and its
        // connection's close gives its claim to the next waiter.
        let relay = SignalRelay { SignalRelay.dieBySignal($0) }
        let broker = try client.client()
        let command = self.command
        do {
            // The claim outlasts the command's own deadline by the time it takes to stop it: no other worker can
            // take the claim over while this computation still runs.
            let claimTTL = computeTimeout + .milliseconds(ChildRunner.holdersGrace) + .seconds(5)
            let value: String = try await broker.shared(key, ttl: ttl, computeTimeout: claimTTL, wait: wait) {
                try await CommandOutput.capture(command, relay: relay, deadline: computeTimeout, key: key)
            }
            FileHandleOutput.standardOutput(value + "\n")
        } catch let error as CommandOutput.Failed {
            if case .signaled(let number) = error.termination { relay.dieBySignal(number) }
            throw ExitCode(error.termination.status)
        } catch let error as BrokerError {
            FileHandleOutput.standardError("ephemeral-broker: \(error)\n")
            throw ExitCode(1)
        }
    }
}

/// Runs a command and captures its standard output, passing its standard error through.
enum CommandOutput {
    struct Failed: Error {
        var termination: Termination
    }

    /// Runs `command` with the caught signals passed on to it, and SIGKILL if this process dies while it computes:
    /// the claim goes to another worker the moment this process is gone, so the command must not go on. A command
    /// still running at `deadline` is stopped (SIGTERM, SIGKILL five seconds later), and its claim goes to the next
    /// worker only once it and what it started are gone.
    static func capture(_ command: [String], relay: SignalRelay, deadline: Duration, key: String) async throws
        -> String
    {
        let spec = ChildRunner.Spec(command: command, parentDeathSignal: SIGKILL)
        let watchdog = Locked<Task<Void, Never>?>(nil)
        let outcome = await ChildRunner.run(spec, relay: relay, output: .string(limit: 16 << 20)) { child in
            watchdog.withLock {
                $0 = Task {
                    guard (try? await Task.sleep(for: deadline)) != nil else { return }
                    FileHandleOutput.standardError(
                        "ephemeral-broker: computing \(key) took longer than --compute-timeout (\(deadline)); "
                            + "stopping it, so that another worker may compute it\n")
                    await child.terminate()
                }
            }
        }
        watchdog.withLock { $0?.cancel() }
        await ChildRunner.settleHolder(outcome.group, what: "the claim on \(key)")
        guard outcome.termination == .exited(0) else { throw Failed(termination: outcome.termination) }
        var text = outcome.output.flatMap { $0 } ?? ""
        if text.hasSuffix("\n") { text.removeLast() }
        return text
    }
}
