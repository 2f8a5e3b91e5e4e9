/// The limits and TTL policy of a ``Store``.
public struct StoreConfiguration: Sendable, Equatable {
    /// TTL in milliseconds for a `set` without one (when TTLs are not required) and for a `lease` without one.
    /// Default 30 minutes.
    public var defaultTTL: Int64
    /// Whether every `set` must carry a positive TTL. Default `true`.
    public var requireTTL: Bool
    /// Whether a `get` restarts the item's TTL (sliding expiry, from the TTL it was set with). Default `false`.
    public var refreshTTLOnGet: Bool
    /// The most items the store holds; `0` means no limit, as in the original. Default 10,000.
    public var maxItems: Int
    /// The largest value in bytes (of its JSON text, decompressed when compressed). Default 256 KiB.
    public var maxValueSize: Int

    /// The longest TTL accepted: 100 years, far beyond any test run and far from overflowing the clock.
    public static let maxTTL: Int64 = 100 * 365 * 24 * 3_600_000

    /// Creates a configuration.
    /// - Parameters:
    ///   - defaultTTL: Milliseconds; default 1,800,000 (30 minutes).
    ///   - requireTTL: Default `true`.
    ///   - refreshTTLOnGet: Default `false`.
    ///   - maxItems: Default 10,000; `0` for no limit.
    ///   - maxValueSize: Bytes; default 262,144.
    public init(
        defaultTTL: Int64 = 1_800_000, requireTTL: Bool = true, refreshTTLOnGet: Bool = false,
        maxItems: Int = 10_000, maxValueSize: Int = 262_144
    ) {
        self.defaultTTL = defaultTTL
        self.requireTTL = requireTTL
        self.refreshTTLOnGet = refreshTTLOnGet
        self.maxItems = maxItems
        self.maxValueSize = maxValueSize
    }
}
