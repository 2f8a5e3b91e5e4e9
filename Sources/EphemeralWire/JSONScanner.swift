#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A strict, allocation-light scanner for one JSON text held in a byte buffer.
///
/// It validates the whole text in one pass and records, for a top-level object, where each member's value lies,
/// so a request can be decoded without building a tree, a value can be stored as its exact bytes, and a signature
/// can be checked over the exact bytes that were received.
struct JSONScanner {
    /// One member of the top-level object.
    struct Member {
        /// Where the name's bytes lie, between its quotes, as received.
        var nameRange: Range<Int> = 0..<0
        /// The decoded name, only for a name written with escapes: any other name is compared as its bytes, with no
        /// `String` made of it.
        var escapedName: String? = nil
        /// Where the member begins: the comma before it, or just after `{` for the first member.
        var separatorStart: Int
        /// The value's bytes, from its first to one past its last byte.
        var value: Range<Int>

        /// Whether the member is called `name`.
        /// - Parameter bytes: The text the member was scanned from.
        func hasName(_ name: StaticString, in bytes: UnsafeRawBufferPointer) -> Bool {
            if let escapedName { return escapedName == name.description }
            guard nameRange.count == name.utf8CodeUnitCount else { return false }
            return nameRange.isEmpty || memcmp(bytes.baseAddress! + nameRange.lowerBound, name.utf8Start, nameRange.count) == 0
        }

        /// The member's name.
        /// - Parameter bytes: The text the member was scanned from.
        func name(in bytes: UnsafeRawBufferPointer) -> String {
            escapedName ?? String(decoding: UnsafeRawBufferPointer(rebasing: bytes[nameRange]), as: UTF8.self)
        }
    }

    /// The top-level object of a request line.
    struct Object {
        var members: [Member]
        /// Index of the opening brace.
        var start: Int
        /// Index of the closing brace.
        var end: Int

        /// The last member with this name (JSON.parse semantics: the last duplicate wins).
        /// - Parameter bytes: The text the object was scanned from.
        func member(_ name: StaticString, in bytes: UnsafeRawBufferPointer) -> Member? {
            members.last { $0.hasName(name, in: bytes) }
        }
    }

    /// Nesting deeper than this is refused, so a hostile line cannot exhaust the stack.
    static let maxDepth = 256

    let bytes: UnsafeRawBufferPointer
    var index = 0

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    /// Scans the whole text, which must be one JSON value with optional surrounding white space.
    /// - Returns: The top-level object's members, or `nil` when the value is valid JSON but not an object.
    mutating func scanTopLevel() throws(BrokerError) -> Object? {
        skipWhitespace()
        guard index < bytes.count else { throw BrokerError(.invalidJSON, "empty request") }
        var object: Object?
        if bytes[index] == UInt8(ascii: "{") {
            object = try scanObject(depth: 0, recordMembers: true)
        } else {
            try skipValue(depth: 0)
        }
        skipWhitespace()
        guard index == bytes.count else { throw BrokerError(.invalidJSON, "trailing characters after the JSON value") }
        return object
    }

    // MARK: - Values

