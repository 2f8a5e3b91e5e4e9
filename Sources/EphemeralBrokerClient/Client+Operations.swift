import EphemeralWire
#if canImport(FoundationEssentials)
    import FoundationEssentials  // no ICU to load: a faster start for every short-lived worker process
#else
    import Foundation
#endif

/// A live item as `list` reports it: never its value.
public struct ListedItem: Sendable, Equatable {
    /// The key.
    public var key: String
    /// When the item expires, in epoch milliseconds.
    public var expiresAt: Int64
}

extension Client {
    // MARK: - Values

    /// Reads a value and decodes it as `Value`.
    /// - Parameters:
    ///   - key: The key.
    ///   - type: The type to decode; inferred from context when omitted.
    /// - Returns: The value.
    /// - Throws: `not_found`, `expired`, `invalid_value` when it does not decode as `Value`, or a connection error.
    public func get<Value: Decodable>(_ key: String, as type: Value.Type = Value.self) async throws(BrokerError)
        -> Value
    {
        let json = try await getJSON(key)
        do {
            return try JSONDecoder().decode(Value.self, from: Data(json))
        } catch {
            throw BrokerError(.invalidValue, "the value of \(key) does not decode as \(Value.self): \(error)")
        }
    }

    /// Reads a value as JSON text, decompressed when it was stored compressed.
    /// - Parameter key: The key.
    /// - Returns: The value's JSON bytes.
    /// - Throws: `not_found`, `expired`, or a connection error.
    public func getJSON(_ key: String) async throws(BrokerError) -> [UInt8] {
        try valueJSON(try await call("get") { $0.member("key", string: key) })
    }

    /// Stores a value, encoded as JSON.
    /// - Parameters:
    ///   - key: The key.
    ///   - value: Any `Encodable` value.
    ///   - ttl: How long the value lives; `nil` leaves it to the broker (which, by default, requires one).
    /// - Throws: `invalid_value` when it does not encode, or the broker's `too_large`, `max_items`,
    ///   `ttl_required`, `invalid_ttl`.
    public func set<Value: Encodable>(_ key: String, _ value: Value, ttl: Duration?) async throws(BrokerError) {
        try await setJSON(key, json: try Self.encode(value, for: key), ttl: ttl)
    }

    static func encode<Value: Encodable>(_ value: Value, for key: String) throws(BrokerError) -> [UInt8] {
        do {
            return Array(try JSONEncoder().encode(value))
        } catch {
            throw BrokerError(.invalidValue, "the value for \(key) does not encode as JSON: \(error)")
        }
    }

    /// Stores a value given as JSON text, compressing it first when it reaches the compression threshold.
    /// - Parameters:
    ///   - key: The key.
    ///   - json: One JSON value.
    ///   - ttl: How long the value lives.
    /// - Throws: `invalid_value` when `json` is not JSON, or the broker's errors.
    public func setJSON(_ key: String, json: [UInt8], ttl: Duration?) async throws(BrokerError) {
        _ = try await write(key, json: json, ttl: ttl)
    }

    /// Stores a value under conditions; the shared path of every `set`.
    /// - Returns: The item's new version.
    @discardableResult
    func write(
        _ key: String, json: [UInt8], ttl: Duration?, ifAbsent: Bool = false, ifVersion: UInt64? = nil,
        maxReads: Int? = nil
    ) async throws(BrokerError) -> UInt64 {
        guard let compact = JSONText.compact(json) else {
            throw BrokerError(.invalidValue, "the value for \(key) is not JSON")
        }
        let compressed = compact.count >= configuration.compressionThreshold
        let wire = compressed ? ValueCompression.compress(compact) : compact
        let conditional = ifAbsent || ifVersion != nil || maxReads != nil
        let reply = try await call("set", idempotent: !conditional) { request in
            request.member("key", string: key)
            request.member("value", rawJSON: wire)
            if let ttl { request.member("ttl", int: ttl.milliseconds) }
            request.member("compressed", bool: compressed)
            if ifAbsent { request.member("ifAbsent", bool: true) }
            if let ifVersion { request.member("ifVersion", int: Int64(ifVersion)) }
            if let maxReads { request.member("maxReads", int: Int64(maxReads)) }
        }
        return UInt64(reply.number("version") ?? 0)
    }

