import CompressNIO
import NIOCore

/// The original client's compression scheme: a value's JSON text, gzipped, carried as a base64 JSON string.
public enum ValueCompression {
    /// Checks a compressed value and measures it, without ever inflating more than `limit + 1` bytes.
    ///
    /// - Parameters:
    ///   - value: The stored value: compact JSON bytes that must be one JSON string.
    ///   - limit: The most decompressed bytes allowed (the broker's `maxValueSize`).
    /// - Returns: The size of the decompressed JSON text in bytes.
    /// - Throws: `too_large` past the limit; `invalid_compressed_value` when the value is not a string of base64
    ///   of gzip of JSON.
    public static func decompressedSize(of value: [UInt8], limit: Int) throws(BrokerError) -> Int {
        try decompress(value, limit: limit).count
    }

    /// Decompresses a compressed value to its JSON text.
    /// - Parameters:
    ///   - value: Compact JSON bytes of one JSON string holding base64 of gzip data.
    ///   - limit: The most decompressed bytes allowed.
    /// - Returns: The JSON text the value stands for.
    /// - Throws: `too_large` or `invalid_compressed_value`.
    public static func decompress(_ value: [UInt8], limit: Int) throws(BrokerError) -> [UInt8] {
        guard value.count >= 2, value.first == UInt8(ascii: "\""), value.last == UInt8(ascii: "\"") else {
            throw BrokerError(.invalidCompressedValue, "a compressed value must be a base64 string")
        }
        guard let gzip = Base64.decode(value[1..<(value.count - 1)]) else {
            throw BrokerError(.invalidCompressedValue, "a compressed value must be a base64 string")
        }
        var input = ByteBuffer(bytes: gzip)
        let output: ByteBuffer
        do {
            output = try input.decompress(with: .gzip(), maxSize: limit + 1)
        } catch let error as CompressNIOError where error == .bufferOverflow {
            throw BrokerError(.tooLarge, "the decompressed value exceeds \(limit) bytes")
        } catch {
            throw BrokerError(.invalidCompressedValue, "a compressed value must be gzip data")
        }
        guard output.readableBytes <= limit else {
            throw BrokerError(.tooLarge, "the decompressed value exceeds \(limit) bytes")
        }
        // zlib stops at the end of the first member and leaves the rest unread: anything left is a second member
        // or trailing bytes, which a reader's gunzip would inflate too (past every limit checked here).
        guard input.readableBytes == 0 else {
            throw BrokerError(
                .invalidCompressedValue, "a compressed value must be exactly one gzip member, with nothing after it")
        }
        let text = Array(output.readableBytesView)
        // A stream cut short is inflated as far as it goes without an error: its trailer (CRC-32 and length, which
        // zlib checks only when it reaches them) must be there and match.
        guard gzip.count >= 18, gzipTrailer(of: gzip) == (CRC32.checksum(text), UInt32(truncatingIfNeeded: text.count))
        else {
            throw BrokerError(.invalidCompressedValue, "the gzip data is truncated, or its checksum is wrong")
        }
        let isJSON = text.withUnsafeBytes { bytes in
            var scanner = JSONScanner(bytes)
            do throws(BrokerError) {
                _ = try scanner.scanTopLevel()
                return true
            } catch {
                return false
            }
        }
        guard isJSON else { throw BrokerError(.invalidCompressedValue, "a compressed value must hold JSON") }
        return text
    }

    /// The CRC-32 and the length modulo 2³² that end a gzip member (RFC 1952), both little-endian.
    private static func gzipTrailer(of gzip: [UInt8]) -> (UInt32, UInt32) {
        func word(at offset: Int) -> UInt32 {
            (0..<4).reduce(0) { $0 | UInt32(gzip[offset + $1]) << (8 * UInt32($1)) }
        }
        return (word(at: gzip.count - 8), word(at: gzip.count - 4))
    }

    /// Compresses JSON text the way the original client does.
    /// - Parameter json: The value's JSON text.
    /// - Returns: Compact JSON bytes of a string holding base64 of the gzip data.
    public static func compress(_ json: [UInt8]) -> [UInt8] {
        var input = ByteBuffer(bytes: json)
        // gzip into a buffer sized by zlib's own bound cannot fail for lack of space.
        let output = try! input.compress(with: .gzip())
        var quoted: [UInt8] = [UInt8(ascii: "\"")]
        quoted.append(contentsOf: Base64.encode(Array(output.readableBytesView)))
        quoted.append(UInt8(ascii: "\""))
        return quoted
    }
}

/// Standard base64 (RFC 4648 with padding), as Node's `Buffer` writes it.
public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let reverse: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    /// Encodes bytes as padded base64.
    /// - Parameter bytes: The bytes.
    /// - Returns: The base64 text as UTF-8 bytes.
    public static func encode(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index + 3 <= bytes.count {
            let chunk = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            for shift in [18, 12, 6, 0] { out.append(alphabet[Int((chunk >> UInt32(shift)) & 0x3F)]) }
            index += 3
        }
        let rest = bytes.count - index
        if rest > 0 {
            var chunk = UInt32(bytes[index]) << 16
            if rest == 2 { chunk |= UInt32(bytes[index + 1]) << 8 }
            out.append(alphabet[Int((chunk >> 18) & 0x3F)])
            out.append(alphabet[Int((chunk >> 12) & 0x3F)])
            out.append(rest == 2 ? alphabet[Int((chunk >> 6) & 0x3F)] : UInt8(ascii: "="))
            out.append(UInt8(ascii: "="))
        }
        return out
    }

    /// Decodes padded or unpadded base64.
    /// - Parameter text: Base64 text.
    /// - Returns: The bytes, or `nil` when `text` is not base64.
    public static func decode<C: Collection>(_ text: C) -> [UInt8]? where C.Element == UInt8 {
        var symbols = Array(text)
        while symbols.last == UInt8(ascii: "=") { symbols.removeLast() }
        guard symbols.count % 4 != 1, text.count - symbols.count <= 2 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(symbols.count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        for symbol in symbols {
            let value = reverse[Int(symbol)]
            guard value != 0xFF else { return nil }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8((accumulator >> UInt32(bits)) & 0xFF))
            }
        }
        return out
    }
}

/// CRC-32 (ISO-HDLC, as gzip uses), table-driven: checks a compressed value's trailer.
package enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { index in
        (0..<8).reduce(UInt32(index)) { crc, _ in crc & 1 == 1 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
    }

    package static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        table.withUnsafeBufferPointer { table in
            for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        }
        return crc ^ 0xFFFF_FFFF
    }
}
