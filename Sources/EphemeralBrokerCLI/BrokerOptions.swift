import ArgumentParser
import EphemeralServer
import EphemeralStore
import Logging

/// The broker's options on the command line (`run` and `serve`); ``settings`` hands them to ``BrokerSettings``, which
/// resolves them against the environment: flags first, then the original's `BROKER_*` variables, then defaults.
struct BrokerOptions: ParsableArguments {
    @Option(
        name: .customLong("ttl"), help: "Default TTL (e.g. 30m, 1500ms; a bare number is ms). Env: BROKER_DEFAULT_TTL.")
    var defaultTTL: String?

    @Option(help: "Maximum number of items, 0 for no limit. Env: BROKER_MAX_ITEMS.")
    var maxItems: String?

    @Option(help: "Maximum request line in bytes. Env: BROKER_MAX_REQUEST_SIZE.")
    var maxRequestSize: String?

    @Option(help: "Maximum value size in bytes. Env: BROKER_MAX_VALUE_SIZE.")
    var maxValueSize: String?

    @Option(help: "Maximum client connections at once (default 1024). Env: BROKER_MAX_CONNECTIONS.")
    var maxConnections: String?

    @Option(help: "HMAC secret; prefer the BROKER_SECRET environment variable, which ps cannot show.")
    var secret: String?

    @Flag(name: .customLong("no-require-ttl"), help: "Allow set without a TTL. Env: BROKER_REQUIRE_TTL=false.")
    var noRequireTTL = false

    @Flag(
        name: .customLong("refresh-ttl-on-get"),
        help: "Restart an item's TTL on every get. Env: BROKER_REFRESH_TTL_ON_GET.")
    var refreshTTLOnGet = false

    @Option(help: "Socket file name: broker-<id>.sock in the private directory. Env: BROKER_PIPE_ID.")
    var pipeId: String?

    @Option(help: "Fixed socket path instead of a private directory. Env: BROKER_SOCKET.")
    var socket: String?

    @Option(help: "How often expired entries are swept. Env: BROKER_SWEEPER_INTERVAL.")
    var sweeperInterval: String?

    @Option(help: "Shut down after this long without a request (serve only). Env: BROKER_IDLE_TIMEOUT.")
    var idleTimeout: String?

    @Option(help: "Log a heartbeat this often. Env: BROKER_HEARTBEAT_INTERVAL.")
    var heartbeatInterval: String?

    @Option(help: "How long a begun request line may take to arrive (default 10s). Env: BROKER_REQUEST_TIMEOUT.")
    var requestTimeout: String?

    @Option(help: "How long shutdown waits for in-flight requests. Env: BROKER_DRAIN_TIMEOUT.")
    var drainTimeout: String?

    @Option(help: "debug, info, warn or error. Env: BROKER_LOG_LEVEL.")
    var logLevel: String?

    @Option(help: "human or json. Env: BROKER_LOG_FORMAT (or BROKER_STRUCTURED_LOGGING=true).")
    var logFormat: String?

    @Flag(help: "Debug logging. Env: BROKER_DEBUG.")
    var debug = false

    @Flag(help: "Do not sign: no secret is generated or required.")
    var noAuth = false

    @Flag(help: "Refuse signed requests without ts and nonce (replay protection for every client).")
    var requireNonce = false

    @Option(
        name: .customLong("pool"),
        help: ArgumentHelp(
            "A pool of exclusive items: NAME=FILE (a JSON array, e.g. test accounts) or NAME=N (N interchangeable items).",
            valueName: "name=file|count"))
    var pools: [String] = []

    /// The options as given, for ``BrokerSettings/resolve(environment:)``.
    var settings: BrokerSettings {
        BrokerSettings(
            defaultTTL: defaultTTL,
            maxItems: maxItems,
            maxRequestSize: maxRequestSize,
            maxValueSize: maxValueSize,
            maxConnections: maxConnections,
            secret: secret,
            noRequireTTL: noRequireTTL,
            refreshTTLOnGet: refreshTTLOnGet,
            pipeId: pipeId,
            socket: socket,
            sweeperInterval: sweeperInterval,
            idleTimeout: idleTimeout,
            heartbeatInterval: heartbeatInterval,
            requestTimeout: requestTimeout,
            drainTimeout: drainTimeout,
            logLevel: logLevel,
            logFormat: logFormat,
            debug: debug,
            noAuth: noAuth,
            requireNonce: requireNonce,
            pools: pools)
    }
}

