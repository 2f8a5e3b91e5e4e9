import EphemeralStore
import EphemeralWire
import Logging
import NIOCore

/// Serves one client connection: each framed request gets exactly one reply, in order.
///
/// Replies are written as requests are decoded and flushed once per read burst, so a pipelining client gets its
/// replies batched. Reading pauses while the peer is not reading its replies, so a slow reader cannot make the
/// broker buffer without bound.
final class BrokerConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let core: BrokerCore
    /// Frames requests in this handler: no separate decoder, so no boxing of each frame between handlers.
    private var framer: LineFramer
    /// Bytes received and not yet framed.
    private var received: ByteBuffer?
    private var pendingRead = false
    private var context: ChannelHandlerContext?
    /// The connection's identity as an owner of leases; `nil` for a connection refused at the cap.
    private(set) var admitted: OwnerID?
    /// The connection's identity as an owner of leases.
    var owner: OwnerID { admitted ?? 0 }
    /// Replies not yet written because an earlier request's reply is still pending: replies keep request order.
    private var held = CircularBuffer<(sequence: UInt64, reply: ByteBuffer?)>()
    private var nextSequence: UInt64 = 0

    init(core: BrokerCore, maxLineBytes: Int) {
        self.core = core
        self.framer = LineFramer(maxLineBytes: maxLineBytes)
    }

    var allocator: ByteBufferAllocator { context?.channel.allocator ?? ByteBufferAllocator() }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        admitted = core.connectionOpened(self)
        guard admitted != nil else {
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(core.refusal(allocator: channel.allocator))).whenComplete { _ in
                channel.close(promise: nil)
            }
            return
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let admitted { core.connectionClosed(admitted) }
        held.removeAll()
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
        while true {
            switch framer.next(&received!) {
            case .frame(let frame): respond(to: frame, context: context)
            case .skipped: continue
            case .needMoreData:
                if received!.readableBytes == 0 {
                    received = nil
                } else if received!.readerIndex > 65_536 {
                    received!.discardReadBytes()
                }
                return
            }
        }
    }

    private func respond(to frame: RequestFrame, context: ChannelHandlerContext) {
        nextSequence += 1
        let sequence = nextSequence
        let reply = core.respond(to: frame, allocator: context.channel.allocator, connection: self, sequence: sequence)
        if held.isEmpty, let reply {
            context.write(wrapOutboundOut(reply), promise: nil)
        } else {
            held.append((sequence, reply))
        }
    }

    /// Delivers a reply that came later (a lease granted after a wait), then every reply it was holding up.
    func deliver(_ reply: ByteBuffer, sequence: UInt64) {
        guard let context, let position = held.firstIndex(where: { $0.sequence == sequence }) else { return }
        held[position].reply = reply
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

    func read(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, pendingRead {
            pendingRead = false
            context.read()
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        core.logger.debug("connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}