    /// Deletes a key; deleting a missing key succeeds.
    /// - Parameter key: The key.
    public func delete(_ key: String) async throws(BrokerError) {
        _ = try await call("del") { $0.member("key", string: key) }
    }

    /// The live items and when they expire, sorted by key; never their values.
    public func list() async throws(BrokerError) -> [ListedItem] {
        let reply = try await call("list")
        struct Listed: Decodable { var expires: Int64? }
        guard let items = reply.json("items"),
            let object = try? JSONDecoder().decode([String: Listed].self, from: Data(items))
        else { throw BrokerError(.invalidReply, "list reply has no items") }
        return object.map { key, info in ListedItem(key: key, expiresAt: info.expires ?? 0) }.sorted { $0.key < $1.key }
    }

    // MARK: - Broker

    /// Checks the broker answers.
    /// - Returns: The round-trip time.
    @discardableResult
    public func ping() async throws(BrokerError) -> Duration {
        let start = ContinuousClock.now
        _ = try await call("ping")
        return ContinuousClock.now - start
    }

    /// The broker's statistics: the `stats` member as JSON text.
    public func statsJSON() async throws(BrokerError) -> [UInt8] {
        guard let stats = try await call("stats").json("stats") else {
            throw BrokerError(.invalidReply, "stats reply has no stats")
        }
        return stats
    }

    /// The broker's statistics, decoded.
    public func stats() async throws(BrokerError) -> BrokerStats {
        try Self.decode(BrokerStats.self, try await statsJSON(), what: "stats")
    }

    /// The broker's health reply as JSON text.
    public func healthJSON() async throws(BrokerError) -> [UInt8] {
        let reply = try await call("health")
        return reply.raw
    }

    /// The broker's health, decoded.
    public func health() async throws(BrokerError) -> BrokerHealth {
        try Self.decode(BrokerHealth.self, try await healthJSON(), what: "health")
    }

    /// The broker's counters in Prometheus text exposition format.
    public func metrics() async throws(BrokerError) -> String {
        guard let text = try await call("metrics").string("metrics") else {
            throw BrokerError(.invalidReply, "metrics reply has no metrics")
        }
        return text
    }

    // MARK: - Original leases

    /// The original lease: the lowest integer no other live lease on `key` holds; asking again renews.
    /// - Parameters:
    ///   - key: The lease key.
    ///   - workerId: Who holds it.
    ///   - ttl: How long it lasts without renewal; the broker's default TTL when `nil`.
    /// - Returns: The leased integer.
    /// - Throws: `worker_already_has_lease` when `workerId` holds a lease on another key.
    public func lease(_ key: String, workerId: String, ttl: Duration? = nil) async throws(BrokerError) -> Int {
        let reply = try await call("lease") { request in
            request.member("key", string: key)
            request.member("workerId", string: workerId)
            if let ttl { request.member("ttl", int: ttl.milliseconds) }
        }
        guard let value = reply.number("value") else { throw BrokerError(.invalidReply, "lease reply has no value") }
        return Int(value)
    }

    /// Releases the lease `workerId` holds. Never sent twice: a second release could free a lease granted since.
    /// - Returns: Whether a live lease was released.
    @discardableResult
    public func release(workerId: String) async throws(BrokerError) -> Bool {
        let reply = try await call("release", idempotent: false) { $0.member("workerId", string: workerId) }
        return reply.bool("released") ?? false
    }

    private static func decode<T: Decodable>(_ type: T.Type, _ json: [UInt8], what: String) throws(BrokerError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(json))
        } catch {
            throw BrokerError(.invalidReply, "\(what) reply does not decode: \(error)")
        }
    }
}

extension Duration {
    /// Whole milliseconds, rounded up so a positive TTL never becomes zero.
    var milliseconds: Int64 {
        let parts = components
        let nanos = parts.attoseconds / 1_000_000_000
        return parts.seconds * 1000 + (nanos + 999_999) / 1_000_000
    }
}
