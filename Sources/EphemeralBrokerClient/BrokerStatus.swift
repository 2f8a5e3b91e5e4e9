/// The store's fill level, as `stats` and `health` report it.
public struct BrokerCapacity: Codable, Sendable, Equatable {
    /// Live items.
    public var items: Int
    /// The most items (0: no limit).
    public var maxItems: Int
    /// Live items over the maximum, in percent.
    public var utilization: Double
    /// At least 90 % full.
    public var nearCapacity: Bool
    /// Full: new keys are refused.
    public var atCapacity: Bool
    /// A sentence for people when near or at capacity.
    public var warning: String?
}

/// The broker process's memory.
public struct BrokerMemory: Codable, Sendable, Equatable {
    /// Resident set size in bytes.
    public var rss: Int
    /// Heap bytes in use.
    public var heapUsed: Int
    /// Approximate bytes held by stored items.
    public var approximateStoreBytes: Int
}

/// What `stats` reports.
public struct BrokerStats: Codable, Sendable, Equatable {
    /// Live items.
    public var items: Int
    /// Live leases.
    public var leases: Int
    /// Fill level.
    public var capacity: BrokerCapacity
    /// Memory.
    public var memory: BrokerMemory
    /// Milliseconds since the broker started.
    public var uptime: Int64
    /// Open client connections.
    public var connections: Int
}

/// What `health` reports.
public struct BrokerHealth: Codable, Sendable, Equatable {
    /// Connection figures.
    public struct Connections: Codable, Sendable, Equatable {
        /// Open client connections.
        public var open: Int
        /// Requests being served.
        public var inFlight: Int
        /// Whether the broker is shutting down.
        public var draining: Bool
    }

    /// `healthy`, or `degraded` when draining or nearly full.
    public var status: String
    /// Milliseconds since the broker started.
    public var uptime: Int64
    /// The broker's clock, epoch milliseconds.
    public var timestamp: Int64
    /// Fill level.
    public var capacity: BrokerCapacity
    /// Memory.
    public var memory: BrokerMemory
    /// Connection figures.
    public var connections: Connections
}
