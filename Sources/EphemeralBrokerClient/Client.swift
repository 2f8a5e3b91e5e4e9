import EphemeralWire
#if canImport(FoundationEssentials)
    import FoundationEssentials  // no ICU to load: a faster start for every short-lived worker process
#else
    import Foundation
#endif
import NIOCore
import NIOPosix

/// A connection to an ephemeral broker, shared safely by any number of concurrent tasks.
///
/// ```swift
/// let client = try Client()                       // EPHEMERAL_PIPE and EPHEMERAL_SECRET from the environment
/// try await client.set("token", "abc", ttl: .minutes(5))
/// let token: String = try await client.get("token")
/// ```
///
/// One persistent connection carries every call; requests are pipelined and each reply goes to its caller.
/// A missing or refused socket is retried on the original's schedule within the timeout, so a worker that starts
/// before its broker still succeeds; a dropped connection is re-established on the next call. A call that may
/// already have been applied and is not idempotent (`release`) is never sent twice.
public final class Client: Sendable {
    private enum ConnectionState {
        case idle
        case connecting(EventLoopFuture<any Channel>)
        case connected(any Channel)
    }

    /// How this client reaches its broker.
    public let configuration: ClientConfiguration
    private let signer: FrameSigner?
    private let state = Locked<ConnectionState>(.idle)
    private let nextRequestID = Locked<UInt64>(0)
    private let group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton

    /// The longest reply line accepted.
    static let maxReplyBytes = 256 << 20
    /// The most a compressed value may inflate to when read.
    static let maxDecompressedBytes = 256 << 20

    /// Creates a client.
    /// - Parameter configuration: Socket, secret, timeout and compression threshold.
    public init(configuration: ClientConfiguration) {
        self.configuration = configuration
        self.signer = configuration.secret.map(FrameSigner.init(secret:))
    }

    /// Creates a client from `EPHEMERAL_PIPE` and `EPHEMERAL_SECRET` (or `CLIENT_SECRET`).
    /// - Parameter environment: The variables to read; the process's environment by default.
    /// - Throws: `not_configured` when `EPHEMERAL_PIPE` is not set.
    public convenience init(environment: [String: String] = ProcessInfo.processInfo.environment) throws(BrokerError) {
        self.init(configuration: try ClientConfiguration.fromEnvironment(environment))
    }

    deinit {
        if case .connected(let channel) = state.withLock({ $0 }) { channel.close(promise: nil) }
    }

    /// Closes the connection; a later call opens a new one.
    public func close() async {
        let current = state.withLock { state -> ConnectionState in
            defer { state = .idle }
            return state
        }
        if case .connected(let channel) = current { try? await channel.close() }
    }

    // MARK: - Calls

    /// Sends one request and returns its successful reply.
    /// - Parameters:
    ///   - action: The action's wire name.
    ///   - idempotent: Whether the request may be sent again after a connection broke mid-call.
    ///   - extraTime: Time the broker may take on purpose (a lease's wait), added to the timeout.
    ///   - members: Writes the request's members after `action`.
    /// - Throws: The broker's error, or `connection_failed`, `timeout`, `invalid_reply`, `bad_reply_signature`.
    func call(
        _ action: String, idempotent: Bool = true, extraTime: Duration = .zero,
        members: (inout JSONLineWriter) -> Void = { _ in }
    ) async throws(BrokerError) -> BrokerReply {
        let clock = ContinuousClock()
        let deadline = clock.now + configuration.timeout + extraTime
        var attempt = 0
        while true {
            let channel = try await connectedChannel(deadline: deadline, attempt: &attempt)
            var nonce: String?
            let id = nextRequestID.withLock { id -> UInt64 in
                id &+= 1
                return id
            }
            var writer = JSONLineWriter.request(action, into: channel.allocator.buffer(capacity: 128))
            writer.member("id", int: Int64(truncatingIfNeeded: id))
            members(&writer)
            if signer != nil {
                nonce = Hex.encode(FrameSigner.randomBytes(16))
                writer.member("ts", int: Int64(Date().timeIntervalSince1970 * 1000))
                writer.member("nonce", string: nonce!)
            }
            let line = (consume writer).finishRequest(signer: signer)
            do throws(BrokerError) {
                guard let bytes = try await exchange(line, on: channel, deadline: deadline) else {
                    // Never sent (the connection had already closed, say refused at the broker's cap before
                    // this write): safe to send again, idempotent or not.
                    try await pause(attempt: &attempt, deadline: deadline)
                    continue
                }
                let reply = try BrokerReply(line: bytes, signer: signer, nonce: nonce)
                guard reply.json("id") == Array(String(id).utf8) else {
                    discard(channel)  // replies are out of step with requests: start afresh
                    throw BrokerError(.invalidReply, "the broker's reply answers another request")
                }
                if let error = reply.error { throw error }
                return reply
            } catch {
                // A connection refused at the broker's cap never had its request read: always safe to send again.
                let retryable = (error.code == .connectionFailed && idempotent) || error.code == .tooManyConnections
                guard retryable, clock.now < deadline else { throw error }
                try await pause(attempt: &attempt, deadline: deadline)
            }
        }
    }

