import Foundation
import GnuTLS
import GnuTLSAuthority
import NIOGnuTLSAuthority
import Testing
import TestSupport

/// An `OCSPServer` whose owner throws before calling `close()` (a failing test did) used to
/// keep listening and keep its own thread pool for the rest of the process, which
/// LeakSanitizer reported (the pool's queue, 552 bytes) at exit.
@Suite struct OCSPServerLifetimeTests {
    /// Whether a TCP connection to 127.0.0.1:`port` is accepted by the kernel (a listener is
    /// there); a refused connection is `false`. Loopback connects complete at once.
    static func accepts(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    @Test("a server dropped without close() stops listening (and stops its own thread pool)")
    func droppedServerStopsListening() async throws {
        let directory = try TemporaryDirectory(prefix: "ocsp-dropped")
        defer { directory.remove() }
        try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Dropped Responder Root")).save(to: directory.file("ca"), passphrase: nil)
        let ca = try LocalAuthority.load(from: directory.file("ca"), passphrase: nil)
        var server: OCSPServer? = try await OCSPServer.start(responder: try OCSPResponder(authority: ca))
        let port = try #require(server?.port)
        #expect(Self.accepts(port: port))
        server = nil
        #expect(await eventually { !Self.accepts(port: port) }, "127.0.0.1:\(port) still accepts connections")
        _ = server
    }
}
