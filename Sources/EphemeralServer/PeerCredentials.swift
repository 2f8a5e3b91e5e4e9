import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The user ID of the process at the other end of a Unix socket connection.
enum PeerCredentials {
    /// Asks the kernel who connected (`SO_PEERCRED` on Linux, `LOCAL_PEERCRED` on Darwin).
    static func userID(of channel: any Channel) -> EventLoopFuture<uid_t> {
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeFailedFuture(ChannelError.operationUnsupported)
        }
        #if os(Linux)
            let credentials: EventLoopFuture<LinuxPeerCredentials> = provider.unsafeGetSocketOption(
                level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(linuxSOPeerCred))
            return credentials.map { $0.uid }
        #else
            let credentials: EventLoopFuture<xucred> = provider.unsafeGetSocketOption(
                level: SocketOptionLevel(0), name: SocketOptionName(LOCAL_PEERCRED))
            return credentials.map { $0.cr_uid }
        #endif
    }
}

#if os(Linux)
    /// The layout of Linux's `struct ucred`, which Glibc's Swift overlay does not export.
    struct LinuxPeerCredentials {
        var pid: pid_t
        var uid: uid_t
        var gid: gid_t
    }

    /// `SO_PEERCRED` from `<asm-generic/socket.h>`.
    private let linuxSOPeerCred: Int32 = 17
#endif
