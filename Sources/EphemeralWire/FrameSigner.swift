import CEphemeralCrypto

/// Signs and verifies lines with HMAC-SHA256 over their exact bytes, as the original client does.
///
/// A signed request carries `"hmac":"<64 hex digits>"` as its last member; the MAC covers the line with that member
/// removed, which is exactly the `JSON.stringify` text the Node client signed. Nothing is re-serialised.
public struct FrameSigner: Sendable {
    private let key: [UInt8]

    /// The length of a MAC in bytes.
    public static let macLength = 32

    /// Creates a signer.
    /// - Parameter secret: The shared secret; its UTF-8 bytes are the HMAC key.
    public init(secret: String) {
        self.key = Array(secret.utf8)
    }

    /// Computes HMAC-SHA256 over the concatenation of `parts`.
    /// - Parameter parts: The byte ranges, in order.
    /// - Returns: The 32-byte MAC.
    public func mac(_ parts: [UnsafeRawBufferPointer]) -> [UInt8] {
        var message = [UInt8]()
        message.reserveCapacity(parts.reduce(0) { $0 + $1.count })
        for part in parts { message.append(contentsOf: part) }
        var output = [UInt8](repeating: 0, count: Self.macLength)
        var outputLength: UInt32 = 0
        key.withUnsafeBufferPointer { keyBytes in
            message.withUnsafeBufferPointer { messageBytes in
                _ = output.withUnsafeMutableBufferPointer { out in
                    HMAC(
                        EVP_sha256(), keyBytes.baseAddress, Int32(keyBytes.count), messageBytes.baseAddress,
                        messageBytes.count, out.baseAddress, &outputLength)
                }
            }
        }
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
        guard let last = object.members.last, last.name == "hmac" else {
            let message = object.member("hmac") == nil ? "missing hmac" : "hmac must be the last member"
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

    /// Random bytes from OpenSSL's CSPRNG.
    /// - Parameter count: How many bytes.
    /// - Returns: The bytes.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let status = bytes.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
        precondition(status == 1, "the system's random number generator failed")
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