/// The broker's settings as the command line gave them: unset ones fall back to the original's `BROKER_*`
/// environment variables, then to defaults, in ``resolve(environment:)``. `run -- CMD` with no options starts from
/// `BrokerSettings()` without ArgumentParser; every other command line fills it from ``BrokerOptions``.
struct BrokerSettings: Sendable {
    var defaultTTL: String?
    var maxItems: String?
    var maxRequestSize: String?
    var maxValueSize: String?
    var maxConnections: String?
    var secret: String?
    var noRequireTTL: Bool = false
    var refreshTTLOnGet: Bool = false
    var pipeId: String?
    var socket: String?
    var sweeperInterval: String?
    var idleTimeout: String?
    var heartbeatInterval: String?
    var requestTimeout: String?
    var drainTimeout: String?
    var logLevel: String?
    var logFormat: String?
    var debug: Bool = false
    var noAuth: Bool = false
    var requireNonce: Bool = false
    var pools: [String] = []

    /// The `--pool` arguments, read and checked (a malformed file is an error naming it, a name given twice is
    /// an error naming the pool).
    func poolDefinitions() throws -> [PoolDefinition] {
        let definitions = try pools.map(PoolDefinition.init(argument:))
        var seen: Swift.Set<[UInt8]> = []
        for definition in definitions where !seen.insert(Array(definition.name.utf8)).inserted {
            throw ValidationError("--pool \(definition.name) is given twice: give each pool once")
        }
        return definitions
    }

    /// The options resolved against the environment.
    struct Resolved {
        var configuration: BrokerConfiguration
        var logLevel: Logger.Level
        var logFormat: BrokerLogFormat
    }

