import BrokerTestSupport
import EphemeralServer
import EphemeralStore
import Foundation

/// A broker on a real socket with a manual clock, for one test.
struct BrokerHarness {
    let broker: Broker
    let path: String
    let clock: ManualWallClock

    static func start(_ configure: (inout BrokerConfiguration) -> Void = { _ in }) async throws -> BrokerHarness {
        var configuration = BrokerConfiguration()
        configure(&configuration)
        let clock = ManualWallClock()
        let broker = Broker(configuration: configuration, clock: clock)
        let path = try await broker.start()
        return BrokerHarness(broker: broker, path: path, clock: clock)
    }

    func connect() throws -> RawConnection { try RawConnection(path: path) }
}

/// Parses a reply line into a dictionary.
func json(_ line: String) throws -> [String: Any] {
    guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
        throw TestFailure("not a JSON object: \(line)")
    }
    return object
}

/// The `error` member of a reply, or `nil` for success.
func errorName(_ line: String) throws -> String? {
    let reply = try json(line)
    return reply["ok"] as? Bool == true ? nil : reply["error"] as? String
}

/// A reply without its `"version":N` member (the item version every value reply carries).
func unversioned(_ line: String) -> String {
    line.replacingOccurrences(of: #",\"version\":[0-9]+"#, with: "", options: .regularExpression)
}
