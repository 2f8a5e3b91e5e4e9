import Foundation

/// Parses a reply line into a dictionary.
/// - Throws: When the line is not a JSON object.
public func json(_ line: String) throws -> [String: Any] {
    guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
        throw TestFailure("not a JSON object: \(line)")
    }
    return object
}

/// The `error` member of a reply, or `nil` for success.
/// - Throws: When the line is not a JSON object.
public func errorName(_ line: String) throws -> String? {
    let reply = try json(line)
    return reply["ok"] as? Bool == true ? nil : reply["error"] as? String
}
