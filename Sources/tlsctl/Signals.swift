import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// Signals for the long-running commands (`tlsctl serve`): SIGINT and SIGTERM stop, SIGHUP
// reloads. The C handler only writes a byte; the command's own code runs on a thread.

/// The write end of the signal pipe, for the C signal handler (set once, before any
/// handler is installed; an `Int32` is read atomically).
nonisolated(unsafe) private var signalPipeWriteEnd: Int32 = -1

/// SIGINT/SIGTERM handling with the self-pipe trick: a process-wide `sigaction` handler
/// (whichever thread the kernel picks) writes the signal number to a pipe, and a thread of
/// its own reads it and calls `handler`. (A Dispatch signal source on Linux blocks the signal
/// only in its own thread: delivered to another, it would still kill the process.)
enum SignalHandlers {
    static func install(signals: [Int32], handler: @escaping @Sendable (Int32) -> Void) {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { return }
        _ = fcntl(ends[1], F_SETFD, FD_CLOEXEC)
        _ = fcntl(ends[0], F_SETFD, FD_CLOEXEC)
        signalPipeWriteEnd = ends[1]
        let readEnd = ends[0]
        let thread = Thread {
            var number: UInt8 = 0
            while true {
                let count = read(readEnd, &number, 1)
                if count == 1 {
                    handler(Int32(number))
                } else if count < 0 && errno == EINTR {
                    continue
                } else {
                    return
                }
            }
        }
        thread.start()
        for number in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { signal in
                var byte = UInt8(truncatingIfNeeded: signal)
                _ = write(signalPipeWriteEnd, &byte, 1)
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(number, &action, nil)
        }
    }
}
