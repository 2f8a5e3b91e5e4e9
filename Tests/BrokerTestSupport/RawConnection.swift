import EphemeralWire
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A test's error: what went wrong, for the failure message.
public struct TestFailure: Error, CustomStringConvertible {
    /// The explanation.
    public let description: String
    /// Creates a failure.
    public init(_ description: String) { self.description = description }
}

/// A blocking Unix-socket connection that speaks raw NDJSON, so tests see exactly the bytes on the wire.
///
/// `@unchecked Sendable` so a test can hand one to a thread of its own (``onThread(_:)``); it is used by one
/// thread at a time.
public final class RawConnection: @unchecked Sendable {
    private var descriptor: Int32
    private var pending: [UInt8] = []

    /// Connects to `path`; every read gives up after `timeoutSeconds`.
    public init(path: String, timeoutSeconds: Int = 5) throws {
        descriptor = UnixSocket.make()
        guard descriptor >= 0 else { throw TestFailure("socket() failed") }  // deinit skips -1
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard UnixSocket.connect(descriptor, to: path) == 0 else {
            let code = errno
            // deinit runs for an initializer that throws once every property is set: close exactly once, there.
            throw TestFailure("connect(\(path)) failed: errno \(code)")
        }
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }

    /// Sends bytes as they are.
    public func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            // MSG_NOSIGNAL: a peer that closed gives EPIPE here, not a SIGPIPE that would end the test process.
            let written = bytes[offset...].withUnsafeBytes { UnixSocket.send(descriptor, $0) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { throw TestFailure("write failed: errno \(errno)") }
            offset += written
        }
    }

    /// Sends as much of `bytes` as the peer takes within `seconds` of it last taking any (a peer that stops
    /// reading makes the socket's buffers fill): the number of bytes sent.
    public func sendWhileRead(_ bytes: [UInt8], stallSeconds seconds: Int = 1) -> Int {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { UnixSocket.send(descriptor, $0) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { break }
            offset += written
        }
        return offset
    }

    /// The socket, for `poll`.
    public var fileDescriptor: Int32 { descriptor }

    /// Reads one reply line if one arrives within the read timeout; `nil` when none did.
    /// - Throws: When the connection closed or failed.
    public func readLineIfAny() throws -> String? {
        do {
            return try readLine()
        } catch let failure as TestFailure where failure.description.contains("errno \(EAGAIN)") {
            return nil
        }
    }

    /// Sends a string as it is (add the newline yourself).
    public func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Reads one reply line (without its newline).
    public func readLine() throws -> String {
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 65_536)
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress!, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { throw TestFailure(count == 0 ? "connection closed" : "read failed: errno \(errno)") }
            pending.append(contentsOf: chunk[..<count])
        }
    }

    /// Shuts down the writing side (`shutdown(SHUT_WR)`): the peer reads end of file, and replies can still come.
    public func shutdownWriting() {
        #if canImport(Glibc)
            _ = Glibc.shutdown(descriptor, Int32(SHUT_WR))
        #else
            _ = Darwin.shutdown(descriptor, SHUT_WR)
        #endif
    }

    /// Whether the peer has closed the connection (reads end of file within the timeout).
    public func readsEndOfFile() -> Bool {
        var byte: UInt8 = 0
        while true {
            let count = read(descriptor, &byte, 1)
            if count < 0, errno == EINTR { continue }
            return count == 0
        }
    }

    /// Sends one line and reads its reply.
    public func request(_ line: String) throws -> String {
        try send(line + "\n")
        return try readLine()
    }

    /// Sends a request signed as the original Node client signs: MAC over the text, `hmac` appended last.
    public func signedRequest(_ payload: String, secret: String) throws -> String {
        let mac = Array(payload.utf8).withUnsafeBytes { FrameSigner(secret: secret).hexMAC($0) }
        return try request(String(payload.dropLast()) + #","hmac":""# + mac + #""}"#)
    }
}

/// Polls `condition` until it holds or `seconds` pass; never a blind sleep.
/// - Returns: Whether the condition came true in time.
public func waitUntil(seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = monotonicSeconds() + seconds
    while monotonicSeconds() < deadline {
        if try condition() { return true }
        usleep(5_000)
    }
    return try condition()
}

/// Polls `condition` until it holds or `seconds` pass, sleeping between polls without holding a thread (tests
/// run on a small shared pool: a blocked thread starves everyone else's tasks).
/// - Returns: Whether the condition came true in time.
public func waitFor(seconds: Double = 10, _ condition: () throws -> Bool) async rethrows -> Bool {
    let deadline = monotonicSeconds() + seconds
    while monotonicSeconds() < deadline {
        if try condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return try condition()
}

/// Polls an async condition until it holds or `seconds` pass.
/// - Returns: Whether the condition came true in time.
public func waitUntilAsync(seconds: Double = 10, _ condition: () async -> Bool) async -> Bool {
    let deadline = monotonicSeconds() + seconds
    while monotonicSeconds() < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return await condition()
}

/// Seconds on a monotonic clock.
public func monotonicSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

/// Whether a file system object exists at `path`.
public func pathExists(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0
}

/// The permission bits of `path`.
public func permissions(of path: String) -> Int {
    var info = stat()
    guard lstat(path, &info) == 0 else { return -1 }
    return Int(info.st_mode & 0o777)
}

/// A fresh private directory for one test, removed with all it holds when the test process exits (a broker a test
/// killed leaves its socket behind).
public func makeTemporaryDirectory() -> String {
    var template = Array("/tmp/ebt-XXXXXX".utf8CString)
    _ = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    TemporaryDirectories.shared.add(path)
    return path
}

/// The directories the tests of this process made, removed at exit.
private final class TemporaryDirectories: Sendable {
    static let shared = TemporaryDirectories()
    private let paths = Locked<[String]>([])

    private init() {
        atexit { TemporaryDirectories.shared.removeAll() }
    }

    func add(_ path: String) { paths.withLock { $0.append(path) } }

    private func removeAll() {
        for path in paths.withLock({ $0 }) { try? FileManager.default.removeItem(atPath: path) }
    }
}

/// Leaves a socket file with nobody listening, as a broker that was SIGKILLed does.
public func makeStaleSocket(at path: String) throws {
    let fd = UnixSocket.make()
    let result = UnixSocket.bind(fd, to: path)
    close(fd)
    guard result == 0 else { throw TestFailure("bind(\(path)) failed: errno \(errno)") }
}
