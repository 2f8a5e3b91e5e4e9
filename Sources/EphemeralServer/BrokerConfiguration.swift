import EphemeralStore
import Logging

/// Where a broker's socket lives.
public enum SocketLocation: Sendable, Equatable {
    /// A fresh private directory (mode 0700, made with `mkdtemp` under `TMPDIR`) holding `broker-<pipeId>.sock`;
    /// a random ID when `nil`. The directory is removed at shutdown.
    case privateDirectory(pipeId: String? = nil)
    /// A fixed path chosen by the user. The socket is created with mode 0700 and its directory must not be
    /// writable by other users; a stale socket is replaced and a live broker there is an error.
    case path(String)
}

/// Everything a ``Broker`` needs to know, with the original's defaults.
public struct BrokerConfiguration: Sendable {
    /// Where the socket lives. Default: a private directory.
    public var socket: SocketLocation
    /// Item limits and TTL policy.
    public var store: StoreConfiguration
    /// The longest request line in bytes. Default 1 MiB.
    public var maxRequestSize: Int
    /// The most client connections served at once; one more is answered `too_many_connections` and closed.
    /// Default 1,024.
    public var maxConnections: Int
    /// The HMAC secret; every request must be signed when set. Default none.
    public var secret: String?
    /// Refuse signed requests that carry no `ts` and `nonce` (turns off the original client's unsigned-replay
    /// compatibility). Default `false`.
    public var requireNonce: Bool
    /// How far a signed request's `ts` may be from the broker's clock, in milliseconds. Default 30 s.
    public var replayWindow: Int64
    /// How often expired items and leases are swept, in milliseconds. Default 30 s.
    public var sweeperInterval: Int64
    /// Shut down after this many milliseconds without a request; `nil` for never. Default `nil`.
    public var idleTimeout: Int64?
    /// Log a heartbeat with counts every this many milliseconds; `nil` for never. Default `nil`.
    public var heartbeatInterval: Int64?
    /// How long a request line may take to arrive once its first byte has, in milliseconds: a peer that
    /// dribbles a line slower is answered `request_timeout` and closed. Idle connections between requests are
    /// never timed out. Default 10 s.
    public var requestTimeout: Int64
    /// How long shutdown waits for in-flight requests, in milliseconds. Default 5 s.
    public var drainTimeout: Int64
    /// Where the broker logs. Default: a logger labelled `ephemeral-broker`.
    public var logger: Logger

    /// Creates a configuration.
    /// - Parameters:
    ///   - socket: Default ``SocketLocation/privateDirectory(pipeId:)`` with a random ID.
    ///   - store: Default ``StoreConfiguration/init(defaultTTL:requireTTL:refreshTTLOnGet:maxItems:maxValueSize:)``.
    ///   - maxRequestSize: Bytes; default 1,048,576.
    ///   - maxConnections: Default 1,024.
    ///   - secret: Default `nil` (no signing).
    ///   - requireNonce: Default `false`.
    ///   - replayWindow: Milliseconds; default 30,000.
    ///   - sweeperInterval: Milliseconds; default 30,000.
    ///   - idleTimeout: Milliseconds; default `nil`.
    ///   - heartbeatInterval: Milliseconds; default `nil`.
    ///   - requestTimeout: Milliseconds; default 10,000.
    ///   - drainTimeout: Milliseconds; default 5,000.
    ///   - logger: Default `Logger(label: "ephemeral-broker")`.
    public init(
        socket: SocketLocation = .privateDirectory(), store: StoreConfiguration = StoreConfiguration(),
        maxRequestSize: Int = 1_048_576, maxConnections: Int = 1024, secret: String? = nil, requireNonce: Bool = false,
        replayWindow: Int64 = 30_000, sweeperInterval: Int64 = 30_000, idleTimeout: Int64? = nil,
        heartbeatInterval: Int64? = nil, requestTimeout: Int64 = 10_000, drainTimeout: Int64 = 5_000,
        logger: Logger = Logger(label: "ephemeral-broker")
    ) {
        self.socket = socket
        self.store = store
        self.maxRequestSize = maxRequestSize
        self.maxConnections = maxConnections
        self.secret = secret
        self.requireNonce = requireNonce
        self.replayWindow = replayWindow
        self.sweeperInterval = sweeperInterval
        self.idleTimeout = idleTimeout
        self.heartbeatInterval = heartbeatInterval
        self.requestTimeout = requestTimeout
        self.drainTimeout = drainTimeout
        self.logger = logger
    }
}
