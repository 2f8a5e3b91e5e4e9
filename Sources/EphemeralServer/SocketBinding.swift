#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Why a broker could not claim its socket.
public struct SocketSetupError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, for people.
    public let description: String
    /// Whether another broker is already serving the path.
    public let alreadyRunning: Bool

    init(_ description: String, alreadyRunning: Bool = false) {
        self.description = description
        self.alreadyRunning = alreadyRunning
    }
}

/// A socket path prepared so that no other user can ever connect to it, and what to undo at shutdown.
///
/// - A private location is a `mkdtemp` directory (mode 0700) under `TMPDIR`: the socket is bound inside it, so
///   there is no moment in which the socket is reachable by others.
/// - A fixed path is claimed with an exclusive `flock` on `<path>.lock` (so of two brokers starting on one path,
///   exactly one wins), checked for a live broker, then the socket is bound inside a private directory next to it,
///   set to 0700, and renamed into place: the path only ever names a socket that is already private.
struct SocketBinding: Sendable {
    /// The path clients connect to.
    let path: String
    /// Where NIO binds: the final path, or a private staging path renamed to ``path`` after binding.
    let bindPath: String
    /// A private directory to remove at shutdown (the socket's own, or the staging directory).
    let directory: String?
    /// The lock held for a fixed path.
    let lockPath: String?
    let lockDescriptor: Int32?
    /// The staging directory held open while binding through `/proc/self/fd/N/` (Linux), so that how long the
    /// staging directory's own path is never counts against the socket path's limit.
    var stagingDescriptor: Int32? = nil
    /// Why `TMPDIR` could not be used, when the socket went to `/tmp` instead.
    var fallbackReason: String? = nil

    /// The longest socket path the kernel accepts (`sun_path` holds 108 bytes with its NUL).
    static let maxPathBytes = 107

    static func prepare(_ location: SocketLocation) throws(SocketSetupError) -> SocketBinding {
        switch location {
        case .privateDirectory(let pipeId):
            return try privateDirectory(pipeId: pipeId)
        case .path(let path):
            return try fixedPath(path)
        }
    }

    private static func privateDirectory(pipeId: String?) throws(SocketSetupError) -> SocketBinding {
        let id = pipeId ?? randomID()
        guard !id.isEmpty, !id.contains("/") else { throw SocketSetupError("pipe id must be a non-empty name") }
        var candidates = [String]()
        if let tmp = getenv("TMPDIR").map({ String(cString: $0) }), !tmp.isEmpty { candidates.append(tmp) }
        candidates.append("/tmp")
        var problems = [String]()
        for base in candidates {
            if let problem = ownershipProblem(base) {
                problems.append(problem)
                continue
            }
            let trimmed = base.hasSuffix("/") ? String(base.dropLast()) : base
            let directoryTemplate = "\(trimmed)/eb-XXXXXX"
            let socketPath = "\(trimmed)/eb-000000/broker-\(id).sock"
            guard socketPath.utf8.count <= maxPathBytes else {
                problems.append("a socket path under \(base) would exceed \(maxPathBytes) bytes")
                continue
            }
            guard let directory = makePrivateDirectory(directoryTemplate) else {
                problems.append("cannot create a private directory under \(base): \(errnoText())")
                continue
            }
            let path = "\(directory)/broker-\(id).sock"
            var binding = SocketBinding(
                path: path, bindPath: path, directory: directory, lockPath: nil,
                lockDescriptor: nil)
            binding.fallbackReason = problems.isEmpty ? nil : problems.joined(separator: "; ")
            return binding
        }
        throw SocketSetupError(problems.joined(separator: "; "))
    }

