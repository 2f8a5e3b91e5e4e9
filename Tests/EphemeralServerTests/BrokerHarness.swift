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

/// A reply without its `"version":N` member (the item version every value reply carries).
func unversioned(_ line: String) -> String {
    line.replacingOccurrences(of: #",\"version\":[0-9]+"#, with: "", options: .regularExpression)
}
