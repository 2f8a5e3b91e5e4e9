import EphemeralWire
#if canImport(FoundationEssentials)
    import FoundationEssentials  // no ICU to load: a faster start for every short-lived worker process
#else
    import Foundation
#endif

/// An exclusive item leased from a pool: held until released, until its holder's connection closes, or until its
/// TTL lapses.
public struct PoolLease: Sendable, Equatable {
    /// The pool's name.
    public var pool: String
    /// The item's index in the pool.
    public var index: Int
    /// Increases with every grant in the pool; proves this grant is the item's current one.
    public var fence: UInt64
    /// When the lease lapses unless renewed, in epoch milliseconds.
    public var expiresAt: Int64
    /// The item as JSON, for pools defined by items.
    public var itemJSON: [UInt8]?

    /// Decodes the item.
    /// - Parameter type: The item's type; inferred when omitted.
    /// - Returns: The item.
    /// - Throws: `invalid_value` when the pool has no items or the item does not decode as `Item`.
    public func item<Item: Decodable>(as type: Item.Type = Item.self) throws(BrokerError) -> Item {
        guard let itemJSON else { throw BrokerError(.invalidValue, "pool \(pool) is defined by capacity, not items") }
        do {
            return try JSONDecoder().decode(Item.self, from: Data(itemJSON))
        } catch {
            throw BrokerError(.invalidValue, "item \(index) of \(pool) does not decode as \(Item.self): \(error)")
        }
    }

    init(reply: BrokerReply) throws(BrokerError) {
        guard let pool = reply.string("pool"), let index = reply.number("index"), let fence = reply.number("fence"),
            let expires = reply.number("expires")
        else { throw BrokerError(.invalidReply, "lease reply lacks pool, index, fence or expires") }
        self.pool = pool
        self.index = Int(index)
        self.fence = UInt64(fence)
        self.expiresAt = Int64(expires)
        self.itemJSON = reply.json("item")
    }
}

extension Client {
    /// Defines a pool of `capacity` interchangeable items; defining the same pool again is a no-op.
    /// - Throws: `invalid_pool`, or `pool_exists` when it exists with another definition.
    public func definePool(_ name: String, capacity: Int) async throws(BrokerError) {
        _ = try await call("define_pool") { request in
            request.member("pool", string: name)
            request.member("capacity", int: Int64(capacity))
        }
    }

    /// Defines a pool whose items are these values (test accounts, ports, databases…).
    /// - Throws: `invalid_value` when an item does not encode, `invalid_pool`, or `pool_exists`.
    public func definePool<Item: Encodable>(_ name: String, items: [Item]) async throws(BrokerError) {
        let json: Data
        do {
            json = try JSONEncoder().encode(items)
        } catch {
            throw BrokerError(.invalidValue, "the items of \(name) do not encode as JSON: \(error)")
        }
        _ = try await call("define_pool") { request in
            request.member("pool", string: name)
            request.member("items", rawJSON: Array(json))
        }
    }

    /// Leases an item of `pool`, waiting first come, first served while every item is held.
    ///
    /// The lease belongs to this client's connection: if the process dies, the broker gives the item back at once.
    /// - Parameters:
    ///   - pool: The pool's name.
    ///   - wait: How long to wait for an item; `nil` or zero fails at once with `pool_exhausted`.
    ///   - ttl: A backstop: the lease lapses after this long unless renewed (the broker's default TTL when `nil`).
    /// - Returns: The lease.
    /// - Throws: `unknown_pool`, `pool_exhausted`, `timeout`, `invalid_wait`, `invalid_ttl`.
    public func lease(pool: String, wait: Duration? = nil, ttl: Duration? = nil) async throws(BrokerError)
        -> PoolLease
    {
        let reply = try await call("lease", idempotent: false, extraTime: wait ?? .zero) { request in
            request.member("pool", string: pool)
            if let wait { request.member("wait", int: wait.milliseconds) }
            if let ttl { request.member("ttl", int: ttl.milliseconds) }
        }
        return try PoolLease(reply: reply)
    }

    /// Extends a lease.
    /// - Returns: The lease with its new expiry.
    /// - Throws: `not_holder` or `stale_fence` when the lease already lapsed.
    public func renew(_ lease: PoolLease, ttl: Duration? = nil) async throws(BrokerError) -> PoolLease {
        let reply = try await call("renew") { request in
            request.member("pool", string: lease.pool)
            request.member("index", int: Int64(lease.index))
            request.member("fence", int: Int64(lease.fence))
            if let ttl { request.member("ttl", int: ttl.milliseconds) }
        }
        var renewed = lease
        renewed.expiresAt = Int64(reply.number("expires") ?? Double(lease.expiresAt))
        return renewed
    }

    /// Gives a pool item back; the next waiter gets it at once.
    /// - Throws: `not_holder` or `stale_fence` when it was no longer held by this grant.
    public func release(_ lease: PoolLease) async throws(BrokerError) {
        _ = try await call("release", idempotent: false) { request in
            request.member("pool", string: lease.pool)
            request.member("index", int: Int64(lease.index))
            request.member("fence", int: Int64(lease.fence))
        }
    }

    /// Runs `body` holding an item of `pool`, and gives it back however `body` ends.
    ///
    /// The lease is taken on a connection of its own, open exactly as long as `body` runs: a long wait for an item
    /// never holds up this client's other calls, and nothing else can end the lease early.
    /// - Parameters:
    ///   - pool: The pool's name.
    ///   - wait: How long to wait for an item.
    ///   - ttl: The lease's backstop TTL.
    ///   - body: The work to do with the item.
    /// - Returns: What `body` returns.
    /// - Throws: The lease's errors, or what `body` throws (after the item is given back).
    public func withLease<Result>(
        pool: String, wait: Duration? = .seconds(60), ttl: Duration? = nil,
        _ body: (PoolLease) async throws -> Result
    ) async throws -> Result {
        let holder = Client(configuration: configuration)
        let lease: PoolLease
        do {
            lease = try await holder.lease(pool: pool, wait: wait, ttl: ttl)
        } catch {
            await holder.close()
            throw error
        }
        do {
            let result = try await body(lease)
            try? await holder.release(lease)
            await holder.close()
            return result
        } catch {
            try? await holder.release(lease)
            await holder.close()
            throw error
        }
    }
}
