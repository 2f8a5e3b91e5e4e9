#if canImport(Glibc)
    import CEphemeralCrypto
    import Glibc

    private let rusageSelf = RUSAGE_SELF.rawValue
#elseif canImport(Darwin)
    import Darwin

    private let rusageSelf = RUSAGE_SELF
#endif

/// The broker process's memory, for `stats`, `health` and `metrics`.
enum ProcessMemory {
    /// Resident set size in bytes (from `/proc/self/statm` on Linux; the peak RSS elsewhere).
    static func residentBytes() -> Int {
        #if os(Linux)
            if let file = fopen("/proc/self/statm", "r") {
                defer { fclose(file) }
                var size = 0
                var resident = 0
                if readStatm(file, &size, &resident) { return resident * Int(sysconf(Int32(_SC_PAGESIZE))) }
            }
        #endif
        var usage = rusage()
        getrusage(rusageSelf, &usage)
        #if os(Linux)
            return Int(usage.ru_maxrss) * 1024
        #else
            return Int(usage.ru_maxrss)
        #endif
    }

    #if os(Linux)
        private static func readStatm(_ file: UnsafeMutablePointer<FILE>, _ size: inout Int, _ resident: inout Int)
            -> Bool
        {
            var buffer = [CChar](repeating: 0, count: 128)
            guard fgets(&buffer, Int32(buffer.count), file) != nil else { return false }
            let length = buffer.firstIndex(of: 0) ?? buffer.count
            let fields = String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                .split(separator: " ")
            guard fields.count >= 2, let total = Int(fields[0]), let rss = Int(fields[1]) else { return false }
            size = total
            resident = rss
            return true
        }
    #endif
}

extension ProcessMemory {
    /// Bytes allocated from the heap and in use (`mallinfo2` on glibc; 0 where unavailable).
    static func heapBytes() -> Int {
        #if canImport(Glibc)
            return Int(mallinfo2().uordblks)
        #else
            return 0
        #endif
    }
}
