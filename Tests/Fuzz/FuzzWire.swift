// libFuzzer target over what a broker and a client read from the other side: the line framer, the request
// decoder with and without a secret (the MAC check), the reply parser, JSON compaction and compressed values.
// Built and run by Tests/Fuzz/run.sh; never part of a normal build.
import EphemeralWire
import NIOCore

private let secret = "fuzz-secret"
private let signer = FrameSigner(secret: secret)
private let signedDecoder = RequestDecoder(signer: signer)
private let plainDecoder = RequestDecoder(signer: nil)
private let maxLine = 512

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    guard let start, count > 0 else { return 0 }
    let input = UnsafeRawBufferPointer(start: start, count: count)
    // The first byte says where the stream is cut into two reads, so lines split across reads are covered.
    let stream = input.dropFirst()
    let cut = stream.startIndex + Int(input[0]) % (stream.count + 1)
    var framer = LineFramer(maxLineBytes: maxLine)
    var buffer = ByteBuffer(bytes: stream[stream.startIndex..<cut])
    frameAll(&framer, &buffer)
    buffer.writeBytes(stream[cut...])
    frameAll(&framer, &buffer)
    return 0
}

private func frameAll(_ framer: inout LineFramer, _ buffer: inout ByteBuffer) {
    while true {
        switch framer.next(&buffer) {
        case .frame(.line(let line)):
            precondition(line.readableBytes <= maxLine, "a frame longer than the limit")
            check(Array(line.readableBytesView))
        case .frame(.oversized), .skipped:
            continue
        case .needMoreData:
            return
        }
    }
}

private func check(_ line: [UInt8]) {
    line.withUnsafeBytes { bytes in
        _ = try? plainDecoder.decode(bytes)
        if let request = try? signedDecoder.decode(bytes), request.isSigned {
            // Only a correct MAC gets here (from the seed corpus): any changed byte before it must be refused.
            let body = lastHMACMember(in: line) ?? 0
            guard body > 0 else { return }
            var tampered = line
            let position = Int(line.count &* 31 % body)
            tampered[position] ^= 0x20
            tampered.withUnsafeBytes { tamperedBytes in
                let forged = try? signedDecoder.decode(tamperedBytes)
                precondition(forged?.isSigned != true, "a tampered line passed the MAC check")
            }
        }
    }
    _ = try? BrokerReply(line: line, signer: signer, nonce: "fuzz-nonce")
    _ = try? BrokerReply(line: line, signer: nil, nonce: nil)
    if let compact = JSONText.compact(line) {
        precondition(JSONText.compact(compact) == compact, "compacting is not idempotent")
    }
    _ = try? ValueCompression.decompress(line, limit: 4096)
}

/// Where the last `,"hmac"` starts: the signed body ends there.
private func lastHMACMember(in line: [UInt8]) -> Int? {
    let needle = Array(#","hmac""#.utf8)
    guard line.count >= needle.count else { return nil }
    for start in stride(from: line.count - needle.count, through: 0, by: -1)
    where line[start..<start + needle.count].elementsEqual(needle) {
        return start
    }
    return nil
}
