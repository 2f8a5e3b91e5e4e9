import EphemeralWire

/// The wire name of the `BrokerError` that `body` throws, or `nil` when it succeeds.
func code(_ body: () throws -> Void) -> String? {
    do { try body() } catch let error as BrokerError { return error.code.wireName } catch { return "\(error)" }
    return nil
}
