import NIOCore

/// Runs a task's jobs on one event loop: the task executor preference of the work a
/// ``GnuTLSHandler`` does beside a handshake (the ``TLSVerificationHook``, online revocation
/// checks), so a handshake never waits for a free thread of the Swift concurrency pool,
/// which a busy service may hold longer than the handshake timeout; and of ``TLSServer``'s
/// accept loop and connection tasks, whose awaits on their channels then cost no thread hop.
final class EventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(_ eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        eventLoop.execute { job.runSynchronously(on: executor) }
    }
}
