import EphemeralWire
import Testing

@Suite("HMAC signing over exact bytes")
struct FrameSignerTests {
    let secret = "s3cret"

    /// Signs like the Node client: MAC over the payload text, then `"hmac"` appended as the last member.
    func signed(_ payload: String, mac: String? = nil) -> String {
        let computed = Array(payload.utf8).withUnsafeBytes { FrameSigner(secret: secret).hexMAC($0) }
        return String(payload.dropLast()) + #","hmac":""# + (mac ?? computed) + #""}"#
    }

    func outcome(_ line: String) -> String {
        let decoder = RequestDecoder(signer: FrameSigner(secret: secret))
        return Array(line.utf8).withUnsafeBytes { raw in
            do throws(BrokerError) {
                let request = try decoder.decode(raw)
                if case .failure(let error) = request.command { return error.code.wireName }
                return request.isSigned ? "signed" : "unsigned"
            } catch {
                return error.code.wireName
            }
        }
    }

    @Test(arguments: [
        // RFC 4231 test cases 1, 2 and 6 (a key longer than the block is hashed first).
        ([UInt8](repeating: 0x0B, count: 20), "Hi There",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        (Array("Jefe".utf8), "what do ya want for nothing?",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        ([UInt8](repeating: 0xAA, count: 131), "Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    ])
    func matchesTheRFC4231Vectors(key: [UInt8], message: String, expected: String) {
        let signer = FrameSigner(key: key)
        #expect(Array(message.utf8).withUnsafeBytes { signer.hexMAC($0) } == expected)
        // The same MAC when the message comes in parts, as a reply's does.
        let bytes = Array(message.utf8)
        let split = bytes.count / 3
        let parts = bytes[..<split].withUnsafeBytes { first in
            bytes[split...].withUnsafeBytes { rest in Hex.encode(signer.mac([first, UnsafeRawBufferPointer(start: nil, count: 0), rest])) }
        }
        #expect(parts == expected)
    }

    @Test func acceptsTheNodeClientsSignature() {
        #expect(outcome(signed(#"{"action":"set","key":"k","value":{"b":1,"a":[2]},"ttl":5}"#)) == "signed")
    }

    @Test func hexCaseDoesNotMatter() {
        let line = signed(#"{"action":"ping"}"#)
        let upper = line.replacingOccurrences(ofHexIn: line)
        #expect(outcome(upper) == "signed")
    }

    @Test func refusesMissingWrongTruncatedPaddedOrNonHexMACs() {
        let payload = #"{"action":"ping"}"#
        let good = Array(payload.utf8).withUnsafeBytes { FrameSigner(secret: secret).hexMAC($0) }
        #expect(outcome(payload) == "auth_failed")
        #expect(outcome(signed(payload, mac: String(repeating: "0", count: 64))) == "auth_failed")
        #expect(outcome(signed(payload, mac: String(good.dropLast(2)))) == "auth_failed")
        #expect(outcome(signed(payload, mac: good + "00")) == "auth_failed")
        #expect(outcome(signed(payload, mac: " " + good.dropLast())) == "auth_failed")
        #expect(outcome(signed(payload, mac: String(good.dropLast()) + "g")) == "auth_failed")
        #expect(outcome(#"{"action":"ping","hmac":7}"#) == "auth_failed")
    }

    @Test func aTamperedByteAnywhereIsRefused() {
        let line = Array(signed(#"{"action":"set","key":"k","value":"abc","ttl":5}"#).utf8)
        let macStart = line.count - 66
        for index in 0..<macStart where line[index] != UInt8(ascii: "\"") {
            var tampered = line
            tampered[index] = line[index] == UInt8(ascii: "a") ? UInt8(ascii: "b") : UInt8(ascii: "a")
            let result = outcome(String(decoding: tampered, as: UTF8.self))
            #expect(result == "auth_failed" || result == "invalid_json", "byte \(index)")
        }
    }

    @Test func hmacMustBeTheLastMember() {
        let payload = #"{"action":"ping"}"#
        let mac = Array(payload.utf8).withUnsafeBytes { FrameSigner(secret: secret).hexMAC($0) }
        #expect(outcome(#"{"hmac":""# + mac + #"","action":"ping"}"#) == "auth_failed")
    }

    @Test func constantTimeCompare() {
        #expect(FrameSigner.constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!FrameSigner.constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!FrameSigner.constantTimeEqual([1, 2], [1, 2, 3]))
    }

    @Test func randomSecretsAreFreshHex() {
        let first = FrameSigner.randomSecret()
        #expect(first.count == 64)
        #expect(first != FrameSigner.randomSecret())
    }
}

extension String {
    /// Upper-cases the 64 hex digits of the trailing hmac member.
    fileprivate func replacingOccurrences(ofHexIn line: String) -> String {
        let prefix = line.dropLast(66)
        let mac = line.suffix(66).dropLast(2)
        return prefix + mac.uppercased() + "\"}"
    }
}
