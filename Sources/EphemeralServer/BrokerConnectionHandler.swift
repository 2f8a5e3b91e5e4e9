import EphemeralStore
import EphemeralWire
import Logging
import NIOCore

/// Serves one client connection: each framed request gets exactly one reply, in order.
///
/// The replies to a read burst's requests go into one buffer, kept for the connection's lifetime, and are written
/// and flushed once when the burst ends: no buffer allocated per reply, one write per burst. Its per-request state
/// is `@exclusivity(unchecked)`, like ``BrokerCore``'s.
///
/// Memory per connection is bounded whatever the peer does: before each request the handler checks the reply
/// bytes not yet handed to the socket (this burst's, and those held behind a parked request) and whether the
/// channel is writable (the peer reads); past ``replyBudget`` or while it is not, it stops taking requests and
/// stops reading, and goes on when the replies have drained. A peer that shuts down its writing side
/// (`shutdown(SHUT_WR)`) still gets every reply, parked ones included, and the connection closes once they are
/// flushed.
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
    /// The bytes of replies held in `held` (ready, waiting for an earlier reply).
    @exclusivity(unchecked) private var heldBytes = 0
    /// Whether requests are not being taken because replies wait to drain.
    private var paused = false
    /// The channel's writability as its last event said (a field read per request, where asking the channel is a
    /// call through an existential and an atomic load).
    @exclusivity(unchecked) private var writable = true
    /// Whether replies were written since the last flush (see ``channelReadComplete(context:)``).
    @exclusivity(unchecked) private var wroteSinceFlush = false
    /// Whether the peer shut down its writing side: the connection closes once every reply is flushed.
    private var inputClosed = false
    /// How many of this connection's requests are parked in the broker (kept by ``BrokerCore``).
    var parked = 0

    /// The most reply bytes a connection may have waiting (unwritten, or held behind a parked request) before the
    /// broker takes no more of its requests: 1 MiB, plus the one reply that crossed it.
    static let replyBudget = 1 << 20

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
        heldBytes = 0
        received = nil
        lineTimer?.cancel()
        lineTimer = nil
        self.context = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard admitted != nil, !inputClosed else { return }
        var incoming = unwrapInboundIn(data)
        if received == nil {
            received = incoming
        } else {
            received!.writeBuffer(&incoming)
        }
        guard !paused else { return }  // kept, and taken when the replies have drained
        takeRequests(context: context)
    }

    /// Frames and answers the requests received, until they run out or replies must drain first.
    private func takeRequests(context: ChannelHandlerContext) {
        guard received != nil else { return }
        var lineEnded = false
        reading = true
        defer {
            reading = false
            writeOutbound(context: context)
        }
        while true {
            if outbound.readableBytes + heldBytes > Self.replyBudget || !writable {
                pause(context: context)
                return
            }
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
                if !inputClosed { timeLine(begun: framer.isMidLine, restarted: lineEnded, context: context) }
                return
            }
        }
    }

    /// Stops taking requests and reading until the replies waiting have drained.
    private func pause(context: ChannelHandlerContext) {
        paused = true
        context.channel.setOption(.autoRead, value: false).whenComplete { _ in }
        lineTimer?.cancel()  // the peer is not slow: we are not reading
        lineTimer = nil
        lineStarted = nil
        writeOutbound(context: context)
        context.flush()
        // The socket may have taken it all (a peer that reads fast): then no writability change will come to
        // resume, so resume in a moment, once this read burst is over.
        if writable, heldBytes <= Self.replyBudget { goOnSoon(context: context) }
    }

    /// In a moment, outside whatever runs now (a flush, another connection's request): takes requests again if
    /// paused, or closes a half-closed connection that is done.
    private func goOnSoon(context: ChannelHandlerContext) {
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            if handler.value.paused {
                handler.value.resumeIfDrained()
            } else if let context = handler.value.context {
                handler.value.closeIfFinished(context: context)
            }
        }
    }

    /// Takes requests again once the replies waiting fit the budget and the peer reads.
    private func resumeIfDrained() {
        guard paused, let context, heldBytes <= Self.replyBudget, writable else { return }
        paused = false
        takeRequests(context: context)
        context.flush()
        if !paused {
            if !inputClosed { context.channel.setOption(.autoRead, value: true).whenComplete { _ in } }
            closeIfFinished(context: context)
        }
    }

    /// After the peer's half-close: closes once no request is parked and every reply is written.
    private func closeIfFinished(context: ChannelHandlerContext) {
        guard inputClosed, !paused, held.isEmpty else { return }
        writeOutbound(context: context)
        let channel = context.channel
        // An empty write completes after every earlier one: only then is it safe to close.
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case .inputClosed? = event as? ChannelEvent else {
            return context.fireUserInboundEventTriggered(event)
        }
        inputClosed = true
        lineTimer?.cancel()
        lineTimer = nil
        lineStarted = nil
        if !paused { takeRequests(context: context) }
        context.flush()
        closeIfFinished(context: context)
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
            if replied { heldBytes += reply.readableBytes }
        }
        // Earlier replies this request made ready (it released what they waited for) follow in order.
        while let first = held.first, var ready = first.reply {
            held.removeFirst()
            heldBytes -= ready.readableBytes
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
        wroteSinceFlush = true
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
    /// - Parameter flush: Whether to flush now; otherwise the caller calls ``flushDelivered()`` when its batch is done.
    func deliver(_ reply: ByteBuffer, sequence: UInt64, flush: Bool = true) {
        guard let context, let position = held.firstIndex(where: { $0.sequence == sequence }) else { return }
        held[position].reply = reply
        heldBytes += reply.readableBytes
        guard !reading else { return }  // the burst being read writes it, in order, after the request now running
        while let first = held.first, let ready = first.reply {
            held.removeFirst()
            heldBytes -= ready.readableBytes
            context.write(wrapOutboundOut(ready), promise: nil)
        }
        if flush { flushDelivered() }
    }

    /// Flushes replies delivered, and goes on with requests or closes if they were what it waited for.
    func flushDelivered() {
        guard let context else { return }
        context.flush()
        if paused || inputClosed { goOnSoon(context: context) }
    }

    /// Flushes what this read burst wrote. Only that: NIO fires this at end of file too, and a flush there that
    /// fails (the peer is gone) closes the channel under NIO's own half-closure handling, which asserts.
    func channelReadComplete(context: ChannelHandlerContext) {
        if wroteSinceFlush {
            wroteSinceFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    /// Requests are taken again once the peer has read enough of its replies for the channel to be writable: in a
    /// moment, since NIO reports this from inside a flush, perhaps one that delivers another connection's replies.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        writable = context.channel.isWritable
        if writable, paused { goOnSoon(context: context) }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        core.logger.debug("connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}
