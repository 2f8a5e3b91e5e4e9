import EphemeralWire
#if canImport(FoundationEssentials)
    import FoundationEssentials  // no ICU to load: a faster start for every short-lived worker process
#else
    import Foundation
#endif

/// A value read together with its version, for compare-and-set.
public struct Versioned<Value: Sendable>: Sendable {
    /// The value.
    public var value: Value
    /// The item's version: any write changes it.
    public var version: UInt64
}

extension Client {
    // MARK: - Conditional writes and counters

    /// Stores a value only if the key has none.
    /// - Returns: Whether this call stored it (`false`: someone else's value is there).
    public func setIfAbsent<Value: Encodable>(_ key: String, _ value: Value, ttl: Duration?) async throws(BrokerError)
        -> Bool
    {
        do throws(BrokerError) {
            try await write(key, json: try Self.encode(value, for: key), ttl: ttl, ifAbsent: true)
            return true
        } catch  where error.code == .exists {
            return false
        }
    }

    /// Stores a value that is deleted after its `maxReads`-th read (one-time secrets, invitation codes).
    public func set<Value: Encodable>(_ key: String, _ value: Value, ttl: Duration?, maxReads: Int)
        async throws(BrokerError)
    {
        try await write(key, json: try Self.encode(value, for: key), ttl: ttl, maxReads: maxReads)
    }

    /// Stores JSON text that is deleted after its `maxReads`-th read.
    public func setJSON(_ key: String, json: [UInt8], ttl: Duration?, maxReads: Int) async throws(BrokerError) {
        try await write(key, json: json, ttl: ttl, maxReads: maxReads)
    }

    /// Reads a value and its version.
    public func getVersioned<Value: Decodable & Sendable>(_ key: String, as type: Value.Type = Value.self)
        async throws(BrokerError) -> Versioned<Value>
    {
        let reply = try await call("get") { $0.member("key", string: key) }
        return Versioned(value: try decodeValue(reply, key: key), version: UInt64(reply.number("version") ?? 0))
    }

    /// Stores a value only if the key is still at `version` (compare-and-set).
    /// - Returns: The new version, or `nil` when someone wrote the key since `version` was read.
    public func compareAndSet<Value: Encodable>(_ key: String, _ value: Value, ttl: Duration?, version: UInt64)
        async throws(BrokerError) -> UInt64?
    {
        do throws(BrokerError) {
            return try await write(key, json: try Self.encode(value, for: key), ttl: ttl, ifVersion: version)
        } catch  where error.code == .versionMismatch {
            return nil
        }
    }

    /// Adds `by` to an integer counter atomically, creating it at 0 when missing. Never sent twice.
    /// - Returns: The counter's new value.
    /// - Throws: `not_a_number` when the key holds something else.
    @discardableResult
    public func increment(_ key: String, by: Int64 = 1, ttl: Duration? = nil) async throws(BrokerError) -> Int64 {
        let reply = try await call("incr", idempotent: false) { request in
            request.member("key", string: key)
            request.member("by", int: by)
            if let ttl { request.member("ttl", int: ttl.milliseconds) }
        }
        guard let value = reply.number("value") else { throw BrokerError(.invalidReply, "incr reply has no value") }
        return Int64(value)
    }

    // MARK: - Waits and barriers

    /// Waits until `key` has a value and returns it; at once when it already has one. No polling: the broker
    /// answers the moment the key is written.
    /// - Throws: `timeout` when nobody writes it within `timeout`.
    public func wait<Value: Decodable & Sendable>(
        forKey key: String, timeout: Duration,
        as type: Value.Type = Value.self
    ) async throws(BrokerError) -> Value {
        try decodeValue(try await waitReply(key, timeout: timeout), key: key)
    }

    /// ``wait(forKey:timeout:as:)`` returning the value's JSON text.
    public func waitJSON(forKey key: String, timeout: Duration) async throws(BrokerError) -> [UInt8] {
        try valueJSON(try await waitReply(key, timeout: timeout))
    }

    /// Waits on a connection of its own, so the wait never holds up this client's other calls.
    private func waitReply(_ key: String, timeout: Duration) async throws(BrokerError) -> BrokerReply {
        let waiter = Client(configuration: configuration)
        defer { Task { await waiter.close() } }
        return try await waiter.call("wait", extraTime: timeout) { request in
            request.member("key", string: key)
            request.member("timeout", int: timeout.milliseconds)
        }
    }

