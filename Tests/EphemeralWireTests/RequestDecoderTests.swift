import EphemeralWire
import Testing

@Suite("Request decoding")
struct RequestDecoderTests {
    private func decode(_ line: String, secret: String? = nil) throws(BrokerError) -> Request {
        let bytes = Array(line.utf8)
        let decoder = RequestDecoder(signer: secret.map(FrameSigner.init(secret:)))
        let result = bytes.withUnsafeBytes { raw -> Result<Request, BrokerError> in
            do throws(BrokerError) { return .success(try decoder.decode(raw)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    private func code(_ line: String, secret: String? = nil) -> String? {
        do {
            let request = try decode(line, secret: secret)
            if case .failure(let error) = request.command { return error.code.wireName }
            return nil
        } catch {
            return error.code.wireName
        }
    }

    @Test func decodesEveryAction() throws {
        #expect(try decode(#"{"action":"ping"}"#).command.get() == .ping)
        #expect(try decode(#" {"action":"get","key":"k"} "#).command.get() == .get(key: "k"))
        #expect(try decode(#"{"action":"del","key":"k"}"#).command.get() == .del(key: "k"))
        let set = try decode(#"{"action":"set","key":"k","value":{ "a" : [1, 2.5e3, "x y"] },"ttl":100}"#)
        #expect(
            try set.command.get() == .set(SetCommand(key: "k", value: Array(#"{"a":[1,2.5e3,"x y"]}"#.utf8), ttl: 100)))
        #expect(
            try decode(#"{"action":"lease","key":"p","workerId":"w","ttl":5}"#).command.get()
                == .lease(key: "p", workerId: "w", ttl: 5))
        #expect(try decode(#"{"action":"release","workerId":"w"}"#).command.get() == .release(workerId: "w"))
        for action in ["list", "stats", "health", "metrics"] {
            #expect(try decode(#"{"action":"\#(action)"}"#).action?.rawValue == action)
        }
    }

    @Test func namesEveryMalformedRequest() {
        #expect(code("{") == "invalid_json")
        #expect(code("") == "invalid_json")
        #expect(code(#"{"action":"ping"} x"#) == "invalid_json")
        #expect(code("[1,2]") == "invalid_request")
        #expect(code("null") == "invalid_request")
        #expect(code("42") == "invalid_request")
        #expect(code(#""ping""#) == "invalid_request")
        #expect(code(#"{}"#) == "invalid_request")
        #expect(code(#"{"action":7}"#) == "invalid_request")
        #expect(code(#"{"action":"explode"}"#) == "unknown_action")
        #expect(code(#"{"action":"get","key":"a\"#) == "invalid_json", "a trailing backslash ends the scan")
        #expect(code(#"{"action":"get"}"#) == "key_required")
        #expect(code(#"{"action":"get","key":5}"#) == "key_required")
        #expect(code(#"{"action":"set","key":"k","ttl":10}"#) == "invalid_request")
        #expect(code(#"{"action":"set","key":"k","value":1,"ttl":"10"}"#) == "invalid_ttl")
        #expect(code(#"{"action":"set","key":"k","value":1,"ttl":10,"compressed":"yes"}"#) == "invalid_request")
        #expect(code(#"{"action":"lease","key":"","workerId":"w"}"#) == "key_and_worker_required")
        #expect(code(#"{"action":"lease","key":"p"}"#) == "key_and_worker_required")
        #expect(code(#"{"action":"release"}"#) == "worker_required")
        #expect(code("{\"action\":\"get\",\"key\":\"a\u{01}\"}") == "invalid_json")
        #expect(code(#"{"action":"get","key":"\ud800"}"#) == "invalid_json")
        #expect(
            code(String(repeating: "[", count: 1000) + String(repeating: "]", count: 1000)) == "invalid_request"
                || code(String(repeating: "[", count: 1000)) == "invalid_json")
    }

    @Test func refusesInvalidUTF8() {
        let bytes: [UInt8] = Array(#"{"action":"get","key":""#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8)
        let result = bytes.withUnsafeBytes { raw -> Result<Request, BrokerError> in
            do throws(BrokerError) { return .success(try RequestDecoder(signer: nil).decode(raw)) } catch {
                return .failure(error)
            }
        }
        #expect(throws: BrokerError(.invalidJSON, "invalid UTF-8")) { try result.get() }
    }

    @Test func deepNestingIsRefusedWithoutCrashing() {
        let deep =
            #"{"action":"set","key":"k","ttl":1,"value":"# + String(repeating: "[", count: 100_000)
            + String(repeating: "]", count: 100_000) + "}"
        #expect(code(deep) == "invalid_json")
    }

    @Test func decodesEscapesAndUnicode() throws {
        let request = try decode(#"{"action":"get","key":"h\u00e9llo \ud83d\ude00 \"q\" \\ \n"}"#)
        #expect(try request.command.get() == .get(key: "héllo 😀 \"q\" \\ \n"))
    }

    @Test func lastDuplicateMemberWins() throws {
        #expect(try decode(#"{"action":"get","key":"a","key":"b"}"#).command.get() == .get(key: "b"))
        #expect(try decode(#"{"action":"get","key":"a","k\u0065y":"b"}"#).command.get() == .get(key: "b"))
    }

    /// Member names are matched as their bytes unless written with escapes; escaped, they are decoded first, as
    /// JSON.parse would.
    @Test func escapedMemberNamesMatchAsTheirText() throws {
        #expect(try decode(#"{"\u0061ction":"get","k\u0065y":"x"}"#).command.get() == .get(key: "x"))
        #expect(try decode(#"{"action":"set","key":"k","valu\u0065":"\"v\"","ttl":1000}"#).command.get()
            == .set(SetCommand(key: "k", value: Array(#""\"v\"""#.utf8), ttl: 1000)))
        #expect(throws: BrokerError.self) { try decode(#"{"action":"get","ke":"x"}"#).command.get() }
        #expect(throws: BrokerError.self) { try decode(#"{"action":"get","keys":"x"}"#).command.get() }
    }

    /// Strings are scanned eight bytes at a time: whatever needs a closer look (an escape, a control character, a
    /// multi-byte character, an invalid byte, the closing quote) is found at every position around a word's edges.
    @Test func stringsAreScannedRightWhereverTheirSpecialBytesFall() throws {
        for before in 0..<20 {
            for after in [0, 1, 7, 8, 9] {
                let head = String(repeating: "a", count: before), tail = String(repeating: "b", count: after)
                func key(_ middle: String) -> Command? {
                    try? decode(#"{"action":"get","key":"\#(head)\#(middle)\#(tail)"}"#).command.get()
                }
                #expect(key(#"\n"#) == .get(key: head + "\n" + tail))
                #expect(key(#"\""#) == .get(key: head + "\"" + tail))
                #expect(key("é€😀") == .get(key: head + "é€😀" + tail))
                #expect(key("~ }") == .get(key: head + "~ }" + tail))
                #expect(code(#"{"action":"get","key":"\#(head)\#u{01}\#(tail)"}"#) == "invalid_json")
                #expect(code(#"{"action":"get","key":"\#(head)\#u{1F}\#(tail)"}"#) == "invalid_json")
                #expect(code(#"{"action":"get","key":"\#(head)\#u{7F}\#(tail)"}"#) == nil)  // DEL is allowed
                var bytes = Array(#"{"action":"get","key":"\#(head)X\#(tail)"}"#.utf8)
                bytes[bytes.firstIndex(of: UInt8(ascii: "X"))!] = 0xFF
                let invalid = bytes.withUnsafeBytes { raw -> BrokerError? in
                    do throws(BrokerError) {
                        _ = try RequestDecoder(signer: nil).decode(raw)
                        return nil
                    } catch { return error }
                }
                #expect(invalid?.code.wireName == "invalid_json", "\(before) \(after)")
            }
        }
    }

    /// Action names are matched as bytes, except names written with escapes, which are decoded first.
    @Test func actionNamesMatchAsTheirTextWhateverTheSpelling() throws {
        for action in Action.allCases {
            #expect(try decode(#"{"action":"\#(action.rawValue)"}"#).action == action)
        }
        #expect(try decode(#"{"action":"g\u0065t","key":"x"}"#).command.get() == .get(key: "x"))
        #expect(try decode(#"{"action":"define\u005fpool"}"#).action == .definePool)
        for near in ["ge", "gett", "GET", "", "get ", "define-pool", "g\\\\et"] {
            #expect(code(#"{"action":"\#(near)"}"#) == "unknown_action", "\(near)")
        }
        #expect(code(#"{"action":7}"#) == "invalid_request")
    }
}
