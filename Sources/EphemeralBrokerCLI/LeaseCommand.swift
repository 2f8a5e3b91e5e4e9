import ArgumentParser
import EphemeralBrokerClient
import EphemeralStore
import EphemeralWire
import Subprocess

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `ephemeral-broker lease`: a pool item for a command's lifetime (like flock(1)), or the original integer lease.
struct Lease: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lease",
        abstract: "Hold a pool item while a command runs, or take the original integer lease.",
        discussion: """
            lease POOL [--wait 30s] [--ttl T] -- CMD ARGS…   runs CMD with EPHEMERAL_LEASE (the item as JSON), \
            EPHEMERAL_LEASE_INDEX and EPHEMERAL_LEASE_FENCE and holds the item for as long as CMD runs, whatever \
            the TTL (renewed every third of it). SIGINT, SIGTERM, SIGHUP and SIGQUIT go to CMD; the item goes \
            back only once CMD has exited. If this process is SIGKILLed, CMD is SIGKILLed too (Linux). A renewal \
            that is refused stops CMD (SIGTERM, then SIGKILL) and exits 1. Exits with CMD's status (dies of its \
            signal), or 75 when no item could be had (pool_exhausted, timeout).
            lease KEY --worker ID                  the original lease: prints the lowest integer no other worker holds.
            """)

    /// Exit status when no item could be had (EX_TEMPFAIL).
    static let unavailableStatus: Int32 = 75

    @OptionGroup var client: ClientOptions
    @Argument(help: "The pool (with a command) or the lease key (with --worker).") var key: String
    @Option(help: "The worker holding the original lease.") var worker: String?
    @Option(help: "How long to wait for a pool item (e.g. 30s); without it, fail at once when all are held.")
    var wait: String?
    @Option(help: "How long the lease lasts without renewal.") var ttl: String?
    @Argument(parsing: .postTerminator, help: "The command to run holding a pool item, after --.")
    var command: [String] = []

    func validate() throws {
        if command.isEmpty, worker == nil {
            throw ValidationError("give --worker ID for the original lease, or -- CMD to hold a pool item")
        }
        if !command.isEmpty, worker != nil {
            throw ValidationError("--worker is for the original lease, not with a command")
        }
    }

    func run() async throws {
        let ttl = try durationOption(ttl)
        if let worker {
            try await withBrokerErrors {
                let value = try await client.client().lease(key, workerId: worker, ttl: ttl)
                FileHandleOutput.standardOutput(client.json ? "{\"value\":\(value)}\n" : "\(value)\n")
            }
            return
        }
        let waitDuration = try durationOption(wait, "--wait")
        // Until the command runs there is nothing to undo: a signal ends this process at once, and its
        // connection's close gives back whatever it held or waited for.
        let relay = SignalRelay { SignalRelay.dieBySignal($0) }
        let broker = try client.client()
        let lease: PoolLease
        do {
            lease = try await broker.lease(pool: key, wait: waitDuration, ttl: ttl)
        } catch {
            FileHandleOutput.standardError("ephemeral-broker: \(error)\n")
            throw ExitCode([.poolExhausted, .timeout].contains(error.code) ? Self.unavailableStatus : 1)
        }
        let environment: [Environment.Key: String?] = [
            "EPHEMERAL_LEASE": String(decoding: lease.itemJSON ?? Array("null".utf8), as: UTF8.self),
            "EPHEMERAL_LEASE_INDEX": String(lease.index),
            "EPHEMERAL_LEASE_FENCE": String(lease.fence),
        ]
        let running = Locked<ChildRunner.Running?>(nil)
        let lost = Locked(false)
        let renewal = Task {
            await Self.keepRenewing(lease, ttl: ttl, on: broker) { error in
                FileHandleOutput.standardError(
                    "ephemeral-broker: the lease on item \(lease.index) of pool \(lease.pool) was lost (\(error)); "
                        + "stopping the command: it must not go on using the item\n")
                lost.withLock { $0 = true }
                await running.withLock({ $0 })?.terminate()
            }
        }
        // SIGKILL if this process dies: the item goes back the moment it does, so the command must not go on.
        let spec = ChildRunner.Spec(command: command, environment: environment, parentDeathSignal: SIGKILL)
        let (termination, group) = await ChildRunner.run(spec, relay: relay) { child in
            running.withLock { $0 = child }
            if lost.withLock({ $0 }) { child.signal(SIGTERM) }  // lost before the command had even started
        }
        // What the command started may still use the item (`sh -c` dies at a signal its worker is still handling).
        await ChildRunner.settleHolder(group, what: "item \(lease.index) of pool \(lease.pool)")
        renewal.cancel()
        if !lost.withLock({ $0 }) { try? await broker.release(lease) }  // only now that the command has exited
        await broker.close()
        if lost.withLock({ $0 }) { throw ExitCode(1) }
        if case .signaled(let number) = termination { relay.dieBySignal(number) }
        throw ExitCode(termination.status)
    }

    /// Renews the lease every third of its TTL while the command runs; calls `failed` when a renewal is refused.
    static func keepRenewing(
        _ lease: PoolLease, ttl: Duration?, on broker: Client, failed: (BrokerError) async -> Void
    ) async {
        let granted = ttl ?? .milliseconds(max(30, lease.expiresAt - SystemWallClock().now()))
        let interval = granted / 3
        var current = lease
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: interval)
            } catch {
                return  // cancelled: the command has exited
            }
            do {
                current = try await broker.renew(current, ttl: granted)
            } catch {
                if Task.isCancelled { return }
                await failed(error)
                return
            }
        }
    }
}
