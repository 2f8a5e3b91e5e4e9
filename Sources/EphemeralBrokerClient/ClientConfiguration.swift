import EphemeralWire

/// How a ``Client`` reaches its broker.
public struct ClientConfiguration: Sendable {
    /// The broker's socket path.
    public var socketPath: String
    /// The HMAC secret; requests are signed and replies verified when set.
    public var secret: String?
    /// The most one call may take, retries included. Default 5 seconds.
    public var timeout: Duration
    /// Values whose JSON is at least this many bytes are sent gzip-compressed, as the original client does.
    /// Default 1 KiB; `Int.max` turns compression off.
    public var compressionThreshold: Int
    /// The pauses between attempts to reach the broker; the last one repeats until the timeout.
    /// Default the original's 50, 100, 200, 400, 800 ms.
    public var retryDelays: [Duration]

    /// Creates a configuration.
    /// - Parameters:
    ///   - socketPath: The broker's socket path.
    ///   - secret: Default none.
    ///   - timeout: Default 5 s.
    ///   - compressionThreshold: Bytes; default 1,024.
    ///   - retryDelays: Default 50, 100, 200, 400, 800 ms.
    public init(
        socketPath: String, secret: String? = nil, timeout: Duration = .seconds(5),
        compressionThreshold: Int = 1024,
        retryDelays: [Duration] = [
            .milliseconds(50), .milliseconds(100), .milliseconds(200),
            .milliseconds(400), .milliseconds(800),
        ]
    ) {
        self.socketPath = socketPath
        self.secret = secret
        self.timeout = timeout
        self.compressionThreshold = compressionThreshold
        self.retryDelays = retryDelays
    }

    /// Reads `EPHEMERAL_PIPE`, and `EPHEMERAL_SECRET` (or `CLIENT_SECRET`), as the wrapper sets them.
    /// - Parameter environment: The variables to read.
    /// - Returns: The configuration.
    /// - Throws: `not_configured` when `EPHEMERAL_PIPE` is not set.
    public static func fromEnvironment(_ environment: [String: String]) throws(BrokerError) -> ClientConfiguration {
        guard let pipe = environment["EPHEMERAL_PIPE"], !pipe.isEmpty else {
            throw BrokerError(
                .notConfigured,
                "EPHEMERAL_PIPE is not set: run under `ephemeral-broker run -- …` or pass a socket path")
        }
        let secret = [environment["EPHEMERAL_SECRET"], environment["CLIENT_SECRET"]].compactMap { $0 }
            .first { !$0.isEmpty }
        return ClientConfiguration(socketPath: pipe, secret: secret)
    }
}
