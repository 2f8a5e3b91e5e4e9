import Dispatch

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Catches termination signals sent to the wrapper and hands them to a callback, instead of dying.
final class SignalForwarder: @unchecked Sendable {
    // Written once in init, then only read by cancel(), which callers invoke once.
    private let sources: [any DispatchSourceSignal]

    /// Starts catching `signals`.
    /// - Parameters:
    ///   - signals: Signal numbers, e.g. `SIGINT`.
    ///   - handler: Called on a private queue with each signal caught.
    init(_ signals: [Int32], handler: @escaping @Sendable (Int32) -> Void) {
        let queue = DispatchQueue(label: "ephemeral-broker.signals")
        var made = [any DispatchSourceSignal]()
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { handler(number) }
            source.resume()
            made.append(source)
        }
        sources = made
    }

    /// Stops catching and restores the default actions.
    func cancel() {
        for source in sources { source.cancel() }
    }
}
