import EphemeralBrokerClient
import EphemeralWire

/// Test helpers: lease a pool item for the duration of a test, in Swift Testing or XCTest.
///
/// Both release the item when the test ends, also when it throws; when the test process crashes, the broker
/// releases it because the process's connection closes.
public enum BrokerTesting {
    private static let sharedClient: Result<Client, BrokerError> = {
        do throws(BrokerError) { return .success(try Client()) } catch { return .failure(error) }
    }()

    private static let chosenClient = Locked<Client?>(nil)

    /// The process-wide client: the one given to ``use(_:)``, else one from `EPHEMERAL_PIPE` and `EPHEMERAL_SECRET`.
    /// - Throws: `not_configured` when the tests do not run under `ephemeral-broker run`.
    public static func client() throws(BrokerError) -> Client {
        if let chosen = chosenClient.withLock({ $0 }) { return chosen }
        return try sharedClient.get()
    }

    /// Makes the helpers use `client` (for example one connected to a broker the tests start themselves);
    /// `nil` goes back to the environment's.
    /// - Parameter client: The client to use.
    public static func use(_ client: Client?) {
        chosenClient.withLock { $0 = client }
    }
}

/// The pool lease of the running test, set by ``LeasingTrait`` and the XCTest helper.
public enum BrokerLease {
    /// The lease the current test holds (the innermost one when several pools are leased).
    @TaskLocal public static var current: PoolLease?
}
