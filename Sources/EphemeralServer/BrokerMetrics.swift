import EphemeralWire

/// Counters behind `metrics`, kept as requests happen so every figure is current.
struct BrokerMetrics {
    /// Per action (plus one slot for requests without a known action): successes, then errors.
    private(set) var operations = [Int](repeating: 0, count: 2 * (Action.allCases.count + 1))
    private(set) var errorsByName: [String: Int] = [:]
    private(set) var requestsTotal = 0
    private(set) var compressedSets = 0
    private(set) var uncompressedSets = 0
    /// Bytes of compressed values as JSON text before compression, measured by the broker.
    private(set) var compressionBytesBefore = 0
    /// Bytes of compressed values as stored (base64 of gzip).
    private(set) var compressionBytesAfter = 0

    /// Connections closed by the broker itself, by the error they were told (`too_many_connections`,
    /// `request_timeout`).
    private(set) var connectionsClosed: [String: Int] = [:]

    mutating func recordRequest() { requestsTotal += 1 }

    mutating func recordClosed(_ error: BrokerError) { connectionsClosed[error.code.wireName, default: 0] += 1 }

    mutating func record(_ action: Action?, error: BrokerError?) {
        operations[2 * Self.slot(action) + (error == nil ? 0 : 1)] += 1
        if let error { errorsByName[error.code.wireName, default: 0] += 1 }
    }

    mutating func recordSet(compressed: Bool, before: Int, after: Int) {
        if compressed {
            compressedSets += 1
            compressionBytesBefore += before
            compressionBytesAfter += after
        } else {
            uncompressedSets += 1
        }
    }

    /// The actions in slot order, built once: `Action.allCases` builds a new array on every use. A short linear
    /// search (the common actions come first) costs less per request than hashing the action.
    private static let actions = Action.allCases

    private static func slot(_ action: Action?) -> Int {
        guard let action else { return actions.count }
        return actions.firstIndex(of: action)!
    }

    /// The gauges that come from the broker's state at the moment of the scrape.
    struct Gauges {
        var items: Int
        var maxItems: Int
        var leases: Int
        var inFlight: Int
        var connections: Int
        var draining: Bool
        var expiredItems: Int
        var expiredLeases: Int
        var approximateStoreBytes: Int
        var rss: Int
        var uptimeSeconds: Double
    }

    /// Prometheus text exposition (version 0.0.4), with the original's family names and labels.
    func prometheusText(_ gauges: Gauges) -> String {
        var text = ""
        func family(_ name: String, _ type: String, _ help: String) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func sample(_ name: String, _ labels: String = "", _ value: String) {
            text += labels.isEmpty ? "\(name) \(value)\n" : "\(name){\(labels)} \(value)\n"
        }
        family("ephemeral_broker_operations_total", "counter", "Requests by action and result.")
        for index in 0...Self.actions.count {
            let action = index < Self.actions.count ? Self.actions[index].rawValue : "unknown"
            let (successes, errors) = (operations[2 * index], operations[2 * index + 1])
            sample("ephemeral_broker_operations_total", "action=\"\(action)\",result=\"success\"", "\(successes)")
            sample("ephemeral_broker_operations_total", "action=\"\(action)\",result=\"error\"", "\(errors)")
        }
        family("ephemeral_broker_errors_total", "counter", "Error replies by wire error name.")
        for (name, count) in errorsByName.sorted(by: { $0.key < $1.key }) {
            sample("ephemeral_broker_errors_total", "error=\"\(name)\"", "\(count)")
        }
        family("ephemeral_broker_compression_total", "counter", "Sets by whether the value was compressed.")
        sample("ephemeral_broker_compression_total", "compressed=\"true\"", "\(compressedSets)")
        sample("ephemeral_broker_compression_total", "compressed=\"false\"", "\(uncompressedSets)")
        family(
            "ephemeral_broker_compression_bytes_total", "counter",
            "Bytes of compressed values before and after compression, measured by the broker.")
        sample("ephemeral_broker_compression_bytes_total", "stage=\"before\"", "\(compressionBytesBefore)")
        sample("ephemeral_broker_compression_bytes_total", "stage=\"after\"", "\(compressionBytesAfter)")
        family("ephemeral_broker_compression_ratio", "gauge", "Compressed bytes over uncompressed bytes.")
        let ratio = compressionBytesBefore == 0 ? 0 : Double(compressionBytesAfter) / Double(compressionBytesBefore)
        sample("ephemeral_broker_compression_ratio", "", format(ratio))
        family("ephemeral_broker_expired_total", "counter", "Items and leases removed because their TTL ran out.")
        sample("ephemeral_broker_expired_total", "type=\"items\"", "\(gauges.expiredItems)")
        sample("ephemeral_broker_expired_total", "type=\"leases\"", "\(gauges.expiredLeases)")
        family("ephemeral_broker_requests_total", "counter", "Request lines received.")
        sample("ephemeral_broker_requests_total", "", "\(requestsTotal)")
        family("ephemeral_broker_requests_in_flight", "gauge", "Requests received and not yet answered.")
        sample("ephemeral_broker_requests_in_flight", "", "\(gauges.inFlight)")
        family("ephemeral_broker_draining", "gauge", "1 while the broker is shutting down.")
        sample("ephemeral_broker_draining", "", gauges.draining ? "1" : "0")
        family("ephemeral_broker_capacity_items", "gauge", "Live items.")
        sample("ephemeral_broker_capacity_items", "", "\(gauges.items)")
        family("ephemeral_broker_capacity_max", "gauge", "The most items the broker holds (0: no limit).")
        sample("ephemeral_broker_capacity_max", "", "\(gauges.maxItems)")
        family("ephemeral_broker_capacity_utilization", "gauge", "Live items over the maximum, from 0 to 1.")
        let utilization = gauges.maxItems == 0 ? 0 : Double(gauges.items) / Double(gauges.maxItems)
        sample("ephemeral_broker_capacity_utilization", "", format(utilization))
        family("ephemeral_broker_leases", "gauge", "Live leases.")
        sample("ephemeral_broker_leases", "", "\(gauges.leases)")
        family("ephemeral_broker_connections", "gauge", "Open client connections.")
        sample("ephemeral_broker_connections", "", "\(gauges.connections)")
        family(
            "ephemeral_broker_connections_closed_total", "counter",
            "Connections the broker closed itself, by the error it told them.")
        for name in [BrokerError.Code.tooManyConnections, .requestTimeout].map(\.wireName) {
            sample("ephemeral_broker_connections_closed_total", "error=\"\(name)\"", "\(connectionsClosed[name, default: 0])")
        }
        family("ephemeral_broker_store_bytes", "gauge", "Approximate bytes held by stored items.")
        sample("ephemeral_broker_store_bytes", "", "\(gauges.approximateStoreBytes)")
        family("ephemeral_broker_resident_memory_bytes", "gauge", "Resident set size of the broker process.")
        sample("ephemeral_broker_resident_memory_bytes", "", "\(gauges.rss)")
        family("ephemeral_broker_uptime_seconds", "gauge", "Seconds since the broker started.")
        sample("ephemeral_broker_uptime_seconds", "", format(gauges.uptimeSeconds))
        return text
    }

    private func format(_ value: Double) -> String {
        let rounded = (value * 10_000).rounded() / 10_000
        return rounded == rounded.rounded() ? String(Int64(rounded)) : String(rounded)
    }
}
