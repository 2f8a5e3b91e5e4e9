// A closed-loop load generator that speaks the broker's wire format (or Redis's RESP) over raw Unix sockets, one
// blocking connection per thread, so it measures the server, not a client library.
//
//   eb-loadgen --socket PATH --workload ping|get|set|lease|lease-pipelined|mixed --connections N --seconds S
//              [--protocol wire|resp] [--secret S] [--value-size 100] [--prefill 1000] [--window 32] [--count N]
// `lease` sends a lease, waits for its reply, then sends the release (two round trips per cycle);
// `lease-pipelined` writes both in one write and then reads both replies (one round trip), which the protocol
// allows because `release` names the worker, not the leased value.
// Prints one JSON line: ops, ops/s, p50/p99/p99.9 latency in microseconds.
// `fill` and `fill-compare` measure how fast new keys go in (below, where they are run).
import EphemeralWire
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

struct Options {
    var socket = ""
    var workload = "ping"
    var connections = 1
    var seconds = 2.0
    var resp = false
    var secret: String?
    var valueSize = 100
    var prefill = 1000
    var window = 32
    /// Operations per connection; the run ends after `seconds` or this many, whichever comes first.
    var count = Int.max
    /// `fill-compare`'s second server, the one filled before the timed sets.
    var fullSocket = ""

    init(_ arguments: [String]) {
        var iterator = arguments.dropFirst().makeIterator()
        while let flag = iterator.next() {
            let value = iterator.next() ?? ""
            switch flag {
            case "--socket": socket = value
            case "--workload": workload = value
            case "--connections": connections = Int(value) ?? 1
            case "--seconds": seconds = Double(value) ?? 2
            case "--protocol": resp = value == "resp"
            case "--secret": secret = value
            case "--value-size": valueSize = Int(value) ?? 100
            case "--prefill": prefill = Int(value) ?? 1000
            case "--window": window = max(1, Int(value) ?? 32)
            case "--count": count = max(1, Int(value) ?? Int.max)
            case "--full-socket": fullSocket = value
            default: fatalError("unknown flag \(flag)")
            }
        }
    }
}

func nanoseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

/// One blocking connection.
final class Connection {
    let fd: Int32
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    var start = 0
    var end = 0

    init(path: String) {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        precondition(result == 0, "cannot connect to \(path)")
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
            precondition(written > 0, "write failed")
            offset += written
        }
    }

    private func fill() {
        if start == end {
            start = 0
            end = 0
        }
        if end == buffer.count {  // compact
            buffer.replaceSubrange(0..<(end - start), with: buffer[start..<end])
            end -= start
            start = 0
        }
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + end, $0.count - end) }
        precondition(count > 0, "the server closed the connection")
        end += count
    }

    /// Reads one `\n`-terminated line; returns whether it is a success (`{"ok":true` or `+`/`$`).
    func readLine() -> [UInt8] {
        while true {
            if let newline = buffer[start..<end].firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[start..<newline])
                start = newline + 1
                return line
            }
            fill()
        }
    }

    /// Reads one RESP reply (simple string, error, integer or bulk string).
    func readRESP() -> [UInt8] {
        let header = readLine()
        guard header.first == UInt8(ascii: "$"),
            let length = Int(String(decoding: header.dropFirst().dropLast(), as: UTF8.self)),
            length >= 0
        else { return header }
        while end - start < length + 2 { fill() }
        let body = Array(buffer[start..<(start + length)])
        start += length + 2
        return body
    }
}

struct Workload {
    let options: Options
    let signer: FrameSigner?
    let value: String

    init(options: Options) {
        self.options = options
        signer = options.secret.map(FrameSigner.init(secret:))
        value = String(repeating: "v", count: max(0, options.valueSize - 2))
    }

