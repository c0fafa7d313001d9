import Foundation
import Testing
import TestSupport

// `tlsctl serve --idle-timeout` / `--max-open-connections` / `--max-handshakes` and
// `tlsctl connect --idle-timeout` (issue 7), run as a user would.
@Suite("tlsctl idle timeout and connection limits")
struct TLSLimitsCommandTests {
    /// A Python TLS client that completes a handshake, sends nothing, and reports when the
    /// server closes (close_notify: `closed cleanly`).
    static let silentClient = """
    import socket, ssl, sys
    context = ssl.create_default_context(cafile=sys.argv[2])
    context.check_hostname = False
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60) as raw:
        with context.wrap_socket(raw) as tls:
            print("handshake done", flush=True)
            data = tls.recv(100)
            print("closed cleanly" if data == b"" else "got data", flush=True)
    """

    @Test("serve --idle-timeout closes a silent connection with close_notify and logs why")
    func serveIdleTimeout() async throws {
        try await TLSCommandTests.PKI.serving(["--idle-timeout", "1", "--max-connections", "1", "--max-open-connections", "4",
                                         "--max-handshakes", "2"]) { pki, server, port in
            let script = pki.work.path + "/silent.py"
            try Self.silentClient.write(toFile: script, atomically: true, encoding: .utf8)
            let result = try await Tool.run(["python3", script, "\(port)", pki.work.path + "/root/ca.pem"], timeout: 60)
            #expect(result.standardOutput == "handshake done\nclosed cleanly\n", "\(result)")
            #expect(await server.waitForExit(timeout: 120) == 0, "\(server)")
            #expect(server.lines.contains { $0.hasPrefix("closed #1: ") && $0.contains("idleTimeout") }, "\(server)")
        }
    }

    @Test("invalid limits are usage errors", arguments: [["--idle-timeout", "-1"], ["--max-open-connections", "0"], ["--max-handshakes", "0"]])
    func invalidLimits(arguments: [String]) async throws {
        let work = try CLIWorkspace()
        defer { work.remove() }
        let result = try await work.tlsctl(["serve", "--cert", "c.pem", "--key", "k.pem"] + arguments)
        #expect(result.exitCode == 64, "\(result)")
    }
}