    private static func fixedPath(_ path: String) throws(SocketSetupError) -> SocketBinding {
        guard path.utf8.count <= maxPathBytes else {
            throw SocketSetupError("socket path exceeds \(maxPathBytes) bytes: \(path)")
        }
        let parent = parentDirectory(of: path)
        var parentStat = stat()
        guard stat(parent, &parentStat) == 0, (parentStat.st_mode & S_IFMT) == S_IFDIR else {
            throw SocketSetupError("socket directory \(parent) does not exist")
        }
        guard parentStat.st_mode & (S_IWGRP | S_IWOTH) == 0 else {
            throw SocketSetupError(
                "socket directory \(parent) is writable by other users; use a directory only you can write")
        }
        guard parentStat.st_uid == getuid() else {
            throw SocketSetupError(
                "socket directory \(parent) belongs to uid \(parentStat.st_uid), not to you (uid \(getuid())): its "
                    + "owner could replace the socket; use a directory of your own")
        }
        let lockPath = path + ".lock"
        let lock = try lockFile(lockPath, for: path)
        do throws(SocketSetupError) {
            var existing = stat()
            if lstat(path, &existing) == 0 {
                guard (existing.st_mode & S_IFMT) == S_IFSOCK else {
                    throw SocketSetupError("\(path) exists and is not a socket; refusing to replace it")
                }
                if isLive(path) { throw SocketSetupError("Broker already running on \(path)", alreadyRunning: true) }
                unlink(path)  // stale: its broker died without cleaning up
            }
            guard let staging = makePrivateDirectory("\(parent)/.eb-XXXXXX") else {
                throw SocketSetupError("cannot create a private directory in \(parent): \(errnoText())")
            }
            var bindPath = "\(staging)/s"
            var stagingDescriptor: Int32? = nil
            #if os(Linux)
                // Bound through the directory's descriptor, the staging path is as short as it can be, so every path
                // the user may name (up to the kernel's limit) can be bound.
                let descriptor = open(staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                if descriptor >= 0 {
                    bindPath = "/proc/self/fd/\(descriptor)/s"
                    stagingDescriptor = descriptor
                }
            #endif
            guard bindPath.utf8.count <= maxPathBytes else {
                rmdir(staging)
                throw SocketSetupError(
                    "socket path \(path) is too long to stage its socket beside it; use a path of at most "
                        + "\(maxPathBytes - (bindPath.utf8.count - path.utf8.count)) bytes")
            }
            var binding = SocketBinding(
                path: path, bindPath: bindPath, directory: staging, lockPath: lockPath,
                lockDescriptor: lock)
            binding.stagingDescriptor = stagingDescriptor
            return binding
        } catch {
            unlink(lockPath)  // ours while we hold it: a failed start leaves no lock file behind
            close(lock)
            throw error
        }
    }

    /// Opens and locks `lockPath`: never through a symlink, and only a regular file of ours (another user's file, or
    /// a link planted to make the broker create or lock a file elsewhere, is refused). A broker that stops removes
    /// its lock file; one that was opened just before is then locked by nobody else, so the lock counts only while
    /// the path still names the locked file: otherwise it is taken again.
    private static func lockFile(_ lockPath: String, for path: String) throws(SocketSetupError) -> Int32 {
        for _ in 0..<10 {
            let lock = open(lockPath, O_CREAT | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard lock >= 0 else {
                let reason = errno == ELOOP ? "it is a symbolic link" : errnoText()
                throw SocketSetupError("cannot open lock file \(lockPath): \(reason); remove it and start again")
            }
            var locked = stat()
            guard fstat(lock, &locked) == 0, (locked.st_mode & S_IFMT) == S_IFREG, locked.st_uid == getuid() else {
                close(lock)
                throw SocketSetupError(
                    "lock file \(lockPath) is not a regular file of yours (uid \(getuid())); remove it and start again")
            }
            guard flock(lock, LOCK_EX | LOCK_NB) == 0 else {
                close(lock)
                throw SocketSetupError("Broker already running on \(path)", alreadyRunning: true)
            }
            var named = stat()
            if lstat(lockPath, &named) == 0, named.st_ino == locked.st_ino, named.st_dev == locked.st_dev { return lock }
            close(lock)  // removed (or replaced) by a broker that stopped meanwhile: lock the file there now
        }
        throw SocketSetupError("cannot hold the lock file \(lockPath): it keeps being replaced")
    }

    /// Called once the socket is bound: makes it private and moves it to its final path.
    func finishBinding() throws(SocketSetupError) {
        guard chmod(bindPath, 0o700) == 0 else { throw SocketSetupError("cannot chmod \(bindPath): \(errnoText())") }
        guard bindPath != path else { return }
        guard rename(bindPath, path) == 0 else {
            throw SocketSetupError("cannot move the socket to \(path): \(errnoText())")
        }
        if let directory { rmdir(directory) }
    }

    /// Removes the socket, its private directory and the lock: nothing is left behind.
    func remove() {
        unlink(path)
        if bindPath != path, let directory { unlink(directory + "/s") }
        if let stagingDescriptor { close(stagingDescriptor) }
        if let directory { rmdir(directory) }
        if let lockPath, let lockDescriptor {
            unlink(lockPath)
            close(lockDescriptor)
        }
    }

    /// Whether something accepts connections on `path`.
    static func isLive(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(streamSocketType) | closeOnExecFlag, 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return result == 0
    }

    /// Why a directory must not hold the broker's private directory: another user owns it (and could rename or
    /// replace what is made in it), unless it is root's and sticky, as `/tmp` is. `nil` when it may.
    private static func ownershipProblem(_ directory: String) -> String? {
        var info = stat()
        guard stat(directory, &info) == 0 else { return "\(directory): \(errnoText())" }
        let sticky = info.st_mode & S_ISVTX != 0
        guard info.st_uid == getuid() || (info.st_uid == 0 && sticky) else {
            return "\(directory) belongs to uid \(info.st_uid), not to you (uid \(getuid()))"
        }
        return nil
    }

    private static func makePrivateDirectory(_ template: String) -> String? {
        var bytes = Array(template.utf8CString)
        let made = bytes.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { return nil }
        return String(decoding: bytes.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    private static func randomID() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<12).map { _ in alphabet.randomElement()! })
    }
}

#if canImport(Glibc)
    private let streamSocketType = SOCK_STREAM.rawValue
    private let closeOnExecFlag = Int32(SOCK_CLOEXEC.rawValue)
#else
    private let streamSocketType = SOCK_STREAM
    private let closeOnExecFlag: Int32 = 0  // Darwin: no SOCK_CLOEXEC; the probe socket lives a moment
#endif

func errnoText() -> String { String(cString: strerror(errno)) }
