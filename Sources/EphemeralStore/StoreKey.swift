#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A key, worker ID, pool name, claim or barrier key, compared as its UTF-8 bytes.
///
/// Swift's `String` equality is canonical equivalence: "café" with a precomposed é and with e + U+0301, or the Kelvin
/// sign and "K", are equal strings, so as dictionary keys they would overwrite each other and two workers whose ids
/// differ only so would share one integer lease. The original broker (JavaScript strings) treats them as distinct,
/// and so does every table of the store, through this type.
struct StoreKey: Hashable, Sendable, Comparable {
    /// The key as received.
    let text: String

    init(_ text: String) { self.text = text }

    static func == (lhs: StoreKey, rhs: StoreKey) -> Bool {
        lhs.withBytes { left in
            rhs.withBytes { right in
                left.count == right.count
                    && (left.count == 0 || memcmp(left.baseAddress!, right.baseAddress!, left.count) == 0)
            }
        }
    }

    func hash(into hasher: inout Hasher) {
        withBytes { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }

    /// Orders by bytes, as `list` sorts its keys.
    static func < (lhs: StoreKey, rhs: StoreKey) -> Bool {
        lhs.text.utf8.lexicographicallyPrecedes(rhs.text.utf8)
    }

    private func withBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        if let result = text.utf8.withContiguousStorageIfAvailable(body) { return result }
        return Array(text.utf8).withUnsafeBufferPointer(body)
    }
}
