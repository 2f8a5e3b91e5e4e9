import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A test double of a broker: it accepts connections on a Unix socket and answers each request line as told.
public final class FakeBroker: @unchecked Sendable {
    /// What the fake does with one request line.
    public enum Answer: Sendable {
        /// Write these bytes (add the newline yourself); `$ID` becomes the request's `id`.
        case write(String)
        /// Write these bytes, then close the connection.
        case writeThenClose(String)
        /// Close the connection.
        case close
        /// Read on, never answer.
        case ignore
    }

    /// The socket path.
    public let path: String
    private let listener: Int32
    private let answer: @Sendable (String) -> Answer

    /// Starts listening; `answer` decides each reply from the request line.
    public init(answer: @escaping @Sendable (String) -> Answer) throws {
        path = makeTemporaryDirectory() + "/fake.sock"
        self.answer = answer
        listener = UnixSocket.make()
        guard UnixSocket.bind(listener, to: path) == 0, listen(listener, 16) == 0 else {
            throw TestFailure("fake broker cannot listen")
        }
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    /// Stops accepting (connections already open are served until their peer closes).
    public func stop() {
        // Wakes the accept loop, which closes the descriptor itself: closing it here could let another test's new
        // socket reuse the number while the loop still accepts on it.
        shutdown(listener, Int32(SHUT_RDWR))
        unlink(path)
    }

    private func acceptLoop() {
        defer { close(listener) }
        while true {
            let connection = acceptClosingOnExec(listener)
            guard connection >= 0 else {
                if errno == EINTR { continue }
                return
            }
            let thread = Thread { [self] in serve(connection) }
            thread.start()
        }
    }

    private func send(_ text: String, for line: String, on connection: Int32) {
        let bytes = Array(text.replacingOccurrences(of: "$ID", with: Self.id(in: line)).utf8)
        _ = bytes.withUnsafeBytes { write(connection, $0.baseAddress!, $0.count) }
    }

    /// The digits of the request's `"id":` member.
    public static func id(in line: String) -> String {
        guard let range = line.range(of: "\"id\":") else { return "null" }
        return String(line[range.upperBound...].prefix { $0.isNumber })
    }

    private func serve(_ connection: Int32) {
        defer { close(connection) }
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                switch answer(line) {
                case .write(let text):
                    send(text, for: line, on: connection)
                case .writeThenClose(let text):
                    send(text, for: line, on: connection)
                    return
                case .close:
                    return
                case .ignore:
                    break
                }
            }
            let count = chunk.withUnsafeMutableBytes { read(connection, $0.baseAddress!, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { return }
            pending.append(contentsOf: chunk[..<count])
        }
    }
}

/// `accept` whose descriptor is closed on exec, so child processes spawned by other tests do not keep it open.
func acceptClosingOnExec(_ listener: Int32) -> Int32 {
    // Glibc's overlay does not export accept4: set the flag right after (a spawn in between is the only window).
    let descriptor = accept(listener, nil, nil)
    if descriptor >= 0 { _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC) }
    return descriptor
}
