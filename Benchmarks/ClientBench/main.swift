// Our Swift `Client` end to end against a running broker:
//
//   eb-clientbench --socket PATH [--count N] sequential      one task, N gets in a row: latency percentiles
//   eb-clientbench --socket PATH [--seconds S] concurrent    32 tasks sharing one Client: ops/s
//   eb-clientbench --socket PATH first                       a fresh process's first request: connect + reply
//
// Prints one JSON line. `--secret S` signs as a worker under `run` would.
import EphemeralBrokerClient
import Foundation

let arguments = Array(CommandLine.arguments.dropFirst())
func option(_ name: String) -> String? {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}
let socket = option("--socket") ?? ProcessInfo.processInfo.environment["EPHEMERAL_PIPE"] ?? ""
let secret = option("--secret")
let count = option("--count").flatMap(Int.init) ?? 20_000
let seconds = option("--seconds").flatMap(Double.init) ?? 2
let mode = arguments.last ?? "sequential"  // the mode goes last: eb-clientbench --socket S [--count N] MODE
let value = String(repeating: "v", count: 100)

func microseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1e6 + Double(duration.components.attoseconds) / 1e12
}

func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
    sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]
}

let clock = ContinuousClock()
switch mode {
case "first":
    let start = clock.now
    let client = Client(configuration: ClientConfiguration(socketPath: socket, secret: secret))
    _ = try await client.ping()
    print(#"{"firstRequestUs":\#(microseconds(clock.now - start))}"#)
case "sequential":
    let client = Client(configuration: ClientConfiguration(socketPath: socket, secret: secret))
    try await client.set("bench-key", value, ttl: .seconds(600))
    var samples: [Double] = []
    samples.reserveCapacity(count)
    for _ in 0..<count {
        let start = clock.now
        _ = try await client.get("bench-key", as: String.self)
        samples.append(microseconds(clock.now - start))
    }
    samples.sort()
    let total = samples.reduce(0, +)
    print(
        #"{"ops":\#(count),"opsPerSec":\#(Int(Double(count) / total * 1e6)),"p50us":\#(percentile(samples, 0.5)),"p99us":\#(percentile(samples, 0.99)),"p999us":\#(percentile(samples, 0.999))}"#
    )
case "concurrent":
    let client = Client(configuration: ClientConfiguration(socketPath: socket, secret: secret))
    try await client.set("bench-key", value, ttl: .seconds(600))
    let deadline = clock.now + .milliseconds(Int64(seconds * 1000))
    let start = clock.now
    let total = try await withThrowingTaskGroup(of: Int.self) { group in
        for _ in 0..<32 {
            group.addTask {
                var done = 0
                while clock.now < deadline {
                    _ = try await client.get("bench-key", as: String.self)
                    done += 1
                }
                return done
            }
        }
        var total = 0
        for try await done in group { total += done }
        return total
    }
    let elapsed = microseconds(clock.now - start) / 1e6
    print(#"{"tasks":32,"ops":\#(total),"opsPerSec":\#(Int(Double(total) / elapsed))}"#)
default:
    fatalError("unknown mode \(mode)")
}
