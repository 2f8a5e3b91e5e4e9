import ArgumentParser
import EphemeralBrokerClient
import EphemeralWire
#if canImport(FoundationEssentials)
    import FoundationEssentials  // no ICU to load: a faster start for every short-lived worker process
#else
    import Foundation
#endif

/// Options every control command shares: where the broker is and how to print.
struct ClientOptions: ParsableArguments {
    @Option(help: "The broker's socket (default: EPHEMERAL_PIPE).")
    var socket: String?

    @Option(help: "How long a call may take, retries included (e.g. 5s).")
    var timeout: String?

    @Flag(help: "Print JSON instead of readable text.")
    var json = false

    func client() throws -> Client {
        var environment = ProcessInfo.processInfo.environment
        if let socket { environment["EPHEMERAL_PIPE"] = socket }
        var configuration = try ClientConfiguration.fromEnvironment(environment)
        if let timeout = try durationOption(timeout, "--timeout") {
            guard timeout > .zero else { throw ValidationError("--timeout must be positive") }
            configuration.timeout = timeout
        }
        return Client(configuration: configuration)
    }
}

/// Runs a control command's body, turning a broker error into exit status 1 with its name on standard error.
func withBrokerErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as BrokerError {
        FileHandleOutput.standardError("ephemeral-broker: \(error)\n")
        throw ExitCode(1)
    }
}

/// Parses a duration option (`1500ms`, `30s`, `5m`, `1h`, or bare milliseconds); `nil` when not given.
/// - Throws: A usage error naming the option.
func durationOption(_ text: String?, _ flag: String = "--ttl") throws -> Duration? {
    guard let text else { return nil }
    guard let milliseconds = DurationParser.milliseconds(text) else {
        throw ValidationError("invalid duration '\(text)' for \(flag)")
    }
    return .milliseconds(milliseconds)
}

/// Prints JSON text as a person reads it: strings bare, everything else as JSON; control characters escaped
/// (``terminalSafe(_:keepingLines:)``), so a stored value cannot send escape sequences to a terminal.
func readable(_ json: [UInt8]) -> String {
    if json.first == UInt8(ascii: "\""),
        let string = try? JSONDecoder().decode(String.self, from: Data(json))
    {
        return terminalSafe(string, keepingLines: true)
    }
    return terminalSafe(String(decoding: json, as: UTF8.self), keepingLines: true)
}

/// Text with every control character (C0, DEL and C1, which terminals read as the start of escape sequences)
/// written as a JSON-style `\u00XX` escape.
/// - Parameters:
///   - text: What to print.
///   - keepingLines: Whether newlines and tabs stay as they are (a value's lines); a key's never do.
func terminalSafe(_ text: String, keepingLines: Bool) -> String {
    func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }
    guard text.unicodeScalars.contains(where: isControl) else { return text }
    var escaped = ""
    for scalar in text.unicodeScalars {
        if keepingLines, scalar == "\n" || scalar == "\t" {
            escaped.unicodeScalars.append(scalar)
        } else if isControl(scalar) {
            let hex = String(scalar.value, radix: 16)
            escaped += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        } else {
            escaped.unicodeScalars.append(scalar)
        }
    }
    return escaped
}

struct Get: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get",
        abstract: "Print a value.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The key.") var key: String

    func run() async throws {
        try await withBrokerErrors {
            let value = try await client.client().getJSON(key)
            FileHandleOutput.standardOutput(
                (client.json ? String(decoding: value, as: UTF8.self) : readable(value)) + "\n")
        }
    }
}