    func wire(_ json: String) -> [UInt8] {
        guard let signer else { return Array((json + "\n").utf8) }
        let mac = Array(json.utf8).withUnsafeBytes { signer.hexMAC($0) }
        return Array((String(json.dropLast()) + #","hmac":""# + mac + "\"}\n").utf8)
    }

    func resp(_ parts: [String]) -> [UInt8] {
        var text = "*\(parts.count)\r\n"
        for part in parts { text += "$\(part.utf8.count)\r\n\(part)\r\n" }
        return Array(text.utf8)
    }

    /// The requests of one operation (a lease cycle is two), for connection `id` and key number `n`.
    func requests(connection id: Int, key n: Int, step: Int) -> [[UInt8]] {
        var kind = options.workload
        if kind == "mixed" { kind = step % 10 < 8 ? "get" : (step % 10 == 8 ? "set" : "ping") }
        let key = "key-\(n)"
        switch (kind, options.resp) {
        case ("ping", false): return [wire(#"{"action":"ping"}"#)]
        case ("get", false): return [wire(#"{"action":"get","key":"\#(key)"}"#)]
        case ("set", false): return [wire(#"{"action":"set","key":"\#(key)","value":"\#(value)","ttl":600000}"#)]
        case ("lease", false), ("lease-pipelined", false):
            return [
                wire(#"{"action":"lease","key":"bench","workerId":"w\#(id)"}"#),
                wire(#"{"action":"release","workerId":"w\#(id)"}"#),
            ]
        case ("ping", true): return [resp(["PING"])]
        case ("get", true): return [resp(["GET", key])]
        case ("set", true): return [resp(["SET", key, "\"\(value)\""])]
        default: fatalError("workload \(kind) over \(options.resp ? "resp" : "wire") is not supported")
        }
    }
}

let options = Options(CommandLine.arguments)
let workload = Workload(options: options)

extension Connection {
    /// One reply, in the protocol of this run (`--protocol`).
    func readReply() -> [UInt8] { options.resp ? readRESP() : readLine() }
}

/// The `set` requests of every fill, made once.
let setter: Workload = {
    var setOptions = options
    setOptions.workload = "set"
    return Workload(options: setOptions)
}()

/// Sets keys `keys` over `connection` (a new one to `--socket` by default), `window` requests per write (one at a
/// time with 1), reading every reply of a write before the next; `stored(n, reply)` sees key `n`'s reply.
func setKeys(
    _ keys: Range<Int>, window: Int = 1, over connection: Connection = Connection(path: options.socket),
    stored: (Int, [UInt8]) -> Void = { _, _ in }
) {
    var next = keys.lowerBound
    while next < keys.upperBound {
        let batch = next..<min(keys.upperBound, next + window)
        connection.send(batch.flatMap { setter.requests(connection: 0, key: $0, step: 0).joined() })
        for n in batch { stored(n, connection.readReply()) }
        next = batch.upperBound
    }
}

/// Whether a `set` reply says stored; a fill stops at the first that does not.
func isStored(_ reply: [UInt8]) -> Bool {
    options.resp ? reply.starts(with: Array("+OK".utf8)) : reply.starts(with: Array(#"{"ok":true"#.utf8))
}

// `--workload fill --prefill N [--window 32]`: set N new keys over one connection, 32 per write by default so the
// rate is the server's (not the round trip's); report the rate over each tenth.
if options.workload == "fill" {
    let tenth = max(1, options.prefill / 10)
    var marks: [UInt64] = [nanoseconds()]
    setKeys(0..<options.prefill, window: options.window) { n, reply in
        precondition(isStored(reply), String(decoding: reply, as: UTF8.self))
        if (n + 1) % tenth == 0 { marks.append(nanoseconds()) }
    }
    let rates = zip(marks, marks.dropFirst()).map { Int(Double(tenth) / (Double($1 - $0) / 1e9)) }
    print(
        #"{"items":\#(options.prefill),"firstTenthPerSec":\#(rates.first!),"lastTenthPerSec":\#(rates.last!),"tenthsPerSec":\#(rates)}"#
    )
    exit(0)
}
// `--workload fill-compare --socket EMPTY --full-socket FULL --prefill N [--window 32]`: fills FULL with the first
// nine tenths of N keys (untimed), then sets the last tenth into FULL and the first tenth into EMPTY over new
// connections, a write of `window` sets to each in turn, and times each server's writes apart. Both rates come from
// the same moments, so however this shared machine's speed drifts, it drifts for both alike.
if options.workload == "fill-compare" {
    let tenth = max(1, options.prefill / 10)
    setKeys(0..<(options.prefill - tenth), window: options.window, over: Connection(path: options.fullSocket)) {
        _, reply in precondition(isStored(reply), String(decoding: reply, as: UTF8.self))
    }
    // A second for the server that just took the preload to go idle like the other. Timed right after such a
    // burst, a server answers slower for a while on this machine whatever it holds: in trials here the floor, which
    // stores nothing, ran at 0.4 of an idle floor, and a broker at 0.5-0.7 of an idle broker.
    sleep(1)
    let full = Connection(path: options.fullSocket), empty = Connection(path: options.socket)
    let targets = [(connection: empty, first: 0), (connection: full, first: options.prefill - tenth)]
    var spent: [UInt64] = [0, 0]  // empty, full
    for (round, offset) in stride(from: 0, to: tenth, by: options.window).enumerated() {
        let batch = offset..<min(tenth, offset + options.window)
        // The requests are made before the clock starts, and the two servers take turns going first.
        let writes = targets.map { target in
            batch.flatMap { setter.requests(connection: 0, key: target.first + $0, step: 0).joined() }
        }
        for index in round % 2 == 0 ? [0, 1] : [1, 0] {
            let connection = targets[index].connection
            let start = nanoseconds()
            connection.send(writes[index])
            let replies = batch.map { _ in connection.readReply() }
            spent[index] += nanoseconds() - start
            for reply in replies { precondition(isStored(reply), String(decoding: reply, as: UTF8.self)) }
        }
    }
    let rates = spent.map { Int(Double(tenth) / (Double($0) / 1e9)) }
    print(#"{"items":\#(options.prefill),"emptyPerSec":\#(rates[0]),"fullPerSec":\#(rates[1])}"#)
    exit(0)
}
let keys = max(1, options.prefill)
if options.workload == "get" || options.workload == "mixed" { setKeys(0..<keys) }

final class Results: @unchecked Sendable {
    let lock = NSLock()
    var latencies: [UInt64] = []
    var failures = 0
}
let results = Results()
let pipelined = options.workload.hasSuffix("-pipelined")
let deadline = nanoseconds() + UInt64(options.seconds * 1e9)
let ready = DispatchGroup()
for id in 0..<options.connections {
    ready.enter()
    Thread {
        let connection = Connection(path: options.socket)
        var local: [UInt64] = []
        local.reserveCapacity(200_000)
        var failures = 0
        var step = id
        while nanoseconds() < deadline, local.count < options.count {
            let requests = workload.requests(connection: id, key: step % keys, step: step)
            let begin = nanoseconds()
            if pipelined { connection.send(requests.flatMap { $0 }) }
            for request in requests {
                if !pipelined { connection.send(request) }
                let reply = connection.readReply()
                if !options.resp, !reply.starts(with: Array(#"{"ok":true"#.utf8)) { failures += 1 }
            }
            local.append(nanoseconds() - begin)
            step += 1
        }
        results.lock.lock()
        results.latencies += local
        results.failures += failures
        results.lock.unlock()
        ready.leave()
    }.start()
}
ready.wait()
let sorted = results.latencies.sorted()
func percentile(_ p: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1000
}
let ops = sorted.count
print(
    #"{"ops":\#(ops),"opsPerSec":\#(Int(Double(ops) / options.seconds)),"p50us":\#(percentile(0.5)),"p99us":\#(percentile(0.99)),"p999us":\#(percentile(0.999)),"failures":\#(results.failures)}"#
)
