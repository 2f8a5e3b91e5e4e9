/// The one error type of EphemeralBroker: every failure a broker reports, with its wire name.
///
/// Each ``Code`` is exactly the `error` member the broker puts on the wire (`not_found`, `too_large`, …), so a
/// Swift worker, a Node worker and a shell script all see the same name for the same failure.
public struct BrokerError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure, named as on the wire.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The error name as it appears in the reply's `error` member.
        public let wireName: String

        /// Creates a code from its wire name; unknown names are kept, so a newer broker's codes survive.
        /// - Parameter wireName: The `error` member of a reply.
        public init(wireName: String) { self.wireName = wireName }

        /// A textual representation: the wire name.
        public var description: String { wireName }

        /// The request line was not valid UTF-8 JSON.
        public static let invalidJSON = Code(wireName: "invalid_json")
        /// The request was JSON but not an object with the members its action needs, or a member had the wrong type.
        public static let invalidRequest = Code(wireName: "invalid_request")
        /// The `action` member named no action this broker knows.
        public static let unknownAction = Code(wireName: "unknown_action")
        /// The request carried no string `key`.
        public static let keyRequired = Code(wireName: "key_required")
        /// The key does not exist.
        public static let notFound = Code(wireName: "not_found")
        /// The key existed but its time to live ran out (reported once, then the key is gone).
        public static let expired = Code(wireName: "expired")
        /// A TTL was negative, zero where one is required, not a number, or absurdly large.
        public static let invalidTTL = Code(wireName: "invalid_ttl")
        /// The broker requires a TTL on every `set` and none was given.
        public static let ttlRequired = Code(wireName: "ttl_required")
        /// A request line or a value exceeded its byte limit.
        public static let tooLarge = Code(wireName: "too_large")
        /// A new key would exceed the broker's `maxItems`.
        public static let maxItems = Code(wireName: "max_items")
        /// A compressed value was not base64 of gzip data.
        public static let invalidCompressedValue = Code(wireName: "invalid_compressed_value")
        /// `lease` needs a non-empty `key` and `workerId`.
        public static let keyAndWorkerRequired = Code(wireName: "key_and_worker_required")
        /// The worker already holds a lease on another key.
        public static let workerAlreadyHasLease = Code(wireName: "worker_already_has_lease")
        /// `release` needs a non-empty `workerId`.
        public static let workerRequired = Code(wireName: "worker_required")
        /// No pool has that name.
        public static let unknownPool = Code(wireName: "unknown_pool")
        /// A pool definition had no items, too many, or a malformed member.
        public static let invalidPool = Code(wireName: "invalid_pool")
        /// A pool of that name exists with another definition.
        public static let poolExists = Code(wireName: "pool_exists")
        /// Every item of the pool is held and the caller would not wait.
        public static let poolExhausted = Code(wireName: "pool_exhausted")
        /// A wait ran out before an item (or a value) became available.
        public static let timeout = Code(wireName: "timeout")
        /// A wait time was negative, not a number, or absurdly long.
        public static let invalidWait = Code(wireName: "invalid_wait")
        /// The item named is not leased.
        public static let notHolder = Code(wireName: "not_holder")
        /// The fence is not the item's current grant: the lease lapsed and was granted again.
        public static let staleFence = Code(wireName: "stale_fence")
        /// A conditional `set` (`ifAbsent`) found the key already there.
        public static let exists = Code(wireName: "exists")
        /// A compare-and-set (`ifVersion`) found another version: someone wrote the key meanwhile.
        public static let versionMismatch = Code(wireName: "version_mismatch")
        /// `incr` on a value that is not an integer, or that would overflow.
        public static let notANumber = Code(wireName: "not_a_number")
        /// The request's HMAC was missing, malformed or wrong.
        public static let authFailed = Code(wireName: "auth_failed")
        /// The signed request's timestamp was stale or its nonce was seen before.
        public static let replayed = Code(wireName: "replayed")
        /// The broker already serves its maximum number of connections; this one is closed.
        public static let tooManyConnections = Code(wireName: "too_many_connections")
        /// The broker is shutting down and takes no new requests.
        public static let draining = Code(wireName: "draining")
        /// A request that would wait (a pool lease, `wait`, `claim`, `barrier`) found its connection, or the broker,
        /// already holding its maximum of waiting requests (1,024 per connection, 65,536 in all).
        public static let tooManyWaiters = Code(wireName: "too_many_waiters")
        /// A request line was begun and not finished within the broker's request timeout (a peer dribbling
        /// bytes); the connection is closed.
        public static let requestTimeout = Code(wireName: "request_timeout")

        /// The refusals a broker sends without a MAC and without a request's `id`, because it never read (or
        /// could not authenticate) the request: `auth_failed`, `too_large`, `too_many_connections` and
        /// `request_timeout`. They grant nothing, so a client accepts them unsigned.
        public static let unsignedRefusals: [Code] = [.authFailed, .tooLarge, .tooManyConnections, .requestTimeout]

        // Raised by clients, never sent by a broker:

        /// No broker socket was configured (`EPHEMERAL_PIPE` is not set).
        public static let notConfigured = Code(wireName: "not_configured")
        /// The broker could not be reached, or the connection broke, within the client's timeout.
        public static let connectionFailed = Code(wireName: "connection_failed")
        /// The broker's reply was not a well-formed reply line.
        public static let invalidReply = Code(wireName: "invalid_reply")
        /// The reply to a signed request carried no MAC, or a wrong one: it did not come from a broker with the
        /// shared secret.
        public static let badReplySignature = Code(wireName: "bad_reply_signature")
        /// A value could not be encoded to or decoded from JSON as the caller's type.
        public static let invalidValue = Code(wireName: "invalid_value")
    }

    /// What went wrong, as named on the wire.
    public let code: Code
    /// A human-readable explanation; never contains a secret or a stored value.
    public let message: String?

    /// Creates an error.
    /// - Parameters:
    ///   - code: The wire error name.
    ///   - message: An optional explanation for people.
    public init(_ code: Code, _ message: String? = nil) {
        self.code = code
        self.message = message
    }

    /// The wire name, followed by the message when there is one.
    public var description: String {
        if let message { return "\(code.wireName): \(message)" }
        return code.wireName
    }
}
