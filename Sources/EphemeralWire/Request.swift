#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The actions a broker understands, named as in the request's `action` member.
public enum Action: String, Sendable, CaseIterable {
    /// Liveness check: `{"ok":true,"pong":<epoch ms>}`.
    case ping
    /// Read a value.
    case get
    /// Store a value with a time to live.
    case set
    /// Delete a key (succeeds for a missing key too).
    case del
    /// List live keys and their expiry, never their values.
    case list
    /// Item and lease counts, memory and uptime.
    case stats
    /// Health: capacity, connections and whether the broker is draining.
    case health
    /// Prometheus text exposition of the broker's counters.
    case metrics
    /// The original lease: the lowest free integer for a key, per worker.
    case lease
    /// Release the lease a worker holds, or a pool item.
    case release
    /// Define a pool of exclusive items (extension).
    case definePool = "define_pool"
    /// Extend a pool lease (extension).
    case renew
    /// Add to an integer counter atomically (extension).
    case incr
    /// Wait until a key exists (extension).
    case wait
    /// Compute-once: get the value, or the right to compute it (extension).
    case claim
    /// Give up a compute-once claim (extension).
    case unclaim
    /// Wait until N parties arrive (extension).
    case barrier

    /// Every action with its name's UTF-8, for matching a request's `action` as bytes.
    private static let utf8Names = allCases.map { (action: $0, name: Array($0.rawValue.utf8)) }

    /// The action named by `bytes`, the UTF-8 of a name, matched without making a `String` of it.
    /// - Returns: `nil` when no action has that name.
    init?(utf8 bytes: UnsafeRawBufferPointer) {
        for (action, name) in Self.utf8Names where name.count == bytes.count {
            if name.withUnsafeBytes({ memcmp($0.baseAddress!, bytes.baseAddress!, bytes.count) }) == 0 {
                self = action
                return
            }
        }
        return nil
    }
}

/// A validated command: an action with the members it needs, each of the right type.
public enum Command: Sendable, Equatable {
    /// `ping`.
    case ping
    /// `get` of a key.
    case get(key: String)
    /// `set` of a key.
    case set(SetCommand)
    /// `del` of a key.
    case del(key: String)
    /// `list`.
    case list
    /// `stats`.
    case stats
    /// `health`.
    case health
    /// `metrics`.
    case metrics
    /// `lease` of the lowest free integer for `key`; `ttl` in milliseconds when given.
    case lease(key: String, workerId: String, ttl: Double?)
    /// `release` of the lease `workerId` holds.
    case release(workerId: String)
    /// `define_pool` by capacity or by items (each compact JSON).
    case definePool(pool: String, capacity: Int?, items: [[UInt8]]?)
    /// `lease` of a pool item, waiting up to `wait` ms; `ttl` in ms when given.
    case leasePool(pool: String, wait: Double?, ttl: Double?)
    /// `renew` of a pool lease.
    case renewPool(pool: String, index: Int, fence: UInt64, ttl: Double?)
    /// `release` of a pool lease.
    case releasePool(pool: String, index: Int, fence: UInt64)
    /// `incr` of a counter by `by`; `ttl` in ms for a new counter.
    case incr(key: String, by: Int64, ttl: Double?)
    /// `wait` until `key` exists, up to `timeout` ms.
    case wait(key: String, timeout: Double)
    /// `claim` of `key` for `ttl` ms, waiting up to `wait` ms for another's computation; with `refreshBefore`, a
    /// value expiring within that many ms is handed out together with a claim to refresh it.
    case claim(key: String, ttl: Double?, wait: Double?, refreshBefore: Double?)
    /// `unclaim` of a claim that failed.
    case unclaim(key: String, token: UInt64)
    /// `barrier` arrival: wait until `parties` have arrived, up to `timeout` ms.
    case barrier(key: String, parties: Int, timeout: Double)

    /// The action this command performs.
    public var action: Action {
        switch self {
        case .ping: .ping
        case .get: .get
        case .set: .set
        case .del: .del
        case .list: .list
        case .stats: .stats
        case .health: .health
        case .metrics: .metrics
        case .lease, .leasePool: .lease
        case .release, .releasePool: .release
        case .definePool: .definePool
        case .renewPool: .renew
        case .incr: .incr
        case .wait: .wait
        case .claim: .claim
        case .unclaim: .unclaim
        case .barrier: .barrier
        }
    }