    private mutating func scanObject(depth: Int, recordMembers: Bool) throws(BrokerError) -> Object {
        guard depth < Self.maxDepth else { throw BrokerError(.invalidJSON, "nesting deeper than \(Self.maxDepth)") }
        let start = index
        index += 1  // {
        var members: [Member] = []
        if recordMembers { members.reserveCapacity(8) }  // one allocation for a request, not one per doubling
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            index += 1
            return Object(members: members, start: start, end: index - 1)
        }
        var separator = start + 1
        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else { throw BrokerError(.invalidJSON, "expected a member name") }
            let nameRange = try skipString()
            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else {
                throw BrokerError(.invalidJSON, "expected ':' after a member name")
            }
            index += 1
            skipWhitespace()
            let valueStart = index
            try skipValue(depth: depth + 1)
            if recordMembers {
                let escapedName = plainBytes(nameRange) == nil ? try decodeString(nameRange) : nil
                members.append(
                    Member(
                        nameRange: nameRange, escapedName: escapedName, separatorStart: separator,
                        value: valueStart..<index))
            }
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","):
                separator = index
                index += 1
            case UInt8(ascii: "}"):
                index += 1
                return Object(members: members, start: start, end: index - 1)
            default:
                throw BrokerError(.invalidJSON, "expected ',' or '}' in an object")
            }
        }
    }

    mutating func skipValue(depth: Int) throws(BrokerError) {
        guard let byte = peek() else { throw BrokerError(.invalidJSON, "unexpected end of input") }
        switch byte {
        case UInt8(ascii: "{"):
            _ = try scanObject(depth: depth, recordMembers: false)
        case UInt8(ascii: "["):
            guard depth < Self.maxDepth else { throw BrokerError(.invalidJSON, "nesting deeper than \(Self.maxDepth)") }
            index += 1
            skipWhitespace()
            if peek() == UInt8(ascii: "]") {
                index += 1
                return
            }
            while true {
                skipWhitespace()
                try skipValue(depth: depth + 1)
                skipWhitespace()
                switch peek() {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "]"):
                    index += 1
                    return
                default: throw BrokerError(.invalidJSON, "expected ',' or ']' in an array")
                }
            }
        case UInt8(ascii: "\""):
            _ = try skipString()
        case UInt8(ascii: "t"): try expectLiteral("true")
        case UInt8(ascii: "f"): try expectLiteral("false")
        case UInt8(ascii: "n"): try expectLiteral("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            try skipNumber()
        default:
            throw BrokerError(.invalidJSON, "unexpected character")
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(BrokerError) {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw BrokerError(.invalidJSON, "unexpected end of input") }
        let matches = literal.withUTF8Buffer { expected in
            (0..<count).allSatisfy { bytes[index + $0] == expected[$0] }
        }
        guard matches else { throw BrokerError(.invalidJSON, "invalid literal") }
        index += count
    }

    private mutating func skipNumber() throws(BrokerError) {
        if peek() == UInt8(ascii: "-") { index += 1 }
        guard let first = peek(), isDigit(first) else { throw BrokerError(.invalidJSON, "invalid number") }
        index += 1
        if first != UInt8(ascii: "0") {
            while let digit = peek(), isDigit(digit) { index += 1 }
        }
        if peek() == UInt8(ascii: ".") {
            index += 1
            guard let digit = peek(), isDigit(digit) else { throw BrokerError(.invalidJSON, "invalid number") }
            while let digit = peek(), isDigit(digit) { index += 1 }
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            index += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { index += 1 }
            guard let digit = peek(), isDigit(digit) else { throw BrokerError(.invalidJSON, "invalid number") }
            while let digit = peek(), isDigit(digit) { index += 1 }
        }
    }

    /// The position of the first byte from `start` on that is not plain printable ASCII inside a string: a control
    /// character, `"`, `\`, or a byte of a multi-byte UTF-8 sequence; `bytes.count` when there is none.
    private static func endOfPlainASCII(in bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
        guard let base = bytes.baseAddress else { return start }
        let count = bytes.count
        var position = start
        // Eight bytes at a time. Each test below sets the high bit of a byte that matches it (the subtractions can
        // also mark bytes above a match, never below one), so the lowest marked byte is the first that is not plain.
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        while position &+ 8 <= count {
            let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: position, as: UInt64.self))
            let quotes = word ^ (ones &* 0x22)
            let backslashes = word ^ (ones &* 0x5C)
            let control = (word &- ones &* 0x20) & ~word & highs
            let marked =
                control | (word & highs) | ((quotes &- ones) & ~quotes & highs)
                | ((backslashes &- ones) & ~backslashes & highs)
            if marked != 0 { return position &+ marked.trailingZeroBitCount / 8 }
            position &+= 8
        }
        while position < count {
            let byte = base.load(fromByteOffset: position, as: UInt8.self)
            guard byte >= 0x20, byte < 0x80, byte != UInt8(ascii: "\""), byte != UInt8(ascii: "\\") else { break }
            position += 1
        }
        return position
    }

    /// Skips a string, checking escapes, control characters and UTF-8.
    /// - Returns: The range of the string's contents, between the quotes.
    private mutating func skipString() throws(BrokerError) -> Range<Int> {
        index += 1  // opening quote
        let start = index
        while index < bytes.count {
            // Plain printable ASCII, the bulk of every key and value, eight bytes at a time and on locals (the stored
            // `index` and `bytes.count` would be reloaded on every byte).
            index = Self.endOfPlainASCII(in: bytes, from: index)
            guard index < bytes.count else { break }
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                return start..<(index - 1)
            case UInt8(ascii: "\\"):
                guard index + 1 < bytes.count else { throw BrokerError(.invalidJSON, "unterminated string") }
                switch bytes[index + 1] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                    UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    index += 2
                case UInt8(ascii: "u"):
                    guard index + 6 <= bytes.count, (2..<6).allSatisfy({ hexValue(bytes[index + $0]) != nil }) else {
                        throw BrokerError(.invalidJSON, "invalid \\u escape")
                    }
                    index += 6
                default:
                    throw BrokerError(.invalidJSON, "invalid escape")
                }
            case 0..<0x20:
                throw BrokerError(.invalidJSON, "control character in a string")
            case 0x20..<0x80:
                index += 1
            default:
                index += try utf8SequenceLength(at: index)
            }
        }
        throw BrokerError(.invalidJSON, "unterminated string")
    }

    /// The length of the well-formed UTF-8 sequence at `position`, or an error for malformed UTF-8.
    private func utf8SequenceLength(at position: Int) throws(BrokerError) -> Int {
        let lead = bytes[position]
        let length: Int
        var lower: UInt8 = 0x80
        var upper: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0:
            length = 3
            lower = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED:
            length = 3
            upper = 0x9F
        case 0xF0:
            length = 4
            lower = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4:
            length = 4
            upper = 0x8F
        default: throw BrokerError(.invalidJSON, "invalid UTF-8")
        }
        guard position + length <= bytes.count else { throw BrokerError(.invalidJSON, "invalid UTF-8") }
        let second = bytes[position + 1]
        guard second >= lower, second <= upper else { throw BrokerError(.invalidJSON, "invalid UTF-8") }
        for offset in 2..<max(2, length) where bytes[position + offset] & 0xC0 != 0x80 {
            throw BrokerError(.invalidJSON, "invalid UTF-8")
        }
        return length
    }

    // MARK: - Decoding members

    /// Decodes the contents of a scanned string (between its quotes) into a Swift string.
    func decodeString(_ range: Range<Int>) throws(BrokerError) -> String {
        if let plain = plainBytes(range) { return String(decoding: plain, as: UTF8.self) }
        var scalars = String.UnicodeScalarView()
        var position = range.lowerBound
        var pendingHigh: UInt32?
        while position < range.upperBound {
            let byte = bytes[position]
            if byte != UInt8(ascii: "\\") {
                if pendingHigh != nil { throw BrokerError(.invalidJSON, "unpaired surrogate") }
                let length = byte < 0x80 ? 1 : try utf8SequenceLength(at: position)
                let text = String(
                    decoding: UnsafeRawBufferPointer(rebasing: bytes[position..<(position + length)]),
                    as: UTF8.self)
                scalars.append(contentsOf: text.unicodeScalars)
                position += length
                continue
            }
            let escape = bytes[position + 1]
            position += 2
            var scalarValue: UInt32
            switch escape {
            case UInt8(ascii: "b"): scalarValue = 0x08
            case UInt8(ascii: "f"): scalarValue = 0x0C
            case UInt8(ascii: "n"): scalarValue = 0x0A
            case UInt8(ascii: "r"): scalarValue = 0x0D
            case UInt8(ascii: "t"): scalarValue = 0x09
            case UInt8(ascii: "u"):
                scalarValue = 0
                for offset in 0..<4 { scalarValue = scalarValue << 4 | UInt32(hexValue(bytes[position + offset])!) }
                position += 4
            default: scalarValue = UInt32(escape)
            }
            if let high = pendingHigh {
                guard (0xDC00...0xDFFF).contains(scalarValue) else {
                    throw BrokerError(.invalidJSON, "unpaired surrogate")
                }
                scalarValue = 0x10000 + ((high - 0xD800) << 10) + (scalarValue - 0xDC00)
                pendingHigh = nil
            } else if (0xD800...0xDBFF).contains(scalarValue) {
                pendingHigh = scalarValue
                continue
            } else if (0xDC00...0xDFFF).contains(scalarValue) {
                throw BrokerError(.invalidJSON, "unpaired surrogate")
            }
            guard let scalar = Unicode.Scalar(scalarValue) else { throw BrokerError(.invalidJSON, "invalid escape") }
            scalars.append(scalar)
        }
        if pendingHigh != nil { throw BrokerError(.invalidJSON, "unpaired surrogate") }
        return String(scalars)
    }

    /// The first byte of a member's value, telling its JSON type.
    func firstByte(of member: Member) -> UInt8 { bytes[member.value.lowerBound] }

    /// The contents of a scanned string (between its quotes) when they hold no escape, and so are the string's UTF-8
    /// as it is; `nil` for contents written with escapes.
    private func plainBytes(_ range: Range<Int>) -> UnsafeRawBufferPointer? {
        let slice = UnsafeRawBufferPointer(rebasing: bytes[range])
        return slice.contains(UInt8(ascii: "\\")) ? nil : slice
    }

    /// Where a string member's contents lie, between its quotes; `nil` when the value is not a string.
    private func stringContents(of member: Member) -> Range<Int>? {
        guard firstByte(of: member) == UInt8(ascii: "\"") else { return nil }
        return (member.value.lowerBound + 1)..<(member.value.upperBound - 1)
    }

    /// The bytes of a string member's contents when they hold no escape, and so are the string's UTF-8 as it is.
    /// - Returns: `nil` for a string written with escapes, or a value that is not a string.
    func plainStringBytes(_ member: Member) -> UnsafeRawBufferPointer? {
        stringContents(of: member).flatMap(plainBytes)
    }

    /// The member's value as a string, `nil` when it is not a string.
    func string(_ member: Member) throws(BrokerError) -> String? {
        guard let contents = stringContents(of: member) else { return nil }
        return try decodeString(contents)
    }

    /// The member's value as a number, `nil` when it is not a number.
    func number(_ member: Member) -> Double? {
        let first = firstByte(of: member)
        guard first == UInt8(ascii: "-") || isDigit(first) else { return nil }
        // Integers of up to 15 digits (every TTL, wait and fence) are exact in a Double: no String, no strtod.
        let range = member.value
        var position = range.lowerBound + (first == UInt8(ascii: "-") ? 1 : 0)
        if range.upperBound - position <= 15 {
            var magnitude: Int64 = 0
            while position < range.upperBound, isDigit(bytes[position]) {
                magnitude = magnitude * 10 + Int64(bytes[position] - UInt8(ascii: "0"))
                position += 1
            }
            if position == range.upperBound {
                return first == UInt8(ascii: "-") ? -Double(magnitude) : Double(magnitude)
            }
        }
        return Double(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[member.value]), as: UTF8.self))
    }

    /// The member's value as a Boolean, `nil` when it is not `true` or `false`.
    func bool(_ member: Member) -> Bool? {
        switch firstByte(of: member) {
        case UInt8(ascii: "t"): return true
        case UInt8(ascii: "f"): return false
        default: return nil
        }
    }

    /// Whether the member's value is `null`.
    func isNull(_ member: Member) -> Bool { firstByte(of: member) == UInt8(ascii: "n") }

    /// The member's value as compact JSON bytes: white space outside strings removed, everything else verbatim.
    func compactBytes(_ member: Member) -> [UInt8] {
        let slice = UnsafeRawBufferPointer(rebasing: bytes[member.value])
        // A string, number or literal has no white space to remove: one copy.
        let first = firstByte(of: member)
        if first != UInt8(ascii: "{"), first != UInt8(ascii: "[") { return Array(slice) }
        var output = [UInt8]()
        output.reserveCapacity(slice.count)
        var inString = false
        var escaped = false
        for byte in slice {
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                output.append(byte)
            } else if byte == UInt8(ascii: "\"") {
                inString = true
                output.append(byte)
            } else if !isWhitespace(byte) {
                output.append(byte)
            }
        }
        return output
    }

    /// The elements of an array member as compact JSON bytes, `nil` when the member is not an array.
    func arrayElements(_ member: Member) -> [[UInt8]]? {
        guard firstByte(of: member) == UInt8(ascii: "[") else { return nil }
        var scanner = JSONScanner(UnsafeRawBufferPointer(rebasing: bytes[member.value]))
        scanner.index = 1
        var elements: [[UInt8]] = []
        scanner.skipWhitespace()
        if scanner.peek() == UInt8(ascii: "]") { return [] }
        while true {
            scanner.skipWhitespace()
            let start = scanner.index
            guard (try? scanner.skipValue(depth: 1)) != nil else { return nil }
            elements.append(scanner.compactBytes(Member(separatorStart: 0, value: start..<scanner.index)))
            scanner.skipWhitespace()
            guard scanner.peek() == UInt8(ascii: ",") else { return elements }
            scanner.index += 1
        }
    }

    // MARK: - Bytes

    func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

    mutating func skipWhitespace() {
        while index < bytes.count, isWhitespace(bytes[index]) { index += 1 }
    }
}

