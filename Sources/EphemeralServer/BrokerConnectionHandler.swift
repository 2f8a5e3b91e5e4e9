import EphemeralWire
import Logging
import NIOCore

/// Serves one client connection: each framed request gets exactly one reply, in order.
///
/// Replies are written as requests are decoded and flushed once per read burst, so a pipelining client gets its
/// replies batched. Reading pauses while the peer is not reading its replies, so a slow reader cannot make the
/// broker buffer without bound.
final class BrokerConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = RequestFrame
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let core: BrokerCore
    private var pendingRead = false

    init(core: BrokerCore) {
        self.core = core
    }

    func channelActive(context: ChannelHandlerContext) {
        core.openConnections += 1
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        core.openConnections -= 1
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let reply = core.respond(to: unwrapInboundIn(data), allocator: context.channel.allocator)
        context.write(wrapOutboundOut(reply), promise: nil)
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