    /// Whether the request may wait in the broker for its reply (a pool lease or a claim with a wait, a `wait`, a
    /// barrier): such requests are counted against the bounds on parked requests.
    public var mayWait: Bool {
        switch self {
        case .leasePool(_, let wait, _): (wait ?? 0) > 0
        case .claim(_, _, let wait, _): (wait ?? 0) > 0
        case .wait(_, let timeout): timeout > 0
        case .barrier: true
        default: false
        }
    }
}

/// The members of a `set` request.
public struct SetCommand: Sendable, Equatable {
    /// The key to store under.
    public var key: String
    /// The value as compact JSON bytes, stored and returned verbatim.
    public var value: [UInt8]
    /// The time to live in milliseconds, `nil` when the request gave none (or `null`).
    public var ttl: Double?
    /// Whether `value` is a JSON string holding base64 of gzip-compressed JSON (the original client's scheme).
    public var compressed: Bool
    /// Store only if the key does not exist (otherwise `exists`).
    public var ifAbsent: Bool = false
    /// Store only if the key's current version is this one (otherwise `version_mismatch`).
    public var ifVersion: UInt64?
    /// Delete the value after this many reads.
    public var maxReads: Int?

    /// Creates a `set` command.
    /// - Parameters:
    ///   - key: The key.
    ///   - value: Compact JSON bytes of the value.
    ///   - ttl: Milliseconds, or `nil` for none given.
    ///   - compressed: Whether the value is compressed.
    public init(key: String, value: [UInt8], ttl: Double?, compressed: Bool = false) {
        self.key = key
        self.value = value
        self.ttl = ttl
        self.compressed = compressed
    }
}

/// A decoded request line: its command (or why it has none) and the signing members around it.
public struct Request: Sendable {
    /// The action named by the request, `nil` when it named none this broker knows.
    public var action: Action?
    /// The command, or the named error that its members earned.
    public var command: Result<Command, BrokerError>
    /// Whether the request carried a valid HMAC (only ever `true` when the broker has a secret).
    public var isSigned: Bool
    /// The request's `ts` member (epoch milliseconds), used against replay.
    public var timestamp: Double?
    /// The request's `nonce` member, used against replay and to bind the signed reply.
    public var nonce: String?
    /// The request's `id` member (a number or a short string, as compact JSON), echoed in its reply so a
    /// pipelining client can tell that every reply is the one it waits for.
    public var id: [UInt8]?
}

/// Turns one request line into a ``Request``.
public struct RequestDecoder: Sendable {
    /// The signer that checks each request's HMAC, or `nil` when the broker has no secret.
    public let signer: FrameSigner?

    /// Creates a decoder.
    /// - Parameter signer: Checks the `hmac` member of every request when given.
    public init(signer: FrameSigner?) {
        self.signer = signer
    }

