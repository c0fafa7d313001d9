import Foundation
import GnuTLS
import GnuTLSAuthority
import NIOGnuTLS
import NIOGnuTLSAuthority
import Testing
import TestSupport

/// Runs a task's first job, then holds every later one until ``open()``: the state of a task
/// that suspended and whose executor (the cooperative pool, held by busy tasks) has no
/// thread to resume it on.
private final class GatedExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked: `jobs`, `ran` and `isOpen` are only touched with `condition` locked.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var ran = 0
    private var isOpen = false

    init() {
        let thread = Thread { [self] in self.work() }
        thread.name = "OCSPClientExecutorTests.GatedExecutor"
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.broadcast()
        condition.unlock()
    }

    func open() {
        condition.lock()
        isOpen = true
        condition.broadcast()
        condition.unlock()
    }

    private func work() {
        while true {
            condition.lock()
            while jobs.isEmpty || (ran > 0 && !isOpen) { condition.wait() }
            let job = jobs.removeFirst()
            ran += 1
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// The OCSP client's exchange runs on the event loop: the calling task is needed only for the
/// answer. It used to send the request itself after the connect returned, so a task waiting
/// for a pool thread let the responder's request timeout (10 s) close the connection ("the
/// connection closed before a complete answer" in ASan runs of the OCSP tests).
@Suite struct OCSPClientExecutorTests {
    @Test func theRequestIsAnsweredWhileTheFetchingTaskCannotResume() async throws {
        let directory = try TemporaryDirectory(prefix: "ocsp-gated")
        defer { directory.remove() }
        let (ca, leaf) = try ocspAuthorityAndLeaf(in: directory, root: "CN=Gated Fetch Root", leaf: "gated.example.com")
        let (serverLogger, serverLog) = capturingLogger("ocsp-server")
        let server = try await OCSPServer.start(responder: try OCSPResponder(authority: ca), logger: serverLogger)
        let request = try OCSPRequest(certificate: leaf, issuer: ca.certificate)
        let url = "http://127.0.0.1:\(server.port)/"

        let gate = GatedExecutor()
        let fetch = Task(executorPreference: gate) { try await OCSPClient.fetch(request, from: url) }
        // The task ran up to its first suspension (the connect) and cannot go on: the
        // responder must get the request and answer all the same.
        let answered = await eventually { serverLog.events(TLSLogEvent.ocspRequest).count == 1 }
        gate.open()
        #expect(answered, "the request was not sent while the fetching task could not resume")
        let response = try await fetch.value
        #expect(response.responseStatus == .successful)
        try await server.close()
    }
}
