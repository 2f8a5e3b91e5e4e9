/// Parses the durations the CLI accepts: `1500ms`, `30s`, `5m`, `1h`, or a bare number of milliseconds.
enum DurationParser {
    /// - Returns: Milliseconds, or `nil` when `text` is not a non-negative duration.
    static func milliseconds(_ text: String) -> Int64? {
        let trimmed = text.trimmingCharacters(in: " ")
        let units: [(suffix: String, factor: Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        var number = Substring(trimmed)
        var factor = 1.0
        for unit in units where trimmed.hasSuffix(unit.suffix) {
            number = trimmed.dropLast(unit.suffix.count)
            factor = unit.factor
            break
        }
        guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
            let value = Double(number), value.isFinite, value >= 0, value * factor < 9e15
        else { return nil }
        return Int64((value * factor).rounded())
    }
}

extension String {
    fileprivate func trimmingCharacters(in character: Character) -> String {
        var text = Substring(self)
        while text.first == character { text.removeFirst() }
        while text.last == character { text.removeLast() }
        return String(text)
    }
}