    /// Decodes one line (without its newline).
    /// - Parameter line: The request bytes.
    /// - Returns: The request.
    /// - Throws: ``BrokerError`` with `invalid_json` or `invalid_request` when the line is not a JSON object;
    ///   every other error (including `auth_failed`) is returned in ``Request/command``, so its reply can carry the
    ///   request's `id`.
    public func decode(_ line: UnsafeRawBufferPointer) throws(BrokerError) -> Request {
        var scanner = JSONScanner(line)
        guard let object = try scanner.scanTopLevel() else {
            throw BrokerError(.invalidRequest, "a request must be a JSON object")
        }
        var id: [UInt8]?
        if let member = object.member("id", in: scanner.bytes), member.value.count <= 66,
            [UInt8(ascii: "\""), UInt8(ascii: "-")].contains(scanner.firstByte(of: member))
                || isDigit(scanner.firstByte(of: member))
        {
            id = scanner.compactBytes(member)
        }
        var isSigned = false
        if let signer {
            do throws(BrokerError) {
                try signer.verify(line: line, object: object, scanner: scanner)
            } catch {
                return Request(
                    action: nil, command: .failure(error), isSigned: false, timestamp: nil, nonce: nil, id: id)
            }
            isSigned = true
        }
        var timestamp: Double?
        var nonce: String?
        if let member = object.member("ts", in: scanner.bytes), !scanner.isNull(member) {
            guard let value = scanner.number(member) else {
                return Request(
                    action: nil, command: .failure(BrokerError(.invalidRequest, "ts must be a number")),
                    isSigned: isSigned, timestamp: nil, nonce: nil, id: id)
            }
            timestamp = value
        }
        if let member = object.member("nonce", in: scanner.bytes), !scanner.isNull(member) {
            guard let value = try scanner.string(member) else {
                return Request(
                    action: nil, command: .failure(BrokerError(.invalidRequest, "nonce must be a string")),
                    isSigned: isSigned, timestamp: timestamp, nonce: nil, id: id)
            }
            nonce = value
        }
        guard let actionMember = object.member("action", in: scanner.bytes),
            scanner.firstByte(of: actionMember) == UInt8(ascii: "\"")
        else {
            return Request(
                action: nil, command: .failure(BrokerError(.invalidRequest, "action must be a string")),
                isSigned: isSigned, timestamp: timestamp, nonce: nonce, id: id)
        }
        // The name is matched as its bytes, unless it was written with escapes.
        let named: Action?
        if let plain = scanner.plainStringBytes(actionMember) {
            named = Action(utf8: plain)
        } else {
            named = try scanner.string(actionMember).flatMap(Action.init(rawValue:))
        }
        guard let action = named else {
            return Request(
                action: nil, command: .failure(BrokerError(.unknownAction)), isSigned: isSigned,
                timestamp: timestamp, nonce: nonce, id: id)
        }
        let command: Result<Command, BrokerError>
        do {
            command = .success(try Self.command(action, object: object, scanner: scanner))
        } catch {
            command = .failure(error)
        }
        return Request(
            action: action, command: command, isSigned: isSigned, timestamp: timestamp, nonce: nonce,
            id: id)
    }

