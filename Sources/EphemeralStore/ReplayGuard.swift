import EphemeralWire

/// Refuses signed requests whose timestamp is stale or whose nonce was already seen within the window.
///
/// Nonces are remembered for twice the window (a request may be early or late by up to the window), in an
/// ``ExpiryQueue``, so memory is bounded by the request rate times the window.
public struct ReplayGuard: Sendable {
    /// How far `ts` may be from `now`, in milliseconds.
    public let window: Int64
    private var seen: [String: Int64] = [:]
    private var expiries = ExpiryQueue<String>()

    /// Creates a guard.
    /// - Parameter window: Milliseconds a timestamp may be off by.
    public init(window: Int64) {
        self.window = window
    }

    /// Nonces currently remembered.
    public var rememberedCount: Int { seen.count }

    /// Admits a request once.
    /// - Parameters:
    ///   - timestamp: The request's `ts` (epoch milliseconds).
    ///   - nonce: The request's `nonce`.
    ///   - now: The broker's time.
    /// - Throws: `replayed` for a missing or stale timestamp, a missing, short or overlong nonce, or a repeat.
    public mutating func admit(timestamp: Double?, nonce: String?, now: Int64) throws(BrokerError) {
        while let entry = expiries.popDue(at: now) {
            if seen[entry.id] == entry.deadline { seen.removeValue(forKey: entry.id) }
        }
        guard let timestamp, abs(timestamp - Double(now)) <= Double(window) else {
            throw BrokerError(.replayed, "ts is missing or more than \(window) ms from the broker's clock")
        }
        guard let nonce, (8...128).contains(nonce.utf8.count) else {
            throw BrokerError(.replayed, "nonce must be 8 to 128 bytes")
        }
        guard seen[nonce] == nil else { throw BrokerError(.replayed, "nonce already used") }
        let forgetAt = now + 2 * window
        seen[nonce] = forgetAt
        expiries.push(nonce, deadline: forgetAt, generation: 0)
    }
}