@inline(__always) func isWhitespace(_ byte: UInt8) -> Bool {
    byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
}

@inline(__always) func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

@inline(__always) func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
    default: return nil
    }
}

/// Checks and compacts standalone JSON texts.
public enum JSONText {
    /// The text without insignificant white space, or `nil` when it is not exactly one JSON value.
    /// - Parameter text: UTF-8 JSON.
    /// - Returns: Compact JSON bytes.
    public static func compact(_ text: [UInt8]) -> [UInt8]? {
        text.withUnsafeBytes { bytes -> [UInt8]? in
            var scanner = JSONScanner(bytes)
            do throws(BrokerError) {
                _ = try scanner.scanTopLevel()
            } catch {
                return nil
            }
            let all = JSONScanner.Member(separatorStart: 0, value: 0..<bytes.count)
            return scanner.compactBytes(all)
        }
    }

    /// The elements of a JSON array text, each as compact JSON.
    /// - Parameter text: UTF-8 JSON.
    /// - Returns: The elements, or `nil` when `text` is not valid JSON or not an array.
    public static func arrayElements(_ text: [UInt8]) -> [[UInt8]]? {
        guard let compact = compact(text) else { return nil }
        return compact.withUnsafeBytes { bytes in
            let scanner = JSONScanner(bytes)
            return scanner.arrayElements(JSONScanner.Member(separatorStart: 0, value: 0..<bytes.count))
        }
    }
}
