// The store alone, without sockets: new keys into an empty store and into one already holding nine tenths of N,
// a batch of 32 into each in turn (the two taking turns going first), each store's batches timed apart.
//   eb-storefill [N]   → {"items":N,"emptyPerSec":…,"fullPerSec":…}
import EphemeralStore
import EphemeralWire

#if canImport(Glibc)
    import Glibc
#endif

func nanoseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

let items = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 100_000 : 100_000
let tenth = max(1, items / 10)
var configuration = StoreConfiguration()
configuration.maxItems = items
var stores = [Store(configuration: configuration), Store(configuration: configuration)]
let value = Array(("\"" + String(repeating: "x", count: 98) + "\"").utf8)
@MainActor func set(_ index: Int, _ key: Int) {
    _ = try! stores[index].set(SetCommand(key: "key-\(key)", value: value, ttl: 600_000), now: 1)
}
for key in 0..<(items - tenth) { set(1, key) }
var spent: [UInt64] = [0, 0]
for (round, offset) in stride(from: 0, to: tenth, by: 32).enumerated() {
    for (index, first) in round % 2 == 0 ? [(0, 0), (1, items - tenth)] : [(1, items - tenth), (0, 0)] {
        let start = nanoseconds()
        for key in offset..<min(tenth, offset + 32) { set(index, first + key) }
        spent[index] += nanoseconds() - start
    }
}
let rates = spent.map { Int(Double(tenth) / (Double($0) / 1e9)) }
print(#"{"items":\#(items),"emptyPerSec":\#(rates[0]),"fullPerSec":\#(rates[1])}"#)
