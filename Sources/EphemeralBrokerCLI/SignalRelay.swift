import Dispatch
import EphemeralWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The termination signals (SIGINT, SIGTERM, SIGHUP, SIGQUIT) of a process that runs a command for its user:
/// `run`, `serve`, `lease -- CMD`, `shared -- CMD`.
///
/// Installed first thing, before anything the user can observe (a socket, a printed path, a hook), it catches them
/// for the process's whole life instead of letting one end the process mid-way and leave a socket directory, a
/// lock file or a running hook behind. A caught signal is passed to the child running at that moment (its process
/// group, when it has one of its own), and remembered: each phase of the wrapper asks ``received`` and stops
/// early. When the command died of a signal, ``dieBySignal(_:)`` re-raises it with the default action after the
/// cleanup, so a calling shell sees a signal death (and a `for` loop stops on Ctrl-C).
final class SignalRelay: @unchecked Sendable {  // state behind `lock`; the source is set once in init
    /// The child the signals go to.
    struct Child {
        var pid: pid_t
        /// Whether it leads a process group of its own (signals go to the whole group). Otherwise it shares the
        /// wrapper's group, the terminal's foreground group: SIGINT and SIGQUIT typed at the terminal reach it
        /// directly, so only SIGTERM and SIGHUP are passed on.
        var ownGroup: Bool
    }

    static let signals = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]

    private let lock = Locked<(child: Child?, received: Int32?, unforwarded: Int32?, pending: Int32?)>(
        (nil, nil, nil, nil))
    private let source: any DispatchSourceRead
    private let onSignal: (@Sendable (Int32) -> Void)?

    /// Starts catching the termination signals: when this returns, each of them is caught.
    ///
    /// A handler of our own (`sigaction`) writes the signal's number to a pipe, which a dispatch source reads: the
    /// handler is in place before the first resource exists, and nothing is lost while the source registers (the
    /// pipe keeps what was written). A dispatch signal source alone registers its handler later, asynchronously:
    /// a signal in between ended the process with the default action after it had made its socket directory.
    /// - Parameter onSignal: Called (on a private queue) with each signal caught while no child runs.
    init(onSignal: (@Sendable (Int32) -> Void)? = nil) {
        self.onSignal = onSignal
        var ends: [Int32] = [-1, -1]
        _ = pipe(&ends)
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        _ = fcntl(ends[1], F_SETFL, fcntl(ends[1], F_GETFL) | O_NONBLOCK)  // a handler must never block
        signalPipe.store(ends[1], ordering: .releasing)
        let reading = ends[0]
        source = DispatchSource.makeReadSource(fileDescriptor: reading, queue: DispatchQueue(label: "ephemeral-broker.signals"))
        let relay = Locked<SignalRelay?>(nil)
        source.setEventHandler {
            var byte: UInt8 = 0
            while read(reading, &byte, 1) == 1 { relay.withLock { $0 }?.caught(Int32(byte)) }
        }
        relay.withLock { $0 = self }
        _ = fcntl(reading, F_SETFL, fcntl(reading, F_GETFL) | O_NONBLOCK)
        source.resume()
        Self.setAction(relaySignalHandler, for: Self.signals, flags: Int32(SA_RESTART))
    }

    /// The first signal caught, if any.
    var received: Int32? { lock.withLock { $0.received } }

    /// The first signal caught while no child ran (start-up, between phases, waiting for leftover workers): it
    /// was meant for the wrapper itself, which dies of it once it has cleaned up. A signal passed to a child is
    /// that child's to act on: the wrapper then ends as the child did.
    var unforwarded: Int32? { lock.withLock { $0.unforwarded } }

    /// Sends the signals caught from now on to `child`, and one caught while it was being started (after its
    /// phase checked ``unforwarded``) at once.
    func attach(_ child: Child) {
        let pending = lock.withLock { state -> Int32? in
            state.child = child
            defer { state.pending = nil }
            return state.pending
        }
        if let pending { forward(pending, to: child) }
    }

    /// No child runs any more.
    func detach() { lock.withLock { $0.child = nil } }

    private func caught(_ number: Int32) {
        let child = lock.withLock { state -> Child? in
            if state.received == nil { state.received = number }
            if state.child == nil {
                if state.unforwarded == nil { state.unforwarded = number }
                state.pending = number
            }
            return state.child
        }
        if let child {
            forward(number, to: child)
        } else {
            onSignal?(number)
        }
    }

    private func forward(_ number: Int32, to child: Child) {
        if child.ownGroup {
            kill(-child.pid, number)
        } else if number == SIGTERM || number == SIGHUP {
            kill(child.pid, number)
        }
    }

    /// Ends this process by `number` with its default action, after the caller has cleaned up: the parent sees a
    /// death by that signal. Core dumps are off, so a command's crash does not make the wrapper dump core too.
    func dieBySignal(_ number: Int32) -> Never {
        Self.dieBySignal(number)
    }

    /// ``dieBySignal(_:)`` for a process that caught no signals.
    static func dieBySignal(_ number: Int32) -> Never {
        var noCore = rlimit(rlim_cur: 0, rlim_max: 0)
        _ = withUnsafePointer(to: &noCore) { setrlimit(resourceCoreLimit, $0) }
        // The default action, whatever handler was there (ours, or the Swift runtime's backtracer for SIGQUIT),
        // raised on this thread with the signal unblocked: it ends the process before the next line.
        setAction(SIG_DFL, for: [number])
        var set = signalSet([number])
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        pthread_kill(pthread_self(), number)
        _exit(128 + number)  // a signal whose default action is to be ignored
    }

    /// Unblocks the termination signals in the calling thread (the main thread, first thing): a parent may start
    /// this process with them blocked (a test runner's thread, say), and every thread inherits its creator's mask,
    /// so they would stay pending and the process could not be stopped.
    static func unblockInThisThread() {
        var set = signalSet(signals)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        // The Swift runtime's backtracer takes SIGQUIT as a crash, prints a backtrace and lets the process go on:
        // until a relay catches it, SIGQUIT ends the process, as it does any other program.
        setAction(SIG_DFL, for: [SIGQUIT])
    }

    /// Makes `handler` (a function, or `SIG_DFL`) the action of each of `numbers`.
    private static func setAction(_ handler: SignalHandler?, for numbers: [Int32], flags: Int32 = 0) {
        var action = sigaction()
        #if canImport(Glibc)
            action.__sigaction_handler.sa_handler = handler
        #else
            action.__sigaction_u.__sa_handler = handler
        #endif
        sigemptyset(&action.sa_mask)
        action.sa_flags = flags
        for number in numbers { sigaction(number, &action, nil) }
    }

    private static func signalSet(_ numbers: [Int32]) -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for number in numbers { sigaddset(&set, number) }
        return set
    }
}

#if canImport(Glibc)
    private let resourceCoreLimit = __rlimit_resource_t(RLIMIT_CORE.rawValue)
    private typealias SignalHandler = __sighandler_t
#else
    private let resourceCoreLimit = RLIMIT_CORE
    private typealias SignalHandler = @convention(c) (Int32) -> Void
#endif

/// The write end of the pipe the signal handler writes to (set before the handler is installed; an atomic, so the
/// handler's read on another thread is ordered after it, for ThreadSanitizer too).
private let signalPipe = Atomic<Int32>(-1)

/// Writes the signal's number to the relay's pipe: all an async-signal-safe handler may do.
private func relaySignalHandler(_ number: Int32) {
    let saved = errno
    var byte = UInt8(truncatingIfNeeded: number)
    _ = write(signalPipe.load(ordering: .acquiring), &byte, 1)
    errno = saved
}
