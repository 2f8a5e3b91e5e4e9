import NIOConcurrencyHelpers

/// A value behind a lock, for the little state EphemeralBroker shares between threads.
///
/// Built on NIO's pthread mutex rather than `Synchronization.Mutex`: on Linux that Mutex is a futex that
/// ThreadSanitizer cannot see, so every access made under it reads as a data race, and the suite must stay clean
/// under `--sanitize=thread`.
public final class Locked<Value> {
    private let box: NIOLockedValueBox<Value>

    /// Creates a lock around `value`.
    /// - Parameter value: The initial value.
    public init(_ value: Value) {
        box = NIOLockedValueBox(value)
    }

    /// Runs `body` with the value while holding the lock.
    /// - Parameter body: Reads or changes the value.
    /// - Returns: What `body` returns.
    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        try box.withLockedValue(body)
    }
}

extension Locked: @unchecked Sendable where Value: Sendable {}
