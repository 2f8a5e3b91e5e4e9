import NIOCore

/// Writes one compact JSON line (a request or a reply) straight into a `ByteBuffer`, with no intermediate tree.
///
/// Member names are `StaticString`s, names written in the source, which need no escaping and are copied as they
/// are; a name known only at run time (a key, a pool) goes through ``beginObject(_:)``, which escapes it.
///
/// ```swift
/// var reply = JSONLineWriter.ok(into: buffer)
/// reply.member("pong", int: now)
/// let line = reply.finish(signer: nil, nonce: nil)
/// ```
public struct JSONLineWriter {
    private var buffer: ByteBuffer
    private let start: Int
    /// Whether the object being written already has a member, one bit per nesting level (no allocation per reply).
    private var hasMember: UInt64 = 0
    /// How deeply nested the object being written is (0: the reply itself).
    private var depth = 0
    /// Small pieces not yet in `buffer`, which gets them in one write (see ``GatheredBytes``).
    private var gathered = GatheredBytes()

    private init(buffer: consuming ByteBuffer) {
        self.buffer = buffer
        self.start = buffer.writerIndex
        write("{")
    }

    /// Begins a success reply: `{"ok":true`.
    /// - Parameter buffer: A buffer to append to (usually empty, from the channel's allocator).
    /// - Returns: The writer.
    public static func ok(into buffer: consuming ByteBuffer) -> JSONLineWriter {
        var writer = JSONLineWriter(buffer: buffer)
        writer.member("ok", bool: true)
        return writer
    }

    /// Begins a request: `{"action":"<name>"`.
    /// - Parameters:
    ///   - action: The action.
    ///   - buffer: A buffer to append to.
    /// - Returns: The writer.
    public static func request(_ action: String, into buffer: consuming ByteBuffer) -> JSONLineWriter {
        var writer = JSONLineWriter(buffer: buffer)
        writer.member("action", string: action)
        return writer
    }

    /// Closes a request and its line, signing it as the original client does when a signer is given: the MAC
    /// covers the request's text without the `hmac` member, which is appended last.
    /// - Parameter signer: Signs the request when given.
    /// - Returns: The request line, ending in `\n`.
    public consuming func finishRequest(signer: FrameSigner?) -> ByteBuffer {
        precondition(depth == 0, "unclosed nested object")
        if let signer {
            flushGathered()
            let mac = buffer.withUnsafeReadableBytes { bytes in
                let text = UnsafeRawBufferPointer(rebasing: bytes[(start - buffer.readerIndex)...])
                let brace: [UInt8] = [UInt8(ascii: "}")]
                return brace.withUnsafeBytes { Hex.encode(signer.mac([text, $0])) }
            }
            member("hmac", string: mac)
        }
        write("}\n")
        flushGathered()
        return buffer
    }

    /// Begins an error reply: `{"ok":false,"error":"<name>"}` plus a `message` when the error has one.
    /// - Parameters:
    ///   - error: The error to report.
    ///   - buffer: A buffer to append to.
    /// - Returns: The writer.
    public static func error(_ error: BrokerError, into buffer: consuming ByteBuffer) -> JSONLineWriter {
        var writer = JSONLineWriter(buffer: buffer)
        writer.member("ok", bool: false)
        writer.member("error", string: error.code.wireName)
        if let message = error.message { writer.member("message", string: message) }
        return writer
    }

    /// Writes a member name given in the source (it needs no escaping) as it is: no scan for characters to escape.
    private mutating func name(_ name: StaticString) {
        let comma = needsComma()
        name.withUTF8Buffer { name in
            let bytes = UnsafeRawBufferPointer(name)
            if gathered.appendMemberName(bytes, comma: comma) { return }
            flushGathered()
            if gathered.appendMemberName(bytes, comma: comma) { return }
            if comma { write(",") }  // a name longer than the gathering space: piece by piece
            write("\"")
            write(bytes)
            write("\":")
        }
    }

    /// Writes a member name known only at run time (a key, a pool), escaped as needed.
    private mutating func name(_ name: String) {
        separate()
        writeJSONString(name)
        write(":")
    }

    /// A comma before every member of an object but its first.
    private mutating func separate() {
        if needsComma() { write(",") }
    }

    /// Whether the member about to be written needs a comma before it; notes that the object now has a member.
    private mutating func needsComma() -> Bool {
        let bit: UInt64 = 1 << UInt64(depth)
        defer { hasMember |= bit }
        return hasMember & bit != 0
    }

    /// Appends a string member.
    public mutating func member(_ name: StaticString, string value: String) {
        self.name(name)
        writeJSONString(value)
    }

    /// Appends an integer member.
    public mutating func member(_ name: StaticString, int value: Int64) {
        self.name(name)
        Decimal.withDigits(of: value) { write($0) }
    }

