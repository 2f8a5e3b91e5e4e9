import EphemeralStore
import EphemeralWire
import Logging
import NIOCore

/// Serves one client connection: each framed request gets exactly one reply, in order.
///
/// The replies to a read burst's requests go into one buffer, kept for the connection's lifetime, and are written
/// and flushed once when the burst ends: no buffer allocated per reply, one write per burst. Reading pauses while
/// the peer is not reading its replies, so a slow reader cannot make the broker buffer without bound. Its
/// per-request state is `@exclusivity(unchecked)`, like ``BrokerCore``'s.
final class BrokerConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let core: BrokerCore
    /// Frames requests in this handler: no separate decoder, so no boxing of each frame between handlers.
    @exclusivity(unchecked) private var framer: LineFramer
    /// Bytes received and not yet framed.
    @exclusivity(unchecked) private var received: ByteBuffer?
    private var context: ChannelHandlerContext?
    /// The connection's identity as an owner of leases; `nil` for a connection refused at the cap.
    private(set) var admitted: OwnerID?
    /// The connection's identity as an owner of leases.
    var owner: OwnerID { admitted ?? 0 }
    /// Replies not yet written because an earlier request's reply is still pending: replies keep request order.
    @exclusivity(unchecked) private var held = CircularBuffer<(sequence: UInt64, reply: ByteBuffer?)>()
    @exclusivity(unchecked) private var nextSequence: UInt64 = 0
    /// The replies to the read burst now being handled, written when it ends; reused from burst to burst. Its
    /// readable bytes are the replies not yet written.
    @exclusivity(unchecked) private var outbound = ByteBuffer()
    /// Whether a read burst is being handled: a held reply delivered meanwhile (by a request of this same burst)
    /// stays in `held` until that request's turn is over, so it never overtakes a reply already in `outbound`.
    @exclusivity(unchecked) private var reading = false
    /// Closes the connection if the line now arriving is not finished in time (a slowloris peer).
    private var lineTimer: Scheduled<Void>?
    /// When the line now arriving began; `nil` between lines.
    @exclusivity(unchecked) private var lineStarted: NIODeadline?
    private let requestTimeout: TimeAmount

    init(core: BrokerCore, maxLineBytes: Int) {
        self.core = core
        self.framer = LineFramer(maxLineBytes: maxLineBytes)
        self.requestTimeout = .milliseconds(core.configuration.requestTimeout)
    }

    var allocator: ByteBufferAllocator { context?.channel.allocator ?? ByteBufferAllocator() }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        outbound = context.channel.allocator.buffer(capacity: 512)
    }

    func channelActive(context: ChannelHandlerContext) {
        admitted = core.connectionOpened(self)
        guard admitted != nil else {
            closeWith(core.refusal, context: context, keepReading: true)
            return
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let admitted { core.connectionClosed(admitted) }
        held.removeAll()
        lineTimer?.cancel()
        lineTimer = nil
        self.context = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard admitted != nil else { return }
        var incoming = unwrapInboundIn(data)
        if received == nil {
            received = incoming
        } else {
            received!.writeBuffer(&incoming)
        }
        var lineEnded = false
        reading = true
        defer {
            reading = false
            writeOutbound(context: context)
        }
        while true {
            switch framer.next(&received!) {
            case .frame(let frame):
                lineEnded = true
                respond(to: frame, context: context)
            case .skipped:
                lineEnded = true
            case .needMoreData:
                if received!.readableBytes == 0 {
                    received = nil
                } else if received!.readerIndex > 65_536 {
                    received!.discardReadBytes()
                }
                timeLine(begun: framer.isMidLine, restarted: lineEnded, context: context)
                return
            }
        }
    }

    /// Keeps one deadline for the line now arriving: it starts when the line begins and holds while the line
    /// trickles in. A line still unfinished at the deadline is answered `request_timeout` and the connection
    /// closed, so a peer dribbling bytes cannot hold a connection (and its buffer) forever. Connections between
    /// lines are never timed out. One timer per connection at most, re-armed only when it fires, so pipelined
    /// traffic that ends its reads mid-line schedules nothing per read.
    private func timeLine(begun: Bool, restarted: Bool, context: ChannelHandlerContext) {
        guard begun else {
            lineStarted = nil
            return
        }
        if restarted || lineStarted == nil { lineStarted = .now() }
        if lineTimer == nil { armLineTimer(context: context) }
    }

    private func armLineTimer(context: ChannelHandlerContext) {
        guard let started = lineStarted else { return }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        lineTimer = context.eventLoop.scheduleTask(deadline: started + requestTimeout) {
            handler.value.lineTimerFired()
        }
    }

    private func lineTimerFired() {
        lineTimer = nil
        guard let context, let started = lineStarted else { return }
        guard NIODeadline.now() >= started + requestTimeout else {
            armLineTimer(context: context)  // a newer line began since: its own deadline
            return
        }
        let limit = requestTimeout.nanoseconds / 1_000_000
        core.logger.warning(
            "closed a connection whose request line did not arrive in time", metadata: ["request_timeout_ms": "\(limit)"])
        closeWith(BrokerError(.requestTimeout, "the request line did not arrive within \(limit) ms"), context: context)
    }

    private func respond(to frame: RequestFrame, context: ChannelHandlerContext) {
        nextSequence += 1
        let sequence = nextSequence
        if held.isEmpty {
            prepareOutbound()
            if !core.respond(to: frame, into: &outbound, connection: self, sequence: sequence) {
                held.append((sequence, nil))
            }
        } else {
            var reply = context.channel.allocator.buffer(capacity: 256)
            let replied = core.respond(to: frame, into: &reply, connection: self, sequence: sequence)
            held.append((sequence, replied ? reply : nil))
        }
        // Earlier replies this request made ready (it released what they waited for) follow in order.
        while let first = held.first, var ready = first.reply {
            held.removeFirst()
            prepareOutbound()
            outbound.writeBuffer(&ready)
        }
    }

    /// Starts `outbound` over when it holds no unwritten reply: by then the channel has written and released the
    /// last ones, so it is cleared in place.
    private func prepareOutbound() {
        if outbound.readableBytes == 0 { outbound.clear() }
    }

    private func writeOutbound(context: ChannelHandlerContext) {
        guard outbound.readableBytes > 0 else { return }
        context.write(wrapOutboundOut(outbound), promise: nil)
        outbound.moveReaderIndex(to: outbound.writerIndex)  // written: only our indices move, the bytes are shared
    }

    /// Writes one unsigned error line that answers no particular request, then closes the connection.
    ///
    /// With `keepReading` (a connection refused at the cap) only the sending side is closed at once: requests the
    /// client wrote meanwhile are read and dropped instead of resetting the connection, so the client always reads
    /// the refusal (and knows none of its requests ran); the connection ends when the client closes it, or after a
    /// second.
    private func closeWith(_ error: BrokerError, context: ChannelHandlerContext, keepReading: Bool = false) {
        core.metrics.recordClosed(error)
        let channel = context.channel
        let reply = JSONLineWriter.error(error, into: channel.allocator.buffer(capacity: 96))
        context.writeAndFlush(wrapOutboundOut(reply.finish(signer: nil, nonce: nil))).whenComplete { _ in
            guard keepReading else { return channel.close(promise: nil) }
            channel.close(mode: .output, promise: nil)
            channel.eventLoop.scheduleTask(in: .seconds(1)) { channel.close(promise: nil) }
        }
    }

    /// Delivers a reply that came later (a lease granted after a wait), then every reply it was holding up.
    func deliver(_ reply: ByteBuffer, sequence: UInt64) {
        guard let context, let position = held.firstIndex(where: { $0.sequence == sequence }) else { return }
        held[position].reply = reply
        guard !reading else { return }  // the burst being read writes it, in order, after the request now running
        while let first = held.first, let ready = first.reply {
            held.removeFirst()
            context.write(wrapOutboundOut(ready), promise: nil)
        }
        context.flush()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
        context.fireChannelReadComplete()
    }

    /// Reading stops while the peer is not reading its replies (the channel is not writable) and resumes once it
    /// does: a slow reader cannot make the broker buffer replies without bound.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        try? context.channel.syncOptions?.setOption(.autoRead, value: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        core.logger.debug("connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}
