import EphemeralStore
import EphemeralWire
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An in-memory broker serving the ephemeral-broker wire protocol on a private Unix socket.
///
/// ```swift
/// let broker = Broker(configuration: BrokerConfiguration())
/// let path = try await broker.start()   // hand `path` to workers as EPHEMERAL_PIPE
/// …
/// await broker.shutdown()               // drain, close, remove the socket, forget everything
/// ```
///
/// All state lives on one event loop: every connection is served there, so the store needs no locks and replies
/// keep request order.
public final class Broker: Sendable {
    private enum State {
        case idle
        case running(Running)
        case stopping
        case stopped
    }

    private struct Running {
        let group: MultiThreadedEventLoopGroup
        let server: any Channel
        let binding: SocketBinding
        let core: NIOLoopBound<BrokerCore>
        var tasks: [RepeatedTask]
    }

    private let configuration: BrokerConfiguration
    private let clock: any WallClock
    private let state = Locked<State>(.idle)
    private let stopWaiters = Locked<(stopped: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))
    private let children = Locked<[ObjectIdentifier: any Channel]>([:])

    /// Creates a broker; nothing is bound until ``start()``.
    /// - Parameters:
    ///   - configuration: Socket, limits, secret and timers.
    ///   - clock: The wall clock TTLs are measured with; tests inject a ``ManualWallClock``.
    public init(configuration: BrokerConfiguration, clock: any WallClock = SystemWallClock()) {
        self.configuration = configuration
        self.clock = clock
    }

    /// The socket path clients connect to, once started.
    public var socketPath: String? {
        state.withLock { state in
            if case .running(let running) = state { return running.binding.path }
            return nil
        }
    }

    /// Binds the socket and starts serving.
    /// - Returns: The socket path, for `EPHEMERAL_PIPE`.
    /// - Throws: ``SocketSetupError`` when the socket cannot be claimed (for example, a broker already runs on a
    ///   fixed path), or the underlying bind error.
    @discardableResult
    public func start() async throws -> String {
        let binding = try SocketBinding.prepare(configuration.socket)
        if let reason = binding.fallbackReason {
            configuration.logger.warning("TMPDIR is unusable; the socket is under /tmp", metadata: ["reason": "\(reason)"])
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let configuration = self.configuration
        let clock = self.clock
        let core = try await loop.submit {
            let core = BrokerCore(configuration: configuration, clock: clock)
            core.eventLoop = loop
            return NIOLoopBound(core, eventLoop: loop)
        }.get()
        let maxRequestSize = configuration.maxRequestSize
        let ownUID = getuid()
        let logger = configuration.logger
        let server: any Channel
        do {
            server = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 256)
                // A peer that shuts down its writing side still reads every reply (the handler closes after them).
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .childChannelInitializer { channel in
                    PeerCredentials.userID(of: channel).flatMapThrowing { uid in
                        guard uid == ownUID else {
                            logger.warning("refused a connection from another user", metadata: ["uid": "\(uid)"])
                            throw ChannelError.inappropriateOperationForState
                        }
                        try channel.pipeline.syncOperations.addHandler(
                            BrokerConnectionHandler(core: core.value, maxLineBytes: maxRequestSize))
                        let id = ObjectIdentifier(channel)
                        self.children.withLock { $0[id] = channel }
                        channel.closeFuture.whenComplete { _ in
                            _ = self.children.withLock { $0.removeValue(forKey: id) }
                        }
                    }
                }
                .bind(unixDomainSocketPath: binding.bindPath).get()
            try binding.finishBinding()
        } catch {
            binding.remove()
            try? await group.shutdownGracefully()
            throw error
        }
        // Running before any timer exists: an idle timeout that fires at once must find the broker running, or its
        // stop would come before the start has finished and leave a running broker marked stopped.
        state.withLock {
            $0 = .running(Running(group: group, server: server, binding: binding, core: core, tasks: []))
        }
        let tasks = try await loop.submit {
            var tasks = [RepeatedTask]()
            let sweep = TimeAmount.milliseconds(self.configuration.sweeperInterval)
            tasks.append(loop.scheduleRepeatedTask(initialDelay: sweep, delay: sweep) { _ in core.value.sweep() })
            if let heartbeat = self.configuration.heartbeatInterval {
                let delay = TimeAmount.milliseconds(heartbeat)
                tasks.append(
                    loop.scheduleRepeatedTask(initialDelay: delay, delay: delay) { _ in
                        core.value.heartbeat()
                    })
            }
            if let idle = self.configuration.idleTimeout {
                let delay = TimeAmount.milliseconds(max(10, min(idle / 4, 1000)))
                tasks.append(
                    loop.scheduleRepeatedTask(initialDelay: delay, delay: delay) { task in
                        guard core.value.isIdle() else { return }
                        task.cancel()  // shut down once
                        logger.info("idle timeout reached; shutting down", metadata: ["idle_ms": "\(idle)"])
                        Task { await self.shutdown() }
                    })
            }
            return tasks
        }.get()
        let kept = state.withLock { state -> Bool in
            guard case .running(var running) = state else { return false }
            running.tasks = tasks
            state = .running(running)
            return true
        }
        if !kept { for task in tasks { task.cancel() } }  // stopped meanwhile
        logger.debug("broker started", metadata: ["pipe": "\(binding.path)"])
        return binding.path
    }

    /// Stops taking new work: every request from now on is answered `draining`, and the call returns once the
    /// requests already being served are answered, or after `timeout`.
    /// - Parameter timeout: The longest wait; the configuration's `drainTimeout` when `nil`.
    public func drain(timeout: Duration? = nil) async {
        guard let running = currentRunning() else { return }
        let limit =
            timeout.map { Int64($0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000) }
            ?? configuration.drainTimeout
        let deadline = NIODeadline.now() + .milliseconds(limit)
        let loop = running.core.eventLoop
        var busy =
            (try? await loop.submit {
                running.core.value.draining = true
                running.core.value.failWaitsForDrain()
                return running.core.value.inFlight > 0
            }.get()) ?? false
        while busy, NIODeadline.now() < deadline {
            try? await Task.sleep(for: .milliseconds(5))
            busy = (try? await loop.submit { running.core.value.inFlight > 0 }.get()) ?? false
        }
    }

    /// Closes the socket and every connection, removes the socket and its directory, and forgets all data.
    public func stop() async {
        let previous = state.withLock { state -> State in
            let previous = state
            switch state {
            case .running: state = .stopping
            case .idle: state = .stopped
            case .stopping, .stopped: break
            }
            return previous
        }
        switch previous {
        case .running: break
        case .idle:
            markStopped()
            return
        case .stopping, .stopped:
            await waitUntilStopped()  // another stop is under way: return once it is done
            return
        }
        guard case .running(let running) = previous else { return }
        for task in running.tasks { task.cancel() }
        try? await running.server.close()
        for child in children.withLock({ Array($0.values) }) { try? await child.close() }
        running.binding.remove()
        _ = try? await running.core.eventLoop.submit { running.core.value.clear() }.get()
        configuration.logger.debug("broker stopped", metadata: ["pipe": "\(running.binding.path)"])
        try? await running.group.shutdownGracefully()
        state.withLock { $0 = .stopped }
        markStopped()
    }

    /// Defines a pool of exclusive items, as a `define_pool` request would.
    /// - Parameters:
    ///   - name: The pool's name.
    ///   - capacity: How many interchangeable items, when `items` is `nil`.
    ///   - items: The items, each as JSON text.
    /// - Throws: `invalid_pool` or `pool_exists`, or ``SocketSetupError`` when the broker is not running.
    public func definePool(_ name: String, capacity: Int? = nil, items: [[UInt8]]? = nil) async throws {
        guard let running = currentRunning() else { throw SocketSetupError("the broker is not running") }
        try await running.core.eventLoop.submit {
            _ = try running.core.value.storeDefinePool(name, capacity: capacity, items: items)
        }.get()
    }

    /// Per-pool figures so far: grants, waits, longest wait, peak holders, releases by disconnect.
    public func poolSummaries() async -> [PoolSummary] {
        guard let running = currentRunning() else { return [] }
        return (try? await running.core.eventLoop.submit { running.core.value.store.poolSummaries() }.get()) ?? []
    }

    /// Drains (bounded by the configuration's `drainTimeout`), then stops.
    public func shutdown() async {
        await drain()
        await stop()
    }

    /// Waits until the broker has stopped, whether by ``shutdown()``, ``stop()`` or the idle timeout.
    public func waitUntilStopped() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let alreadyStopped = stopWaiters.withLock { state -> Bool in
                if state.stopped { return true }
                state.waiters.append(continuation)
                return false
            }
            if alreadyStopped { continuation.resume() }
        }
    }

    private func markStopped() {
        let waiters = stopWaiters.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.stopped = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    private func currentRunning() -> Running? {
        state.withLock { state in
            if case .running(let running) = state { return running }
            return nil
        }
    }
}