    private static func command(_ action: Action, object: JSONScanner.Object, scanner: JSONScanner)
        throws(BrokerError) -> Command
    {
        func key() throws(BrokerError) -> String {
            guard let member = object.member("key", in: scanner.bytes), let key = try scanner.string(member) else {
                throw BrokerError(.keyRequired, "key must be a string")
            }
            return key
        }
        func ttl() throws(BrokerError) -> Double? {
            guard let member = object.member("ttl", in: scanner.bytes), !scanner.isNull(member) else { return nil }
            guard let ttl = scanner.number(member), ttl.isFinite else {
                throw BrokerError(.invalidTTL, "ttl must be a number of milliseconds")
            }
            return ttl
        }
        func wholeNumber(_ member: JSONScanner.Member, _ name: StaticString, in range: ClosedRange<Double>)
            throws(BrokerError) -> Double
        {
            guard let number = scanner.number(member), number == number.rounded(), range.contains(number) else {
                throw BrokerError(
                    .invalidRequest,
                    "\(name) must be a whole number from \(Int64(range.lowerBound)) to \(Int64(range.upperBound))")
            }
            return number
        }
        func milliseconds(_ name: StaticString) throws(BrokerError) -> Double? {
            guard let member = object.member(name, in: scanner.bytes), !scanner.isNull(member) else { return nil }
            guard let number = scanner.number(member), number.isFinite else {
                throw BrokerError(.invalidWait, "\(name) must be a number of milliseconds")
            }
            return number
        }
        func nonEmptyString(_ name: StaticString) throws(BrokerError) -> String? {
            guard let member = object.member(name, in: scanner.bytes), let value = try scanner.string(member), !value.isEmpty else {
                return nil
            }
            return value
        }
        switch action {
        case .ping: return .ping
        case .list: return .list
        case .stats: return .stats
        case .health: return .health
        case .metrics: return .metrics
        case .get: return .get(key: try key())
        case .del: return .del(key: try key())
        case .set:
            let key = try key()
            guard let valueMember = object.member("value", in: scanner.bytes) else {
                throw BrokerError(.invalidRequest, "set needs a value")
            }
            var compressed = false
            if let member = object.member("compressed", in: scanner.bytes), !scanner.isNull(member) {
                guard let flag = scanner.bool(member) else {
                    throw BrokerError(.invalidRequest, "compressed must be a boolean")
                }
                compressed = flag
            }
            var set = SetCommand(
                key: key, value: scanner.compactBytes(valueMember), ttl: try ttl(),
                compressed: compressed)
            if let member = object.member("ifAbsent", in: scanner.bytes), !scanner.isNull(member) {
                guard let flag = scanner.bool(member) else {
                    throw BrokerError(.invalidRequest, "ifAbsent must be a boolean")
                }
                set.ifAbsent = flag
            }
            if let member = object.member("ifVersion", in: scanner.bytes), !scanner.isNull(member) {
                set.ifVersion = UInt64(try wholeNumber(member, "ifVersion", in: 0...9e15))
            }
            if let member = object.member("maxReads", in: scanner.bytes), !scanner.isNull(member) {
                set.maxReads = Int(try wholeNumber(member, "maxReads", in: 1...1e9))
            }
            return .set(set)
        case .incr:
            var by: Int64 = 1
            if let member = object.member("by", in: scanner.bytes), !scanner.isNull(member) {
                by = Int64(try wholeNumber(member, "by", in: -9e15...9e15))
            }
            return .incr(key: try key(), by: by, ttl: try ttl())
        case .wait:
            return .wait(key: try key(), timeout: try milliseconds("timeout") ?? 0)
        case .claim:
            return .claim(
                key: try key(), ttl: try ttl(), wait: try milliseconds("wait"),
                refreshBefore: try milliseconds("refreshBefore"))
        case .unclaim:
            guard let member = object.member("token", in: scanner.bytes) else {
                throw BrokerError(.invalidRequest, "unclaim needs a token")
            }
            return .unclaim(key: try key(), token: UInt64(try wholeNumber(member, "token", in: 1...9e15)))
        case .barrier:
            guard let member = object.member("parties", in: scanner.bytes) else {
                throw BrokerError(.invalidRequest, "barrier needs parties")
            }
            return .barrier(
                key: try key(), parties: Int(try wholeNumber(member, "parties", in: 1...100_000)),
                timeout: try milliseconds("timeout") ?? 0)
        case .definePool:
            guard let pool = try nonEmptyString("pool") else { throw BrokerError(.invalidPool, "pool must be a name") }
            var capacity: Int?
            var items: [[UInt8]]?
            if let member = object.member("items", in: scanner.bytes) {
                guard let elements = scanner.arrayElements(member) else {
                    throw BrokerError(.invalidPool, "items must be an array")
                }
                items = elements
            } else if let member = object.member("capacity", in: scanner.bytes) {
                guard let number = scanner.number(member), number == number.rounded(), number >= 1, number <= 1e6 else {
                    throw BrokerError(.invalidPool, "capacity must be a whole number from 1 to 1000000")
                }
                capacity = Int(number)
            } else {
                throw BrokerError(.invalidPool, "a pool needs capacity or items")
            }
            return .definePool(pool: pool, capacity: capacity, items: items)
        case .lease where object.member("pool", in: scanner.bytes) != nil:
            guard let pool = try nonEmptyString("pool") else { throw BrokerError(.unknownPool, "pool must be a name") }
            var wait: Double?
            if let member = object.member("wait", in: scanner.bytes), !scanner.isNull(member) {
                guard let number = scanner.number(member), number.isFinite else {
                    throw BrokerError(.invalidWait, "wait must be a number of milliseconds")
                }
                wait = number
            }
            return .leasePool(pool: pool, wait: wait, ttl: try ttl())
        case .renew,
            .release where object.member("pool", in: scanner.bytes) != nil:
            guard let pool = try nonEmptyString("pool") else { throw BrokerError(.unknownPool, "pool must be a name") }
            guard let indexMember = object.member("index", in: scanner.bytes), let index = scanner.number(indexMember),
                index == index.rounded(), index >= 0, index < 1e9,
                let fenceMember = object.member("fence", in: scanner.bytes), let fence = scanner.number(fenceMember),
                fence == fence.rounded(), fence >= 1, fence < 9e15
            else {
                throw BrokerError(.invalidRequest, "index and fence must be the whole numbers of a grant")
            }
            if action == .renew {
                return .renewPool(pool: pool, index: Int(index), fence: UInt64(fence), ttl: try ttl())
            }
            return .releasePool(pool: pool, index: Int(index), fence: UInt64(fence))
        case .lease:
            guard let key = try nonEmptyString("key"), let workerId = try nonEmptyString("workerId") else {
                throw BrokerError(.keyAndWorkerRequired)
            }
            return .lease(key: key, workerId: workerId, ttl: try ttl())
        case .release:
            guard let workerId = try nonEmptyString("workerId") else { throw BrokerError(.workerRequired) }
            return .release(workerId: workerId)
        }
    }
}
