#if canImport(Testing)
    import EphemeralBrokerClient
    import Testing

    /// A Swift Testing trait that leases a pool item for each test it applies to.
    ///
    /// ```swift
    /// @Test(.leasing("accounts")) func login() async throws {
    ///     let account = try BrokerLease.current!.item(as: Account.self)
    /// }
    /// ```
    public struct LeasingTrait: TestTrait, SuiteTrait, TestScoping {
        /// The pool to lease from.
        public var pool: String
        /// How long a test waits for an item.
        public var wait: Duration
        /// The lease's backstop TTL.
        public var ttl: Duration?

        /// Applies to each test case of a suite, not once for the suite.
        public var isRecursive: Bool { true }

        /// Scopes each test case (each run of a test function), never a suite as a whole.
        public func scopeProvider(for test: Test, testCase: Test.Case?) -> LeasingTrait? {
            testCase == nil ? nil : self
        }

        /// Leases an item, runs the test with it in ``BrokerLease/current``, and releases it however the test ends.
        public func provideScope(
            for test: Test, testCase: Test.Case?,
            performing function: @Sendable () async throws -> Void
        ) async throws {
            let client = try BrokerTesting.client()
            try await client.withLease(pool: pool, wait: wait, ttl: ttl) { lease in
                try await BrokerLease.$current.withValue(lease) { try await function() }
            }
        }
    }

    extension Trait where Self == LeasingTrait {
        /// Leases an item of `pool` for each test.
        /// - Parameters:
        ///   - pool: The pool's name.
        ///   - wait: How long a test waits for an item (default 5 minutes).
        ///   - ttl: The lease's backstop TTL (default: the broker's).
        public static func leasing(_ pool: String, wait: Duration = .seconds(300), ttl: Duration? = nil) -> Self {
            LeasingTrait(pool: pool, wait: wait, ttl: ttl)
        }
    }
#endif
