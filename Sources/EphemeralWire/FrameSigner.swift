import CEphemeralCrypto

/// Signs and verifies lines with HMAC-SHA256 over their exact bytes, as the original client does.
///
/// A signed request carries `"hmac":"<64 hex digits>"` as its last member; the MAC covers the line with that member
/// removed, which is exactly the `JSON.stringify` text the Node client signed. Nothing is re-serialised.
public struct FrameSigner: @unchecked Sendable {  // two plain C structs, only ever copied
    /// SHA-256 after absorbing the key XOR ipad, and after the key XOR opad (RFC 2104): each MAC starts from
    /// copies of these, so a MAC costs two hash finalisations and no key schedule, allocation or lookup.
    private let inner: SHA256_CTX
    private let outer: SHA256_CTX

    /// The length of a MAC in bytes.
    public static let macLength = 32

    /// Creates a signer.
    /// - Parameter secret: The shared secret; its UTF-8 bytes are the HMAC key.
    public init(secret: String) {
        self.init(key: Array(secret.utf8))
    }

    /// Creates a signer from raw key bytes.
    /// - Parameter key: The HMAC key; a key longer than SHA-256's 64-byte block is hashed first, as RFC 2104 says.
    public init(key: [UInt8]) {
        var block = key
        if block.count > 64 {
            var digest = [UInt8](repeating: 0, count: 32)
            _ = SHA256(block, block.count, &digest)
            block = digest
        }
        block += [UInt8](repeating: 0, count: 64 - block.count)
        func absorbing(_ pad: UInt8) -> SHA256_CTX {
            var context = SHA256_CTX()
            SHA256_Init(&context)
            let padded = block.map { $0 ^ pad }
            SHA256_Update(&context, padded, padded.count)
            return context
        }
        inner = absorbing(0x36)
        outer = absorbing(0x5C)
    }

    /// Computes HMAC-SHA256 over the concatenation of `parts`.
    /// - Parameter parts: The byte ranges, in order.
    /// - Returns: The 32-byte MAC.
    public func mac(_ parts: [UnsafeRawBufferPointer]) -> [UInt8] {
        var context = inner
        for part in parts where !part.isEmpty { SHA256_Update(&context, part.baseAddress, part.count) }
        var innerHash = [UInt8](repeating: 0, count: 32)
        SHA256_Final(&innerHash, &context)
        var outerContext = outer
        SHA256_Update(&outerContext, innerHash, innerHash.count)
        var output = [UInt8](repeating: 0, count: Self.macLength)
        SHA256_Final(&output, &outerContext)
        return output
    }

    /// The MAC of `bytes` as 64 lowercase hex digits.
    /// - Parameter bytes: The signed text.
    /// - Returns: The hex MAC.
    public func hexMAC(_ bytes: UnsafeRawBufferPointer) -> String {
        Hex.encode(mac([bytes]))
    }

    /// Verifies the request's trailing `hmac` member against the rest of the line.
    /// - Throws: `auth_failed` when the member is missing, not last, not 64 hex digits, or wrong.
    func verify(line: UnsafeRawBufferPointer, object: JSONScanner.Object, scanner: JSONScanner) throws(BrokerError) {
        guard let last = object.members.last, last.hasName("hmac", in: line) else {
            let message = object.member("hmac", in: line) == nil ? "missing hmac" : "hmac must be the last member"
            throw BrokerError(.authFailed, message)
        }
        let value = last.value
        guard value.count == 66, scanner.firstByte(of: last) == UInt8(ascii: "\""),
            let given = Hex.decode(
                UnsafeRawBufferPointer(rebasing: line[(value.lowerBound + 1)..<(value.upperBound - 1)]))
        else {
            throw BrokerError(.authFailed, "hmac must be 64 hex digits")
        }
        let signedPrefix = UnsafeRawBufferPointer(rebasing: line[object.start..<last.separatorStart])
        let closingBrace = UnsafeRawBufferPointer(rebasing: line[object.end...object.end])
        let expected = mac([signedPrefix, closingBrace])
        guard Self.constantTimeEqual(expected, given) else { throw BrokerError(.authFailed, "hmac mismatch") }
    }

    /// Compares two byte arrays in time that depends only on their length.
    /// - Returns: Whether they are equal.
    public static func constantTimeEqual(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        return lhs.withUnsafeBytes { left in
            rhs.withUnsafeBytes { right in
                CRYPTO_memcmp(left.baseAddress, right.baseAddress, left.count) == 0
            }
        }
    }

    /// A fresh secret of 32 random bytes from the system's CSPRNG, as 64 hex digits.
    /// - Returns: The secret.
    public static func randomSecret() -> String {
        Hex.encode(randomBytes(32))
    }

    /// Random bytes from the system's CSPRNG (`getrandom` on Linux, `arc4random` on Darwin, through
    /// `SystemRandomNumberGenerator`), not OpenSSL's: the first `RAND_bytes` in a process loads OpenSSL's
    /// configuration and providers, about 2 ms that every `run` and every fresh worker's first signed request paid.
    /// - Parameter count: How many bytes.
    /// - Returns: The bytes.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count + 8)
        while bytes.count < count {
            withUnsafeBytes(of: generator.next()) { bytes.append(contentsOf: $0) }
        }
        bytes.removeLast(bytes.count - count)
        return bytes
    }
}

/// Lowercase hex encoding and case-insensitive decoding.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    /// Encodes bytes as lowercase hex.
    /// - Parameter bytes: The bytes.
    /// - Returns: Two hex digits per byte.
    public static func encode(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes hex digits of either case.
    /// - Parameter text: An even number of hex digits.
    /// - Returns: The bytes, or `nil` when `text` is not hex.
    public static func decode(_ text: UnsafeRawBufferPointer) -> [UInt8]? {
        guard text.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(text.count / 2)
        var index = 0
        while index < text.count {
            guard let high = hexValue(text[index]), let low = hexValue(text[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }
}