    /// Writes one request and awaits its reply line.
    /// - Returns: The reply, or `nil` when the request was never written because the channel had already closed.
    private func exchange(_ line: ByteBuffer, on channel: any Channel, deadline: ContinuousClock.Instant)
        async throws(BrokerError) -> [UInt8]?
    {
        let notSent = Locked(false)
        let slot = ReplySlot(eventLoop: channel.eventLoop)
        let remaining = ContinuousClock().now.duration(to: deadline)
        let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(remaining.nanoseconds))) {
            slot.fail(BrokerError(.timeout, "no reply from the broker within \(self.configuration.timeout)"))
            // The stream is out of step now: the next call must start afresh, never reuse this channel.
            self.discard(channel)
        }
        channel.writeAndFlush(PendingRequest(line: line, reply: slot)).whenFailure { error in
            if let error = error as? ChannelError, case .ioOnClosedChannel = error { notSent.withLock { $0 = true } }
            slot.fail(BrokerError(.connectionFailed, "the connection to the broker closed"))
        }
        defer { timer.cancel() }
        do {
            return try await slot.futureResult.get()
        } catch let error as BrokerError {
            if notSent.withLock({ $0 }) { return nil }
            throw error
        } catch {
            throw BrokerError(.connectionFailed, "\(error)")
        }
    }

    /// Forgets `channel` (so no call picks it up again) and closes it.
    private func discard(_ channel: any Channel) {
        state.withLock { state in
            if case .connected(let current) = state, current === channel { state = .idle }
        }
        channel.close(promise: nil)
    }

    private func connectedChannel(deadline: ContinuousClock.Instant, attempt: inout Int) async throws(BrokerError)
        -> any Channel
    {
        while true {
            let (future, isNew) = state.withLock { state -> (EventLoopFuture<any Channel>?, Bool) in
                switch state {
                case .connected(let channel) where channel.isActive:
                    return (channel.eventLoop.makeSucceededFuture(channel), false)
                case .connecting(let future):
                    return (future, false)
                default:
                    let future = connect()
                    state = .connecting(future)
                    return (future, true)
                }
            }
            do {
                let channel = try await future!.get()
                if isNew { state.withLock { $0 = .connected(channel) } }
                return channel
            } catch {
                if isNew { state.withLock { $0 = .idle } }
                guard Self.isRetryable(error) else {
                    throw BrokerError(.connectionFailed, "cannot connect to \(configuration.socketPath): \(error)")
                }
                do {
                    try await pause(attempt: &attempt, deadline: deadline)
                } catch {
                    throw BrokerError(.connectionFailed, "cannot connect to \(configuration.socketPath): \(error)")
                }
            }
        }
    }

    private func connect() -> EventLoopFuture<any Channel> {
        let bootstrap = ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(LineFrameDecoder(maxLineBytes: Self.maxReplyBytes)))
                    try channel.pipeline.syncOperations.addHandler(ReplyMatcher())
                }
            }
        let path = configuration.socketPath
        #if os(Linux)
            // NIO takes at most 103 bytes (Darwin's limit); Linux allows 107, and a broker serves such paths.
            if path.utf8.count > 103 {
                do {
                    return bootstrap.withConnectedSocket(try Self.connectedSocket(path))
                } catch {
                    return group.next().makeFailedFuture(error)
                }
            }
        #endif
        return bootstrap.connect(unixDomainSocketPath: path)
    }

    #if os(Linux)
        /// A Unix socket connected to `path` (up to the kernel's 107 bytes), without blocking: a full listen
        /// backlog is `EAGAIN`, which the caller retries like any other.
        private static func connectedSocket(_ path: String) throws -> NIOBSDSocket.Handle {
            let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue), 0)
            guard descriptor >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
                _ = Glibc.close(descriptor)
                throw IOError(errnoCode: ENAMETOOLONG, reason: "connect")
            }
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                raw.copyBytes(from: bytes)
                raw[bytes.count] = 0
            }
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            guard result == 0 else {
                let code = errno
                _ = Glibc.close(descriptor)
                throw IOError(errnoCode: code, reason: "connect")
            }
            return descriptor
        }
    #endif

    /// Waits the next delay of the retry schedule.
    /// - Throws: `timeout` when the pause would end past the deadline.
    private func pause(attempt: inout Int, deadline: ContinuousClock.Instant) async throws(BrokerError) {
        let delays = configuration.retryDelays.isEmpty ? [Duration.milliseconds(50)] : configuration.retryDelays
        let delay = delays[min(attempt, delays.count - 1)]
        attempt += 1
        guard ContinuousClock().now + delay < deadline else {
            throw BrokerError(.timeout, "the broker did not answer within \(configuration.timeout)")
        }
        try? await Task.sleep(for: delay)
    }

    /// Errors worth another attempt: no socket yet, refused, would block, reset, broken pipe.
    private static func isRetryable(_ error: any Error) -> Bool {
        if let error = error as? IOError {
            return [ENOENT, ECONNREFUSED, EAGAIN, ECONNRESET, EPIPE, ETIMEDOUT].contains(error.errnoCode)
        }
        if error is NIOConnectionError { return true }
        if let error = error as? ChannelError, case .connectTimeout = error { return true }
        return false
    }
}

extension Duration {
    fileprivate var nanoseconds: Int64 {
        let parts = components
        return max(0, parts.seconds * 1_000_000_000 + parts.attoseconds / 1_000_000_000)
    }
}
