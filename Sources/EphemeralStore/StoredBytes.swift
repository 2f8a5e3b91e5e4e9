/// A stored value's JSON bytes and the parts of its item that only a new write changes, in one allocation.
///
/// An item in the store's dictionary is this reference and its deadline (16 bytes a bucket instead of the 40 of
/// an array and every field inline): at 100,000 items the dictionary has 262,144 buckets, so each byte of a bucket
/// is 2.6 bytes per item. Instances are immutable once shared, except through ``Store``'s copy-on-write check
/// before it changes `readsLeft`: that is why the types holding one (`Store.Item`, `Store.Value`) are `Sendable`.
final class StoredBytes: ManagedBuffer<StoredBytes.Header, UInt8> {
    struct Header {
        var count: Int
        var ttl: Int64
        /// Also the item's version.
        var generation: UInt64
        /// How many more reads the item allows, -1 for no limit (an `Int?` would make the header 8 bytes larger).
        var readsLeftOrNone: Int32
        var compressed: Bool

        /// `readsLeftOrNone` for a read limit: -1 for none, a limit past `Int32.max` kept as `Int32.max`.
        static func readsLeftOrNone(_ readsLeft: Int?) -> Int32 {
            readsLeft.map { Int32(clamping: max(0, $0)) } ?? -1
        }
    }

    /// A new buffer holding `bytes`.
    static func make(
        _ bytes: some Collection<UInt8>, compressed: Bool, ttl: Int64 = 0, generation: UInt64 = 0,
        readsLeftOrNone: Int32 = -1
    ) -> StoredBytes {
        let count = bytes.count
        let buffer = create(minimumCapacity: count) { _ in
            Header(
                count: count, ttl: ttl, generation: generation, readsLeftOrNone: readsLeftOrNone,
                compressed: compressed)
        }
        let stored = unsafeDowncast(buffer, to: StoredBytes.self)
        stored.withUnsafeMutablePointerToElements { elements in
            _ = UnsafeMutableBufferPointer(start: elements, count: count).initialize(from: bytes)
        }
        return stored
    }

    /// The header, read through its pointer: `header`, a class property, pays a dynamic exclusivity check.
    var fields: Header { withUnsafeMutablePointerToHeader { $0.pointee } }

    /// A copy with its own header, for a change that must not show through other references.
    func copy() -> StoredBytes {
        let header = fields
        return withUnsafeBytes { bytes in
            .make(
                bytes, compressed: header.compressed, ttl: header.ttl, generation: header.generation,
                readsLeftOrNone: header.readsLeftOrNone)
        }
    }

    /// Calls `body` with the bytes, without copying them.
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeMutablePointers { header, elements in
            try body(UnsafeRawBufferPointer(start: elements, count: header.pointee.count))
        }
    }

    /// The bytes, copied into an array.
    var bytes: [UInt8] { withUnsafeBytes { Array($0) } }
}
