// The floor: a server that answers every request line with a fixed `{"ok":true}` line and does nothing else,
// on one event loop like the broker. No broker on this protocol can be faster; it measures the transport.
import NIOCore
import NIOPosix

final class FixedReply: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private static let reply = Array(#"{"ok":true}"#.utf8) + [UInt8(ascii: "\n")]

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let lines = unwrapInboundIn(data).readableBytesView.reduce(0) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
        guard lines > 0 else { return }
        var out = context.channel.allocator.buffer(capacity: lines * Self.reply.count)
        for _ in 0..<lines { out.writeBytes(Self.reply) }
        context.write(wrapOutboundOut(out), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}

let path = CommandLine.arguments.dropFirst().first ?? "/tmp/eb-floor.sock"
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let server = try ServerBootstrap(group: group)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(FixedReply()) }
    }
    .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).wait()
print(path)
try server.closeFuture.wait()