    func resolve(environment: [String: String]) throws -> Resolved {
        func setting(_ flagValue: String?, _ variable: String, _ flagName: String) -> (text: String, from: String)? {
            if let flagValue { return (flagValue, flagName) }
            if let text = environment[variable], !text.isEmpty { return (text, variable) }
            return nil
        }
        func duration(_ flagValue: String?, _ variable: String, flagName: String, range: OptionRange.Durations) throws
            -> Int64?
        {
            guard let (text, from) = setting(flagValue, variable, flagName) else { return nil }
            guard let milliseconds = DurationParser.milliseconds(text) else {
                throw ValidationError("invalid duration '\(text)' for \(from): use e.g. 1500ms, 30s, 5m, 1h")
            }
            guard range.milliseconds.contains(milliseconds) else {
                throw ValidationError("\(from) must be between \(range.text); '\(text)' is out of range")
            }
            return milliseconds
        }
        func integer(_ flagValue: String?, _ variable: String, flagName: String, range: ClosedRange<Int>) throws
            -> Int?
        {
            guard let (text, from) = setting(flagValue, variable, flagName) else { return nil }
            guard let number = Int(text), range.contains(number) else {
                throw ValidationError(
                    "invalid value '\(text)' for \(from): expected a whole number from \(range.lowerBound) to "
                        + "\(range.upperBound)")
            }
            return number
        }
        func boolean(_ flag: Bool, _ variable: String, default fallback: Bool = false) throws -> Bool {
            if flag { return true }
            guard let text = environment[variable], !text.isEmpty else { return fallback }
            switch text.lowercased() {
            case "1", "true", "yes", "on": return true
            case "0", "false", "no", "off": return false
            default: throw ValidationError("invalid value '\(text)' for \(variable): expected true or false")
            }
        }

        var store = StoreConfiguration()
        if let ttl = try duration(defaultTTL, "BROKER_DEFAULT_TTL", flagName: "--ttl", range: .ttl) {
            store.defaultTTL = ttl
        }
        if let maxItems = try integer(maxItems, "BROKER_MAX_ITEMS", flagName: "--max-items", range: OptionRange.items)
        {
            store.maxItems = maxItems
        }
        if let size = try integer(
            maxValueSize, "BROKER_MAX_VALUE_SIZE", flagName: "--max-value-size", range: OptionRange.bytes)
        {
            store.maxValueSize = size
        }
        store.requireTTL = noRequireTTL ? false : try boolean(false, "BROKER_REQUIRE_TTL", default: true)
        store.refreshTTLOnGet = try boolean(refreshTTLOnGet, "BROKER_REFRESH_TTL_ON_GET")

        var configuration = BrokerConfiguration(store: store)
        if let size = try integer(
            maxRequestSize, "BROKER_MAX_REQUEST_SIZE", flagName: "--max-request-size", range: OptionRange.bytes)
        {
            configuration.maxRequestSize = size
        }
        if let connections = try integer(
            maxConnections, "BROKER_MAX_CONNECTIONS", flagName: "--max-connections", range: OptionRange.connections)
        {
            configuration.maxConnections = connections
        }
        if let sweep = try duration(
            sweeperInterval, "BROKER_SWEEPER_INTERVAL", flagName: "--sweeper-interval", range: .interval)
        {
            configuration.sweeperInterval = sweep
        }
        configuration.idleTimeout =
            try duration(idleTimeout, "BROKER_IDLE_TIMEOUT", flagName: "--idle-timeout", range: .ttl)
            ?? configuration.idleTimeout
        configuration.heartbeatInterval =
            try duration(heartbeatInterval, "BROKER_HEARTBEAT_INTERVAL", flagName: "--heartbeat-interval", range: .interval)
            ?? configuration.heartbeatInterval
        if let limit = try duration(
            requestTimeout, "BROKER_REQUEST_TIMEOUT", flagName: "--request-timeout", range: .interval)
        {
            configuration.requestTimeout = limit
        }
        if let drain = try duration(drainTimeout, "BROKER_DRAIN_TIMEOUT", flagName: "--drain-timeout", range: .drain) {
            configuration.drainTimeout = drain
        }
        if let path = setting(socket, "BROKER_SOCKET", "--socket")?.text {
            configuration.socket = .path(path)
        } else if let id = setting(pipeId, "BROKER_PIPE_ID", "--pipe-id")?.text {
            guard !id.contains("/") else { throw ValidationError("--pipe-id must not contain '/'") }
            configuration.socket = .privateDirectory(pipeId: id)
        }
        if let secret, secret.isEmpty {
            throw ValidationError("--secret must not be empty: give a secret, or leave it out for a random one")
        }
        if !noAuth, let secret = setting(secret, "BROKER_SECRET", "--secret")?.text {
            configuration.secret = secret
        }
        configuration.requireNonce = requireNonce

        var level = Logger.Level.info
        if try boolean(debug, "BROKER_DEBUG") { level = .debug }
        if let text = setting(logLevel, "BROKER_LOG_LEVEL", "--log-level")?.text {
            switch text.lowercased() {
            case "debug": level = .debug
            case "info": level = .info
            case "warn", "warning": level = .warning
            case "error": level = .error
            default: throw ValidationError("invalid log level '\(text)': expected debug, info, warn or error")
            }
        }
        var format = BrokerLogFormat.human
        if let text = setting(logFormat, "BROKER_LOG_FORMAT", "--log-format")?.text {
            guard let parsed = BrokerLogFormat(rawValue: text.lowercased()) else {
                throw ValidationError("invalid log format '\(text)': expected human or json")
            }
            format = parsed
        } else if try boolean(false, "BROKER_STRUCTURED_LOGGING") {
            format = .json
        }
        return Resolved(configuration: configuration, logLevel: level, logFormat: format)
    }
}

/// The documented range of each numeric option (README, "Options"): a value outside it is refused at start with
/// exit 2, so no arithmetic on an option can overflow.
enum OptionRange {
    /// Byte limits (`--max-request-size`, `--max-value-size`): 1 B to 1 GiB.
    static let bytes: ClosedRange<Int> = 1...(1 << 30)
    /// `--max-items`: 0 (no limit) to 100 million.
    static let items: ClosedRange<Int> = 0...100_000_000
    /// `--max-connections`: 1 to 65,536.
    static let connections: ClosedRange<Int> = 1...65_536

    /// A duration option's range, in milliseconds, and how the error names it.
    struct Durations {
        var milliseconds: ClosedRange<Int64>
        var text: String
    }
}

extension OptionRange.Durations {
    /// `--ttl` and `--idle-timeout`: 1 ms to 100 years (the longest TTL a store accepts).
    static let ttl = Self(milliseconds: 1...StoreConfiguration.maxTTL, text: "1ms and 100 years")
    /// `--sweeper-interval`, `--heartbeat-interval`, `--request-timeout`: 1 ms to 1 day.
    static let interval = Self(milliseconds: 1...86_400_000, text: "1ms and 24h")
    /// `--drain-timeout` and `--grace`: 0 to 1 hour.
    static let drain = Self(milliseconds: 0...3_600_000, text: "0ms and 1h")
}
