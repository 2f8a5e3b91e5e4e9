import EphemeralWire
import NIOCore
import NIOEmbedded
import Testing

@Suite("Line framing")
struct LineFrameDecoderTests {
    private func frames(_ chunks: [[UInt8]], limit: Int = 16) throws -> [String] {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(LineFrameDecoder(maxLineBytes: limit)))
        var out: [String] = []
        for chunk in chunks {
            try channel.writeInbound(ByteBuffer(bytes: chunk))
            while let frame = try channel.readInbound(as: RequestFrame.self) {
                switch frame {
                case .line(let buffer): out.append(String(buffer: buffer))
                case .oversized: out.append("<oversized>")
                }
            }
        }
        _ = try channel.finish()
        return out
    }

    @Test func joinsAUTF8CharacterSplitAcrossReads() throws {
        let text = Array("é😀\n".utf8)
        let result = try frames([Array(text[0..<1]), Array(text[1..<3]), Array(text[3...])])
        #expect(result == ["é😀"])
    }

    @Test func manyLinesInOneReadAndCRLF() throws {
        #expect(try frames([Array("a\r\nb\nc".utf8), Array("\n".utf8)]) == ["a", "b", "c"])
    }

    @Test func anOversizedLineIsReportedOnceAndTheNextLineStillWorks() throws {
        let long = [UInt8](repeating: UInt8(ascii: "x"), count: 40)
        let result = try frames([Array(long[0..<10]), Array(long[10...]), Array("\nok\n".utf8)])
        #expect(result == ["<oversized>", "ok"])
    }

    @Test func anOversizedLineInOneChunk() throws {
        #expect(try frames([Array((String(repeating: "y", count: 17) + "\nz\n").utf8)]) == ["<oversized>", "z"])
        #expect(
            try frames([Array((String(repeating: "y", count: 16) + "\r\n").utf8)]) == [
                String(repeating: "y", count: 16)
            ])
    }
}

@Suite("Compressed values")
struct ValueCompressionTests {
    @Test func roundTripsAndMeasuresTheDecompressedSize() throws {
        let json = Array(("{\"pad\":\"" + String(repeating: "z", count: 5000) + "\"}").utf8)
        let compressed = ValueCompression.compress(json)
        #expect(compressed.count < json.count)
        #expect(try ValueCompression.decompress(compressed, limit: 10_000) == json)
        #expect(try ValueCompression.decompressedSize(of: compressed, limit: json.count) == json.count)
    }

    @Test func aGzipBombIsTooLargeWithoutInflatingIt() {
        let bomb = ValueCompression.compress(Array(("\"" + String(repeating: "0", count: 20_000_000) + "\"").utf8))
        #expect(bomb.count < 100_000)
        #expect(throws: BrokerError.self) { try ValueCompression.decompressedSize(of: bomb, limit: 262_144) }
        do {
            _ = try ValueCompression.decompressedSize(of: bomb, limit: 262_144)
        } catch {
            #expect(error.code == .tooLarge)
        }
    }

    @Test func refusesWhatIsNotBase64OfGzipOfJSON() {
        func code(_ value: String) -> String? {
            do { _ = try ValueCompression.decompress(Array(value.utf8), limit: 1000) } catch {
                return error.code.wireName
            }
            return nil
        }
        #expect(code("42") == "invalid_compressed_value")
        #expect(code("\"not base64!\"") == "invalid_compressed_value")
        #expect(code("\"aGVsbG8=\"") == "invalid_compressed_value")  // base64 of "hello", not gzip
        let notJSON = ValueCompression.compress(Array("not json".utf8))
        #expect(code(String(decoding: notJSON, as: UTF8.self)) == "invalid_compressed_value")
    }