    /// Appends a number member; non-finite numbers are written as `0`, which JSON cannot express otherwise.
    public mutating func member(_ name: StaticString, double value: Double) {
        self.name(name)
        flushGathered()
        buffer.writeString(value.isFinite ? formatted(value) : "0")
    }

    /// Appends a Boolean member.
    public mutating func member(_ name: StaticString, bool value: Bool) {
        self.name(name)
        write(value ? "true" : "false")
    }

    /// Appends a member whose value is already JSON text.
    public mutating func member(_ name: StaticString, rawJSON bytes: [UInt8]) {
        self.name(name)
        bytes.withUnsafeBytes { write($0) }
    }

    /// Writes a member whose value is JSON text already, read in place.
    /// - Parameters:
    ///   - name: The member's name.
    ///   - bytes: Compact JSON text, valid for the call.
    public mutating func member(_ name: StaticString, rawJSON bytes: UnsafeRawBufferPointer) {
        self.name(name)
        write(bytes)
    }

    /// Opens a nested object member; close it with ``endObject()``.
    public mutating func beginObject(_ name: String) {
        self.name(name)
        write("{")
        depth += 1
        precondition(depth < 64, "nesting too deep for a reply")
        hasMember &= ~(1 << UInt64(depth))
    }

    /// Closes the innermost nested object.
    public mutating func endObject() {
        precondition(depth > 0, "endObject without beginObject")
        depth -= 1
        write("}")
    }

    /// Closes the reply and its line, signing it when asked.
    ///
    /// A signed reply ends with `"hmac":"<hex>"` over the request's nonce, a newline, and the reply's bytes
    /// without that member, so a reply cannot be replayed as the answer to another request.
    /// - Parameters:
    ///   - signer: Signs the reply when given.
    ///   - nonce: The request's nonce (empty when it had none).
    /// - Returns: The reply line, ending in `\n`.
    public consuming func finish(signer: FrameSigner?, nonce: String?) -> ByteBuffer {
        precondition(depth == 0, "unclosed nested object")
        if let signer {
            flushGathered()
            let mac = buffer.withUnsafeReadableBytes { bytes in
                let reply = UnsafeRawBufferPointer(rebasing: bytes[(start - buffer.readerIndex)...])
                return Self.replyMAC(signer: signer, nonce: nonce, replyWithoutMAC: reply, closingBrace: true)
            }
            member("hmac", string: mac)
        }
        write("}\n")
        flushGathered()
        return buffer
    }

    /// Abandons the line: the buffer as it was before the writer began (what is still gathered goes with the writer).
    /// - Returns: The buffer, with everything this writer wrote removed.
    public consuming func abandon() -> ByteBuffer {
        buffer.moveWriterIndex(to: start)
        return buffer
    }

    /// The MAC of a reply: over `nonce`, a newline, and the reply's bytes without its `hmac` member.
    /// - Parameters:
    ///   - signer: The signer.
    ///   - nonce: The request's nonce, or `nil`.
    ///   - replyWithoutMAC: The reply's bytes from `{` up to where the `hmac` member begins.
    ///   - closingBrace: Whether to append the `}` that closes the reply without its MAC.
    /// - Returns: 64 lowercase hex digits.
    public static func replyMAC(
        signer: FrameSigner, nonce: String?, replyWithoutMAC: UnsafeRawBufferPointer,
        closingBrace: Bool
    ) -> String {
        var prefix = Array((nonce ?? "").utf8)
        prefix.append(UInt8(ascii: "\n"))
        let brace: [UInt8] = closingBrace ? [UInt8(ascii: "}")] : []
        return prefix.withUnsafeBytes { prefixBytes in
            brace.withUnsafeBytes { braceBytes in
                Hex.encode(signer.mac([prefixBytes, replyWithoutMAC, braceBytes]))
            }
        }
    }

    // MARK: - Writing through `gathered`

    private mutating func flushGathered() {
        gathered.drain(into: &buffer)
    }

    private mutating func write(_ bytes: UnsafeRawBufferPointer) {
        if gathered.append(bytes) { return }
        flushGathered()
        if gathered.append(bytes) { return }
        buffer.writeBytes(bytes)  // larger than the gathering space: straight in
    }

    private mutating func write(_ text: StaticString) {
        text.withUTF8Buffer { write(UnsafeRawBufferPointer($0)) }
    }

    /// Writes a JSON string literal: gathered when it needs no escaping, else escaped straight into the buffer.
    private mutating func writeJSONString(_ string: String) {
        var string = string
        let plain = string.withUTF8 { utf8 -> Bool in
            guard !needsEscaping(utf8) else { return false }
            write("\"")
            write(UnsafeRawBufferPointer(utf8))
            write("\"")
            return true
        }
        guard !plain else { return }
        flushGathered()
        buffer.writeJSONString(string)
    }

