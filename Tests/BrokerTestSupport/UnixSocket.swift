#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Fills the listen backlog of a server that is not accepting (stopped): non-blocking connections are made until
/// the kernel answers `EAGAIN`. Close the returned descriptors when done.
/// - Returns: The connections that made it into the backlog.
public func fillListenBacklog(of path: String, atMost limit: Int = 10_000) -> [Int32] {
    var descriptors: [Int32] = []
    while descriptors.count < limit {
        let descriptor = UnixSocket.make()
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        guard UnixSocket.connect(descriptor, to: path) == 0 else {
            close(descriptor)
            break
        }
        descriptors.append(descriptor)
    }
    return descriptors
}

/// The raw Unix-socket calls the test doubles share.
enum UnixSocket {
    /// A new stream socket that child processes do not inherit.
    static func make() -> Int32 {
        #if canImport(Glibc)
            return socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
            let descriptor = socket(AF_UNIX, SOCK_STREAM, 0)
            if descriptor >= 0 { _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC) }
            return descriptor
        #endif
    }

    /// `connect` to `path`; returns 0 or -1 with `errno` set.
    static func connect(_ descriptor: Int32, to path: String) -> Int32 {
        withAddress(path) { address, length in
            #if canImport(Glibc)
                Glibc.connect(descriptor, address, length)
            #else
                Darwin.connect(descriptor, address, length)
            #endif
        }
    }

    /// `send` without SIGPIPE (a closed peer is `EPIPE`); returns the count written or -1 with `errno` set.
    static func send(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
        #if canImport(Glibc)
            return Glibc.send(descriptor, bytes.baseAddress!, bytes.count, Int32(MSG_NOSIGNAL))
        #else
            return Darwin.send(descriptor, bytes.baseAddress!, bytes.count, 0)
        #endif
    }

    /// `bind` to `path`; returns 0 or -1 with `errno` set.
    static func bind(_ descriptor: Int32, to path: String) -> Int32 {
        withAddress(path) { address, length in
            #if canImport(Glibc)
                Glibc.bind(descriptor, address, length)
            #else
                Darwin.bind(descriptor, address, length)
            #endif
        }
    }

    private static func withAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            errno = ENAMETOOLONG
            return -1
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
}