    /// Exactly one complete gzip member: several members (each within the limit, which a reader's gunzip inflates
    /// one after another, 50 MiB from a 68 KB request), trailing bytes, a stream cut short anywhere or a wrong
    /// checksum are `invalid_compressed_value`.
    @Test func aCompressedValueIsExactlyOneCompleteGzipMember() throws {
        func gzip(_ json: String) -> [UInt8] {
            let quoted = ValueCompression.compress(Array(json.utf8))
            return Base64.decode(quoted[1..<(quoted.count - 1)])!
        }
        func code(_ gzip: [UInt8]) -> String? {
            let value = [UInt8(ascii: "\"")] + Base64.encode(gzip) + [UInt8(ascii: "\"")]
            do { _ = try ValueCompression.decompress(value, limit: 262_144) } catch { return error.code.wireName }
            return nil
        }
        let member = gzip("\"" + String(repeating: "0", count: 200_000) + "\"")
        #expect(code(member) == nil, "one member is a value")
        #expect(code(member + member) == "invalid_compressed_value", "two members")
        #expect(code(member + Array(repeating: member, count: 250).flatMap { $0 }) == "invalid_compressed_value")
        #expect(code(member + [0]) == "invalid_compressed_value", "a trailing byte")
        #expect(code(member + Array("junk".utf8)) == "invalid_compressed_value")
        for cut in [1, 4, 7, 8, 9, 20, member.count / 2] {
            #expect(code(Array(member.dropLast(cut))) == "invalid_compressed_value", "cut short by \(cut) bytes")
        }
        for offset in [member.count - 8, member.count - 5, member.count - 4, member.count - 1] {
            var corrupted = member
            corrupted[offset] ^= 0x01
            #expect(code(corrupted) == "invalid_compressed_value", "trailer byte \(offset) flipped")
        }
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926, "the standard check value")
    }

    @Test func base64MatchesRFC4648() {
        #expect(String(decoding: Base64.encode(Array("foobar".utf8)), as: UTF8.self) == "Zm9vYmFy")
        #expect(String(decoding: Base64.encode(Array("fo".utf8)), as: UTF8.self) == "Zm8=")
        #expect(Base64.decode(Array("Zm9vYg==".utf8)) == Array("foob".utf8))
        #expect(Base64.decode(Array("Zm9v!".utf8)) == nil)
    }
}

@Suite("Writing JSON lines")
struct JSONLineWriterTests {
    /// The writer gathers small pieces before they go into the buffer: lines around and past its 128 gathered bytes,
    /// escapes, nesting, numbers and an abandoned line must come out exactly as written piece by piece.
    @Test(arguments: [0, 1, 60, 100, 120, 127, 128, 129, 200, 1000])
    func gatheredPiecesComeOutExactly(size: Int) throws {
        let raw = "\"" + String(repeating: "v", count: size) + "\""
        let text = String(repeating: "x", count: size) + "\"quoted\"\n\\"
        var writer = JSONLineWriter.ok(into: ByteBuffer(string: "earlier bytes stay;"))
        writer.member("value", rawJSON: Array(raw.utf8))
        writer.member("text", string: text)
        writer.beginObject("nested \"key\"")
        writer.member("n", int: -1234567890123)
        writer.member("d", double: 0.25)
        writer.member("flag", bool: false)
        writer.endObject()
        Array(raw.utf8).withUnsafeBytes { writer.member("again", rawJSON: $0) }
        let line = writer.finish(signer: nil, nonce: nil)
        let escaped = String(repeating: "x", count: size) + #"\"quoted\"\n\\"#
        let expected =
            #"earlier bytes stay;{"ok":true,"value":\#(raw),"text":"\#(escaped)","nested \"key\"":"#
            + #"{"n":-1234567890123,"d":0.25,"flag":false},"again":\#(raw)}"# + "\n"
        #expect(String(buffer: line) == expected)

        var abandoned = JSONLineWriter.ok(into: ByteBuffer(string: "kept"))
        abandoned.member("text", string: text)
        #expect(String(buffer: abandoned.abandon()) == "kept")
    }
}
