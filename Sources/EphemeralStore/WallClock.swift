import EphemeralWire

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A source of wall-clock time in epoch milliseconds, injected wherever TTLs are computed.
public protocol WallClock: Sendable {
    /// The current time in milliseconds since 1970.
    func now() -> Int64
}

/// The system's real-time clock.
public struct SystemWallClock: WallClock {
    /// Creates the system clock.
    public init() {}

    /// The current time in milliseconds since 1970.
    public func now() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }
}

/// A clock that moves only when told to: tests drive TTL logic with it instead of sleeping.
public final class ManualWallClock: WallClock {
    private let current: Locked<Int64>

    /// Creates a clock.
    /// - Parameter start: The initial time in epoch milliseconds.
    public init(start: Int64 = 1_700_000_000_000) {
        self.current = Locked(start)
    }

    /// The current time in epoch milliseconds.
    public func now() -> Int64 { current.withLock { $0 } }

    /// Moves the clock forward.
    /// - Parameter milliseconds: How far.
    public func advance(by milliseconds: Int64) {
        current.withLock { $0 += milliseconds }
    }
}
