import Foundation
import Testing
import TestSupport

@Suite("tlsctl bench")
struct BenchCommandTests {
    @Test("bench handshake in memory prints one JSON object with the documented keys")
    func inMemoryJSON() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let result = try await work.succeed(["bench", "handshake", "--in-memory", "--no-tickets", "--key", "ecdsa-p256", "--tls", "1.3",
                                       "--handshakes", "20", "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [String: Any])
        for key in ["handshakesPerSecond", "meanLatencyMicroseconds", "p99LatencyMicroseconds", "cpuMicrosecondsPerHandshake",
                    "wallClockHandshakesPerSecond"] {
            let value = try #require(object[key] as? Double, "missing \(key) in \(result.standardOutput)")
            #expect(value > 0)
        }
        // In memory the rate is per CPU-second of the one handshake thread, whose CPU time
        // cannot exceed the wall time it ran for (as BenchReport counts).
        #expect(try #require(object["handshakesPerSecond"] as? Double) >= (try #require(object["wallClockHandshakesPerSecond"] as? Double)))
        #expect(object["handshakes"] as? Int == 20)
        #expect(object["failures"] as? Int == 0)
        #expect(object["protocolVersion"] as? String == "TLS1.3")
    }

    @Test("bench handshake resumes TLS 1.2 sessions and mutual TLS works, with text output")
    func resumeAndMutual() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let resumed = try await work.succeed(["bench", "handshake", "--tls", "1.2", "--resume", "--handshakes", "10", "--concurrency", "2"])
        #expect(resumed.standardOutput.contains("handshakes/s:"), "\(resumed)")
        #expect(resumed.standardOutput.contains("10 handshakes in"), "\(resumed)")
        #expect(resumed.standardOutput.contains("10 resumed"), "\(resumed)")
        let mutual = try await work.succeed(["bench", "handshake", "--mutual", "--key", "ed25519", "--handshakes", "5", "--no-chain-cache"])
        #expect(mutual.standardOutput.contains("chain cache:        off"), "\(mutual)")
    }

    @Test("contradictory options are usage errors")
    func usageErrors() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        _ = try await work.fail(["bench", "handshake", "--resume", "--no-tickets"], exitCode: 64)
        _ = try await work.fail(["bench", "handshake", "--in-memory", "127.0.0.1:1"], exitCode: 64)
        _ = try await work.fail(["bench", "handshake", "--concurrency", "0"], exitCode: 64)
        _ = try await work.fail(["bench", "handshake", "--key", "dsa-1024"], exitCode: 64)
        _ = try await work.fail(["bench", "handshake", "--handshakes", "0"], exitCode: 64)
        _ = try await work.fail(["bench", "handshake", "--seconds", "0"], exitCode: 64)
        _ = try await work.fail(["bench", "handshake", "--seconds", "1", "--handshakes", "5"], exitCode: 64)
    }

    @Test("bench handshake against a host that refuses connections exits 1 and says why")
    func refusedHost() async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        // Port 1 on loopback: nothing listens there.
        let result = try await work.fail(["bench", "handshake", "127.0.0.1:1", "--handshakes", "2"], exitCode: 1)
        #expect(result.standardError.contains("2 handshakes failed"), "\(result)")
    }
}
