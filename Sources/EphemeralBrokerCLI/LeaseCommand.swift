import ArgumentParser
import EphemeralBrokerClient
import EphemeralWire
import Subprocess

/// `ephemeral-broker lease`: a pool item for a command's lifetime (like flock(1)), or the original integer lease.
struct Lease: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lease",
        abstract: "Hold a pool item while a command runs, or take the original integer lease.",
        discussion: """
            lease POOL [--wait 30s] -- CMD ARGS…   runs CMD with EPHEMERAL_LEASE (the item as JSON), \
            EPHEMERAL_LEASE_INDEX and EPHEMERAL_LEASE_FENCE, holds the item while CMD runs (and gives it back if \
            this process dies), releases it when CMD ends, and exits with CMD's status; exit 75 when no item \
            could be had (pool_exhausted, timeout).
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
        let status = await ChildRunner.run(command, environment: environment, ownProcessGroup: false)
        try? await broker.release(lease)
        await broker.close()
        throw ExitCode(status)
    }
}
