import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One framed request line, or the news that a line went over the byte limit.
public enum RequestFrame: Sendable {
    /// A complete line without its `\n` (and without a trailing `\r`).
    case line(ByteBuffer)
    /// A line exceeded the limit; its bytes were dropped as they arrived and it gets one `too_large` reply.
    case oversized
}

/// Splits a byte stream into newline-terminated lines of at most `maxLineBytes` bytes.
///
/// Bytes are only examined once, a line is handed on whole (so a UTF-8 character split across reads is joined
/// before anyone decodes it), and a line over the limit is reported as soon as it crosses the limit and then
/// discarded up to its newline, never buffered whole.
public struct LineFramer: Sendable {
    /// What one step of framing found.
    public enum Step: Sendable {
        /// A frame to answer.
        case frame(RequestFrame)
        /// The rest of an oversized line was dropped; look again.
        case skipped
        /// No complete line yet.
        case needMoreData
    }

    private let maxLineBytes: Int
    private var scanned = 0
    private var discarding = false

    /// Creates a framer.
    /// - Parameter maxLineBytes: The longest line accepted, in bytes, not counting its line ending.
    public init(maxLineBytes: Int) {
        self.maxLineBytes = maxLineBytes
    }

    /// Whether a line has begun and not ended: bytes of it were seen (or are being discarded) and its newline has
    /// not arrived. Accurate after ``next(_:)`` returned ``Step/needMoreData``.
    public var isMidLine: Bool { discarding || scanned > 0 }

    /// Takes the next frame off the front of `buffer`.
    /// - Parameter buffer: The bytes received so far; consumed bytes are moved past.
    /// - Returns: What was found.
    public mutating func next(_ buffer: inout ByteBuffer) -> Step {
        // One look at the bytes finds the newline and whether a `\r` precedes it: each access to a ByteBuffer's
        // storage pays a dynamic exclusivity check.
        let scanned = self.scanned
        let found = buffer.withUnsafeReadableBytes { bytes -> (newline: Int, carriageReturn: Bool)? in
            guard bytes.count > scanned,
                let hit = memchr(bytes.baseAddress! + scanned, Int32(UInt8(ascii: "\n")), bytes.count - scanned)
            else { return nil }
            let newline = UnsafeRawPointer(hit) - UnsafeRawPointer(bytes.baseAddress!)
            return (newline, newline > 0 && bytes[newline - 1] == UInt8(ascii: "\r"))
        }
        guard let (length, carriageReturn) = found else {
            if discarding {
                buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
                self.scanned = 0
            } else if buffer.readableBytes > maxLineBytes + 1 {  // + 1: room for a `\r` before the newline
                buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
                self.scanned = 0
                discarding = true
                return .frame(.oversized)
            } else {
                self.scanned = buffer.readableBytes
            }
            return .needMoreData
        }
        self.scanned = 0
        if discarding {
            discarding = false
            buffer.moveReaderIndex(forwardBy: length + 1)
            return .skipped
        }
        let lineLength = carriageReturn ? length - 1 : length
        if lineLength > maxLineBytes {
            buffer.moveReaderIndex(forwardBy: length + 1)
            return .frame(.oversized)
        }
        let line = buffer.getSlice(at: buffer.readerIndex, length: lineLength)!
        buffer.moveReaderIndex(forwardBy: length + 1)
        return .frame(.line(line))
    }
}

/// ``LineFramer`` as a NIO decoder, for pipelines that hand frames to a next handler (the client's).
public struct LineFrameDecoder: ByteToMessageDecoder {
    /// Frames produced.
    public typealias InboundOut = RequestFrame

    private var framer: LineFramer

    /// Creates a decoder.
    /// - Parameter maxLineBytes: The longest line accepted, in bytes, not counting its line ending.
    public init(maxLineBytes: Int) {
        self.framer = LineFramer(maxLineBytes: maxLineBytes)
    }

    /// Decodes as many frames as the buffer holds.
    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        switch framer.next(&buffer) {
        case .frame(let frame):
            context.fireChannelRead(Self.wrapInboundOut(frame))
            return .continue
        case .skipped:
            return .continue
        case .needMoreData:
            return .needMoreData
        }
    }

    /// At end of input a partial line is dropped: the peer went away mid-request.
    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
        -> DecodingState
    {
        while try decode(context: context, buffer: &buffer) == .continue {}
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
        return .needMoreData
    }
}
