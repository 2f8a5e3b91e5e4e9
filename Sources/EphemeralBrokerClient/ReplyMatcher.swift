import EphemeralWire
import NIOCore

/// Where one request's reply goes. Completing it twice is harmless: a timeout, a failed write and a closed
/// connection may all race to fail it, and only the first outcome counts.
final class ReplySlot: Sendable {
    private let promise: EventLoopPromise<[UInt8]>
    private let done = Locked(false)

    init(eventLoop: any EventLoop) {
        promise = eventLoop.makePromise(of: [UInt8].self)
    }

    var futureResult: EventLoopFuture<[UInt8]> { promise.futureResult }

    func succeed(_ line: [UInt8]) {
        if claim() { promise.succeed(line) }
    }

    func fail(_ error: BrokerError) {
        if claim() { promise.fail(error) }
    }

    private func claim() -> Bool {
        done.withLock { done in
            defer { done = true }
            return !done
        }
    }
}

/// A request line on its way out, with the slot its reply will fill.
struct PendingRequest {
    var line: ByteBuffer
    var reply: ReplySlot
}

/// Matches reply lines to the requests written before them, first in, first out.
///
/// A request's promise is queued in the same event-loop step that writes it, so the queue's order is the wire's
/// order. A reply with no request waiting, or a connection that ends, fails every waiting request: nothing is ever
/// handed a reply that was meant for someone else.
final class ReplyMatcher: ChannelDuplexHandler {
    typealias InboundIn = RequestFrame
    typealias OutboundIn = PendingRequest
    typealias OutboundOut = ByteBuffer

    private var pending = CircularBuffer<ReplySlot>()
    /// Why the connection ended (refused at the broker's cap, or closed), once it has: every request waiting then,
    /// or written later, fails with it.
    private var ending: BrokerError?
    private static let refusal = BrokerError(.tooManyConnections, "the broker serves its maximum number of connections")
    private static let closed = BrokerError(.connectionFailed, "the connection to the broker closed")

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if let ending {
            // The write's promise first: its failure (never sent) must be known before the caller wakes.
            promise?.fail(ChannelError.ioOnClosedChannel)
            request.reply.fail(ending)
            return
        }
        pending.append(request.reply)
        context.write(wrapOutboundOut(request.line), promise: promise)
    }

    /// How a broker at its connection cap answers a new connection, before reading anything from it.
    private static let refusalPrefix = Array(#"{"ok":false,"error":"too_many_connections""#.utf8)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .line(let line) = unwrapInboundIn(data), line.readableBytesView.starts(with: Self.refusalPrefix) {
            // Refused at the cap: the broker ran none of the requests written, so every one may be sent again.
            end(with: Self.refusal)
            context.close(promise: nil)
            return
        }
        guard let promise = pending.popFirst() else {
            context.close(promise: nil)  // a reply nobody asked for: the stream can no longer be trusted
            return
        }
        switch unwrapInboundIn(data) {
        case .line(let buffer): promise.succeed(Array(buffer.readableBytesView))
        case .oversized: promise.fail(BrokerError(.invalidReply, "the broker's reply exceeds the client's limit"))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        end(with: ending ?? Self.closed)
        context.fireChannelInactive()
    }

    private func end(with error: BrokerError) {
        ending = error
        while let promise = pending.popFirst() { promise.fail(error) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