    /// Arrives at a barrier and waits until `parties` callers (in any processes) have arrived.
    /// - Throws: `timeout` when they do not all arrive in time (this arrival is withdrawn).
    public func barrier(_ key: String, parties: Int, timeout: Duration) async throws(BrokerError) {
        let party = Client(configuration: configuration)  // its own connection: no other call waits behind it
        defer { Task { await party.close() } }
        _ = try await party.call("barrier", idempotent: false, extraTime: timeout) { request in
            request.member("key", string: key)
            request.member("parties", int: Int64(parties))
            request.member("timeout", int: timeout.milliseconds)
        }
    }

    // MARK: - Compute once

    /// The value of `key`, computed by exactly one caller across all processes while every other caller waits for
    /// its result.
    ///
    /// ```swift
    /// let token = try await client.shared("auth-token", ttl: .seconds(3000)) { try await login() }
    /// ```
    /// A failed computation is not stored: a waiting caller takes over. If the computing process dies, its claim
    /// ends with its connection and another caller computes. With `refreshBefore`, a caller that finds the value
    /// about to expire gets it at once and recomputes it in the background, so readers are never kept waiting.
    /// - Parameters:
    ///   - key: The key.
    ///   - ttl: How long the computed value lives.
    ///   - refreshBefore: Recompute in the background this long before expiry.
    ///   - computeTimeout: The longest a computation may take before another caller may take over.
    ///   - wait: How long to wait for another caller's computation.
    ///   - compute: Computes the value.
    /// - Returns: The value.
    /// - Throws: What `compute` throws (for the caller that computed), `timeout`, or the broker's errors.
    public func shared<Value: Codable & Sendable>(
        _ key: String, ttl: Duration, refreshBefore: Duration? = nil, computeTimeout: Duration = .seconds(60),
        wait: Duration = .seconds(120), compute: @escaping @Sendable () async throws -> Value
    ) async throws -> Value {
        try await sharedWithExpiry(key, refreshBefore: refreshBefore, computeTimeout: computeTimeout, wait: wait) {
            (try await compute(), ttl)
        }
    }

    /// ``shared(_:ttl:refreshBefore:computeTimeout:wait:compute:)`` for values that know their own lifetime
    /// (a token with an `exp`): `compute` returns the value and how long it lives.
    public func sharedWithExpiry<Value: Codable & Sendable>(
        _ key: String, refreshBefore: Duration? = nil, computeTimeout: Duration = .seconds(60),
        wait: Duration = .seconds(120), compute: @escaping @Sendable () async throws -> (Value, Duration)
    ) async throws -> Value {
        // The claim lives on a connection of its own, open until the value is stored: waiting for another's
        // computation never holds up this client's other calls, and the claim ends if this process dies.
        let claimant = Client(configuration: configuration)
        let reply: BrokerReply
        do {
            reply = try await claimant.call("claim", idempotent: false, extraTime: wait) { request in
                request.member("key", string: key)
                request.member("ttl", int: computeTimeout.milliseconds)
                request.member("wait", int: wait.milliseconds)
                if let refreshBefore { request.member("refreshBefore", int: refreshBefore.milliseconds) }
            }
        } catch {
            await claimant.close()
            throw error
        }
        switch reply.string("state") {
        case "claimed":
            let token = UInt64(reply.number("token") ?? 0)
            defer { Task { await claimant.close() } }
            return try await claimant.computeAndStore(key, token: token, compute: compute)
        case "refresh":
            let token = UInt64(reply.number("token") ?? 0)
            let current: Value = try decodeValue(reply, key: key)
            Task {
                _ = try? await claimant.computeAndStore(key, token: token, compute: compute)
                await claimant.close()
            }
            return current
        default:
            await claimant.close()
            return try decodeValue(reply, key: key)
        }
    }

    private func computeAndStore<Value: Codable & Sendable>(
        _ key: String, token: UInt64, compute: @Sendable () async throws -> (Value, Duration)
    ) async throws -> Value {
        do {
            let (value, ttl) = try await compute()
            try await set(key, value, ttl: ttl)
            return value
        } catch {
            _ = try? await call("unclaim", idempotent: true) { request in
                request.member("key", string: key)
                request.member("token", int: Int64(token))
            }
            throw error
        }
    }

    /// The reply's value as JSON text, decompressed.
    func valueJSON(_ reply: BrokerReply) throws(BrokerError) -> [UInt8] {
        guard let json = reply.json("value") else { throw BrokerError(.invalidReply, "the reply has no value") }
        guard reply.bool("compressed") == true else { return json }
        return try ValueCompression.decompress(json, limit: Self.maxDecompressedBytes)
    }

    func decodeValue<Value: Decodable>(_ reply: BrokerReply, key: String) throws(BrokerError) -> Value {
        let json = try valueJSON(reply)
        do {
            return try JSONDecoder().decode(Value.self, from: Data(json))
        } catch {
            throw BrokerError(.invalidValue, "the value of \(key) does not decode as \(Value.self): \(error)")
        }
    }
}