struct Set: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set",
        abstract: "Store a value.", discussion: "VALUE is taken as JSON when it parses as JSON, else as a string.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The key.") var key: String
    @Argument(help: "The value.") var value: String
    @Option(help: "How long the value lives (e.g. 30s, 5m).") var ttl: String?
    @Flag(help: "Store VALUE as a string even when it parses as JSON.") var string = false
    @Option(help: "Delete the value after this many reads.") var maxReads: Int?

    func run() async throws {
        let ttl = try durationOption(ttl)
        try await withBrokerErrors {
            let bytes = Array(value.utf8)
            let json = !string && JSONText.compact(bytes) != nil ? bytes : Array(try JSONEncoder().encode(value))
            if let maxReads {
                try await client.client().setJSON(key, json: json, ttl: ttl, maxReads: maxReads)
            } else {
                try await client.client().setJSON(key, json: json, ttl: ttl)
            }
            if client.json { FileHandleOutput.standardOutput("{\"ok\":true}\n") }
        }
    }
}

struct Del: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "del",
        abstract: "Delete a key (a missing key is not an error).")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The key.") var key: String

    func run() async throws {
        try await withBrokerErrors {
            try await client.client().delete(key)
            if client.json { FileHandleOutput.standardOutput("{\"ok\":true}\n") }
        }
    }
}

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List live keys and when they expire.")
    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await withBrokerErrors {
            let items = try await client.client().list()
            if client.json {
                let entries = items.map { #"{"key":\#(jsonString($0.key)),"expires":\#($0.expiresAt)}"# }
                FileHandleOutput.standardOutput("[" + entries.joined(separator: ",") + "]\n")
            } else {
                let now = Int64(Date().timeIntervalSince1970 * 1000)
                for item in items {
                    FileHandleOutput.standardOutput(
                        "\(terminalSafe(item.key, keepingLines: false))\texpires in \(max(0, item.expiresAt - now)) ms\n")
                }
            }
        }
    }
}

struct Ping: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ping",
        abstract: "Check the broker answers; print the round trip.")
    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await withBrokerErrors {
            let elapsed = try await client.client().ping()
            let milliseconds = Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000
            let text = String(Double(Int(milliseconds * 1000)) / 1000)
            FileHandleOutput.standardOutput(client.json ? "{\"ok\":true,\"latencyMs\":\(text)}\n" : "pong \(text) ms\n")
        }
    }
}

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Print the broker's statistics.")
    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await withBrokerErrors {
            let stats = try await client.client().statsJSON()
            FileHandleOutput.standardOutput(
                (client.json ? String(decoding: stats, as: UTF8.self) : prettyJSON(stats)) + "\n")
        }
    }
}

struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Print the broker's health.")
    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await withBrokerErrors {
            let health = try await client.client().healthJSON()
            FileHandleOutput.standardOutput(
                (client.json ? String(decoding: health, as: UTF8.self) : prettyJSON(health)) + "\n")
        }
    }
}

struct Metrics: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "Print the broker's Prometheus metrics.")
    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await withBrokerErrors {
            let text = try await client.client().metrics()
            FileHandleOutput.standardOutput(client.json ? "{\"metrics\":\(jsonString(text))}\n" : text)
        }
    }
}

struct Release: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "release",
        abstract: "Release the lease a worker holds; print whether it held one.")
    @OptionGroup var client: ClientOptions
    @Option(help: "The worker holding the lease.") var worker: String

    func run() async throws {
        try await withBrokerErrors {
            let released = try await client.client().release(workerId: worker)
            FileHandleOutput.standardOutput(client.json ? "{\"released\":\(released)}\n" : "\(released)\n")
        }
    }
}

/// A JSON string literal.
func jsonString(_ text: String) -> String {
    String(decoding: (try? JSONEncoder().encode(text)) ?? Data("\"\"".utf8), as: UTF8.self)
}

/// JSON pretty-printed with sorted keys, for people.
func prettyJSON(_ json: [UInt8]) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    guard let value = try? JSONDecoder().decode(AnyJSON.self, from: Data(json)),
        let pretty = try? encoder.encode(value)
    else { return String(decoding: json, as: UTF8.self) }
    return String(decoding: pretty, as: UTF8.self)
}

/// Any JSON value, decoded and encoded again as it was (integers stay integers).
private enum AnyJSON: Codable {
    case null, bool(Bool), int(Int64), double(Double), string(String), array([AnyJSON]), object([String: AnyJSON])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .int(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([AnyJSON].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: AnyJSON].self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}
