/// One reply line from a broker, checked and ready to read member by member.
public struct BrokerReply: Sendable {
    private let line: [UInt8]
    private let members: [String: JSONScanner.Member]

    /// Parses a reply line and, when `signer` is given, verifies its trailing `hmac` member, which the broker
    /// computes over `nonce`, a newline, and the reply without that member.
    /// - Parameters:
    ///   - line: The reply line without its newline.
    ///   - signer: The shared secret's signer, when the request was signed.
    ///   - nonce: The request's nonce (or `nil`).
    /// - Throws: `invalid_reply` for anything that is not a JSON object with a Boolean `ok`;
    ///   `bad_reply_signature` for a missing or wrong MAC.
    public init(line: [UInt8], signer: FrameSigner?, nonce: String?) throws(BrokerError) {
        self.line = line
        let parsed = line.withUnsafeBytes { bytes -> Result<(JSONScanner.Object, [String: JSONScanner.Member])?, BrokerError> in
            var scanner = JSONScanner(bytes)
            do throws(BrokerError) {
                guard let object = try scanner.scanTopLevel() else { return .success(nil) }
                var members: [String: JSONScanner.Member] = [:]
                for member in object.members { members[member.name(in: bytes)] = member }
                return .success((object, members))
            } catch {
                return .failure(error)
            }
        }
        guard case .success(let maybeObject) = parsed, let (object, members) = maybeObject else {
            throw BrokerError(.invalidReply, "the broker's reply is not a JSON object")
        }
        self.members = members
        if let signer {
            let valid = line.withUnsafeBytes { bytes in
                Self.hasValidMAC(bytes, object: object, signer: signer, nonce: nonce)
            }
            guard valid else {
                // A broker cannot sign a refusal of a request it could not read or authenticate: report that
                // refusal (it grants nothing), and nothing else unsigned.
                if bool("ok") == false, let name = string("error"),
                    let code = BrokerError.Code.unsignedRefusals.first(where: { $0.wireName == name })
                {
                    if code == .authFailed {
                        throw BrokerError(.authFailed, "the broker refused this client's signature: the secrets differ")
                    }
                    throw BrokerError(code, string("message"))
                }
                throw BrokerError(.badReplySignature, "the broker's reply is not signed with the shared secret")
            }
        }
        guard bool("ok") != nil else { throw BrokerError(.invalidReply, "the broker's reply has no ok member") }
    }

    private static func hasValidMAC(
        _ bytes: UnsafeRawBufferPointer, object: JSONScanner.Object, signer: FrameSigner,
        nonce: String?
    ) -> Bool {
        guard let last = object.members.last, last.hasName("hmac", in: bytes), last.value.count == 66,
            bytes[last.value.lowerBound] == UInt8(ascii: "\""),
            let given = Hex.decode(
                UnsafeRawBufferPointer(rebasing: bytes[(last.value.lowerBound + 1)..<(last.value.upperBound - 1)]))
        else { return false }
        let body = UnsafeRawBufferPointer(rebasing: bytes[object.start..<last.separatorStart])
        let expected = JSONLineWriter.replyMAC(signer: signer, nonce: nonce, replyWithoutMAC: body, closingBrace: true)
        let expectedBytes = Array(expected.utf8).withUnsafeBytes { Hex.decode($0) } ?? []
        return FrameSigner.constantTimeEqual(expectedBytes, given)
    }

    private func scan<T>(_ name: String, _ body: (JSONScanner, JSONScanner.Member) throws(BrokerError) -> T?) -> T? {
        guard let member = members[name] else { return nil }
        return line.withUnsafeBytes { bytes in
            do throws(BrokerError) { return try body(JSONScanner(bytes), member) } catch { return nil }
        }
    }

    /// The whole reply line.
    public var raw: [UInt8] { line }

    /// Whether the broker reported success.
    public var isOK: Bool { bool("ok") == true }

    /// The broker's error, when it reported one.
    public var error: BrokerError? {
        guard !isOK else { return nil }
        return BrokerError(BrokerError.Code(wireName: string("error") ?? "unknown_error"), string("message"))
    }

    /// A member's value as compact JSON bytes.
    public func json(_ name: String) -> [UInt8]? { scan(name) { scanner, member in scanner.compactBytes(member) } }

    /// A string member.
    public func string(_ name: String) -> String? {
        scan(name) { scanner, member throws(BrokerError) in try scanner.string(member) }
    }

    /// A number member.
    public func number(_ name: String) -> Double? { scan(name) { scanner, member in scanner.number(member) } }

    /// A Boolean member.
    public func bool(_ name: String) -> Bool? { scan(name) { scanner, member in scanner.bool(member) } }
}
