import Foundation
import Testing

extension Trait where Self == ConditionTrait {
    /// Marks a suite that loads the machine (dozens of processes, 100 MB streams, thousands of connections): on a
    /// 2-core machine it would starve the rest of the suite of CPU and make their timeouts fire, so it runs on its
    /// own, when `EPHEMERAL_LOAD_TESTS` is set:
    /// `EPHEMERAL_LOAD_TESTS=1 swift test --filter 'ExhaustionTests|NothingLostTests|BackpressureTests'` (a CI step of its own).
    static var loadTest: Self {
        .enabled(
            if: ProcessInfo.processInfo.environment["EPHEMERAL_LOAD_TESTS"] != nil,
            "a load test: run it alone with EPHEMERAL_LOAD_TESTS=1")
    }
}
