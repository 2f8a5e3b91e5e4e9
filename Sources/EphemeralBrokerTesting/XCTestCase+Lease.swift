#if canImport(XCTest)
    import EphemeralBrokerClient
    import XCTest

    extension XCTestCase {
        /// Runs `body` holding an item of `pool` (also in ``BrokerLease/current``), and releases it however `body` ends.
        ///
        /// ```swift
        /// func testLogin() async throws {
        ///     try await withBrokerLease("accounts") { lease in
        ///         let account = try lease.item(as: Account.self)
        ///     }
        /// }
        /// ```
        /// - Parameters:
        ///   - pool: The pool's name.
        ///   - wait: How long to wait for an item (default 5 minutes).
        ///   - ttl: The lease's backstop TTL.
        ///   - body: The test's work.
        /// - Returns: What `body` returns.
        public func withBrokerLease<Result: Sendable>(
            _ pool: String, wait: Duration = .seconds(300), ttl: Duration? = nil,
            _ body: (PoolLease) async throws -> Result
        ) async throws -> Result {
            let client = try BrokerTesting.client()
            return try await client.withLease(pool: pool, wait: wait, ttl: ttl) { lease in
                try await BrokerLease.$current.withValue(lease) { try await body(lease) }
            }
        }
    }
#endif
