/// A min-heap of deadlines with lazy invalidation.
///
/// Rescheduling pushes a new entry with a new generation; the old one stays in the heap until it surfaces, where
/// the owner recognises it as stale (its generation no longer matches). ``compact(keeping:)`` rebuilds the heap when
/// stale entries pile up, so the heap's size stays proportional to what is live.
public struct ExpiryQueue<ID: Hashable>: Sendable where ID: Sendable {
    /// One scheduled deadline.
    public struct Entry: Sendable {
        /// When it falls due, in epoch milliseconds.
        public var deadline: Int64
        /// What falls due.
        public var id: ID
        /// Which write of `id` scheduled it.
        public var generation: UInt64
    }

    private var heap: [Entry] = []

    /// Creates an empty queue.
    public init() {}

    /// The number of entries, live and stale.
    public var count: Int { heap.count }

    /// Schedules `id` at `deadline`.
    public mutating func push(_ id: ID, deadline: Int64, generation: UInt64) {
        heap.append(Entry(deadline: deadline, id: id, generation: generation))
        siftUp(heap.count - 1)
    }

    /// The earliest deadline, live or stale; `nil` when empty.
    public var nextDeadline: Int64? { heap.first?.deadline }

    /// Removes and returns the earliest entry if it is due at `now`.
    public mutating func popDue(at now: Int64) -> Entry? {
        guard let first = heap.first, first.deadline <= now else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            siftDown(0)
        }
        return first
    }

    /// Counts the due entries for which `isLive` holds, visiting only due entries (the heap's top), never the rest.
    public func countDue(at now: Int64, where isLive: (Entry) -> Bool) -> Int {
        var count = 0
        var stack = heap.isEmpty ? [] : [0]
        while let index = stack.popLast() {
            let entry = heap[index]
            guard entry.deadline <= now else { continue }
            if isLive(entry) { count += 1 }
            for child in [2 * index + 1, 2 * index + 2] where child < heap.count { stack.append(child) }
        }
        return count
    }

    /// Drops stale entries when they outnumber the live ones, keeping amortised cost O(1) per push.
    /// - Parameters:
    ///   - liveCount: How many entries are live.
    ///   - isLive: Whether an entry is still the current schedule of its ID.
    public mutating func compactIfNeeded(liveCount: Int, isLive: (Entry) -> Bool) {
        guard heap.count > 2 * liveCount + 1024 else { return }
        heap.removeAll { !isLive($0) }
        for index in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(index) }
    }

    /// Removes every entry.
    public mutating func removeAll() { heap.removeAll() }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].deadline < heap[parent].deadline else { return }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < heap.count, heap[left].deadline < heap[smallest].deadline { smallest = left }
            if right < heap.count, heap[right].deadline < heap[smallest].deadline { smallest = right }
            guard smallest != parent else { return }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
