import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What the kernel reports of another process's memory, from `/proc/PID/status` (Linux).
public enum ProcessProbe {
    /// The resident set now (`VmRSS`), in bytes; `nil` when not readable (not Linux, or the process is gone).
    public static func residentBytes(of pid: pid_t) -> Int? { statusField("VmRSS", of: pid) }

    /// The highest resident set so far (`VmHWM`), in bytes: catches a peak a later sample would miss.
    public static func peakResidentBytes(of pid: pid_t) -> Int? { statusField("VmHWM", of: pid) }

    private static func statusField(_ name: String, of pid: pid_t) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            let digits = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first
            return digits.flatMap { Int($0) }.map { $0 * 1024 }
        }
        return nil
    }
}

/// Runs blocking work (raw socket I/O, a long write) on a thread of its own and awaits its result, so the shared
/// pool that runs the tests is never held up.
public func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try work() }) }
        thread.stackSize = 1 << 20
        thread.start()
    }
}