    private func formatted(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}

/// Whether UTF-8 text holds a byte a JSON string must escape: a quote, a backslash or a control character.
private func needsEscaping(_ utf8: UnsafeBufferPointer<UInt8>) -> Bool {
    utf8.contains { $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") || $0 < 0x20 }
}

/// Up to 128 bytes of a line, gathered before they go into its `ByteBuffer` in one write. Every `ByteBuffer` write
/// pays NIO's capacity check and a dynamic exclusivity check on the buffer's storage, about 150 instructions, and a
/// reply built of names, punctuation and small values had about twenty of them: a fifth of all the instructions the
/// broker spent on a `get` (callgrind).
struct GatheredBytes {
    private var storage: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                          UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    private var count = 0
    /// Bytes still free.
    private var room: Int { MemoryLayout.size(ofValue: storage) - count }

    /// Appends `bytes` if they fit.
    /// - Returns: Whether they did.
    mutating func append(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count <= room else { return false }
        guard let source = bytes.baseAddress, !bytes.isEmpty else { return true }
        let offset = count
        withUnsafeMutableBytes(of: &storage) { raw in
            (raw.baseAddress! + offset).copyMemory(from: source, byteCount: bytes.count)
        }
        count += bytes.count
        return true
    }

    /// Appends `,"name":` (or `"name":`) in one step, if it fits: the most frequent piece of every line.
    /// - Returns: Whether it fit.
    mutating func appendMemberName(_ name: UnsafeRawBufferPointer, comma: Bool) -> Bool {
        let needed = name.count + (comma ? 4 : 3)
        guard needed <= room else { return false }
        let offset = count
        withUnsafeMutableBytes(of: &storage) { raw in
            var position = offset
            if comma {
                raw[position] = UInt8(ascii: ",")
                position += 1
            }
            raw[position] = UInt8(ascii: "\"")
            position += 1
            for byte in name {
                raw[position] = byte
                position += 1
            }
            raw[position] = UInt8(ascii: "\"")
            raw[position + 1] = UInt8(ascii: ":")
        }
        count += needed
        return true
    }

    /// Moves what was gathered into `buffer`.
    mutating func drain(into buffer: inout ByteBuffer) {
        guard count > 0 else { return }
        let gathered = count
        withUnsafeBytes(of: &storage) { raw in
            _ = buffer.writeBytes(UnsafeRawBufferPointer(rebasing: raw[..<gathered]))
        }
        count = 0
    }
}

/// Decimal digits of an integer without a `String`.
enum Decimal {
    /// Calls `body` with the digits of `value` (and its sign), valid for the call.
    static func withDigits<R>(of value: Int64, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for 20 digits and a sign
        let count = withUnsafeMutableBytes(of: &digits) { raw -> Int in
            var magnitude = value.magnitude
            var position = raw.count
            repeat {
                position -= 1
                raw[position] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude != 0
            if value < 0 {
                position -= 1
                raw[position] = UInt8(ascii: "-")
            }
            return raw.count - position
        }
        return withUnsafeBytes(of: &digits) { raw in body(UnsafeRawBufferPointer(rebasing: raw[(raw.count - count)...])) }
    }
}

extension ByteBuffer {
    /// Writes an integer in decimal, without making a `String` of it.
    /// - Parameter value: The integer.
    public mutating func writeDecimal(_ value: Int64) {
        Decimal.withDigits(of: value) { _ = writeBytes($0) }
    }

    /// Writes `string` as a JSON string literal, escaping what JSON requires.
    /// - Parameter string: The text.
    public mutating func writeJSONString(_ string: String) {
        // Most strings need no escaping: check the bytes in place and write them in one piece.
        let plain = string.utf8.withContiguousStorageIfAvailable { utf8 -> Bool in
            guard !needsEscaping(utf8) else { return false }
            reserveCapacity(minimumWritableBytes: utf8.count + 2)
            writeInteger(UInt8(ascii: "\""))
            writeBytes(UnsafeRawBufferPointer(utf8))
            writeInteger(UInt8(ascii: "\""))
            return true
        }
        if plain == true { return }
        writeStaticString("\"")
        var pendingStart = string.utf8.startIndex
        let utf8 = string.utf8
        var index = utf8.startIndex
        while index != utf8.endIndex {
            let byte = utf8[index]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 {
                writeSubstring(string[pendingStart..<index])
                switch byte {
                case UInt8(ascii: "\""): writeStaticString("\\\"")
                case UInt8(ascii: "\\"): writeStaticString("\\\\")
                case 0x0A: writeStaticString("\\n")
                case 0x0D: writeStaticString("\\r")
                case 0x09: writeStaticString("\\t")
                default:
                    let hex = Array("0123456789abcdef".utf8)
                    writeBytes([
                        UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                        hex[Int(byte >> 4)], hex[Int(byte & 0x0F)],
                    ])
                }
                pendingStart = utf8.index(after: index)
            }
            index = utf8.index(after: index)
        }
        writeSubstring(string[pendingStart..<utf8.endIndex])
        writeStaticString("\"")
    }
}
