import EphemeralWire
import Logging
import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// How log lines look.
public enum BrokerLogFormat: String, Sendable, CaseIterable {
    /// `2026-11-22T10:00:00.123Z info ephemeral-broker: broker started pipe=/tmp/…`
    case human
    /// One JSON object per line: `{"timestamp":…,"level":"info","component":…,"message":…,…metadata}`.
    case json
}

/// A swift-log handler writing one line per message to standard error, readable or as JSON.
public struct BrokerLogHandler: LogHandler {
    /// Metadata attached to every message from this handler.
    public var metadata: Logger.Metadata = [:]
    /// The lowest level written.
    public var logLevel: Logger.Level
    private let label: String
    private let format: BrokerLogFormat

    /// Creates a handler.
    /// - Parameters:
    ///   - label: The logger's label, written as the component.
    ///   - format: Human-readable or JSON lines.
    ///   - level: The lowest level written.
    public init(label: String, format: BrokerLogFormat, level: Logger.Level) {
        self.label = label
        self.format = format
        self.logLevel = level
    }

    /// Reads or writes one metadata value.
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Writes one line.
    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let line: String
        switch format {
        case .human:
            let fields = merged.sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
            line = "\(Self.timestamp()) \(event.level) \(label): \(event.message)\(fields)\n"
        case .json:
            var buffer = ByteBuffer()
            buffer.writeStaticString("{\"timestamp\":")
            buffer.writeJSONString(Self.timestamp())
            buffer.writeStaticString(",\"level\":")
            buffer.writeJSONString(event.level.rawValue)
            buffer.writeStaticString(",\"component\":")
            buffer.writeJSONString(label)
            buffer.writeStaticString(",\"message\":")
            buffer.writeJSONString(event.message.description)
            for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
                buffer.writeStaticString(",")
                buffer.writeJSONString(key)
                buffer.writeStaticString(":")
                buffer.writeJSONString(value.description)
            }
            buffer.writeStaticString("}\n")
            line = String(buffer: buffer)
        }
        // One write(2) per line keeps lines whole when several threads log at once.
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = write(2, raw.baseAddress! + offset, raw.count - offset)
                if written <= 0 { return }
                offset += written
            }
        }
    }

    /// The current UTC time as ISO 8601 with milliseconds.
    static func timestamp() -> String {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        var seconds = spec.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + "\(pad(Int32(spec.tv_nsec / 1_000_000), 3))Z"
    }
}
