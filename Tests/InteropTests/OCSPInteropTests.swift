import Foundation
import GnuTLS
import GnuTLSAuthority
import NIOGnuTLSAuthority
import NIOCore
import NIOGnuTLS
import Testing
import TestSupport

/// A CA with a ledger, a server certificate pointing at an OCSP URL, written as PEM files,
/// and the library's OCSP responder serving it on 127.0.0.1.
final class OCSPInteropFixture: Sendable {
    let directory: TemporaryDirectory
    let ca: LocalAuthority
    let leaf: Certificate
    let responderCertificate: Certificate
    let responderKey: KeyPair

    init() throws {
        directory = try TemporaryDirectory(prefix: "ocsp-interop")
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=OCSP Interop Root,O=Example,C=US"))
        try root.save(to: directory.file("ca"), passphrase: nil)
        ca = try LocalAuthority.load(from: directory.file("ca"), passphrase: nil)
        leaf = try ca.issue(
            CertificateRequest.create(subject: try DistinguishedName("CN=ocsp.example.com"), key: KeyPair.generate(),
                                      alternativeNames: [.dnsName("ocsp.example.com")]),
            profile: .tlsServer, options: IssuanceOptions(validityDays: 30, ocspURLs: ["http://127.0.0.1:1/"]))
        responderKey = try KeyPair.generate()
        responderCertificate = try ca.issue(
            CertificateRequest.create(subject: try DistinguishedName("CN=OCSP Interop Responder,O=Example,C=US"), key: responderKey),
            profile: .ocspResponder, options: IssuanceOptions(validityDays: 7))
        try directory.write(ca.certificate.pemEncoded, to: "ca.pem")
        try directory.write(leaf.pemEncoded, to: "leaf.pem")
        try directory.write(responderCertificate.pemEncoded, to: "responder.pem")
    }

    func path(_ name: String) -> String { directory.file(name) }

    func startResponder(delegated: Bool = false) async throws -> OCSPServer {
        let responder = delegated
            ? try OCSPResponder(issuer: ca.certificate, ledger: ca.ledger!, signer: responderCertificate, key: responderKey)
            : try OCSPResponder(authority: ca)
        let ca = self.ca
        return try await OCSPServer.start(responder: responder, crl: { try ca.makeCRL(nextUpdateIn: 1).derEncoded })
    }

    deinit { directory.remove() }
}

@Suite("Interop: OCSP against openssl, ocsptool, curl and pkilint", .serialized)
struct OCSPInteropTests {
    static func opensslAsk(_ fixture: OCSPInteropFixture, port: Int, extra: [String] = []) async throws -> ProcessResult {
        try await runTool(["openssl", "ocsp", "-issuer", fixture.path("ca.pem"), "-cert", fixture.path("leaf.pem"),
                           "-url", "http://127.0.0.1:\(port)", "-CAfile", fixture.path("ca.pem"), "-timeout", "20"] + extra, timeout: 60)
    }

    @Test("openssl ocsp: good, then revoked with its reason right after a revocation; as the CA and as a delegated responder",
          arguments: [false, true])
    func opensslSeesGoodThenRevoked(delegated: Bool) async throws {
        let fixture = try OCSPInteropFixture()
        let server = try await fixture.startResponder(delegated: delegated)
        defer { Task { try? await server.close() } }
        let good = try await Self.opensslAsk(fixture, port: server.port)
        #expect(good.succeeded, "\(good)")
        #expect(good.output.contains("Response verify OK"), "\(good)")
        #expect(good.standardOutput.contains("leaf.pem: good"), "\(good)")

        try fixture.ca.revoke(fixture.leaf, reason: .keyCompromise)
        let revoked = try await Self.opensslAsk(fixture, port: server.port, extra: ["-no_nonce"])
        #expect(revoked.output.contains("Response verify OK"), "\(revoked)")
        #expect(revoked.standardOutput.contains("leaf.pem: revoked"), "\(revoked)")
        #expect(revoked.standardOutput.contains("Reason: keyCompromise"), "\(revoked)")

        // ocsptool (GnuTLS) agrees.
        // (A CA-signed response carries no certificate: ocsptool is told the signer; a
        // delegated one carries the responder's, which ocsptool checks against the CA.)
        let signer = delegated ? ["--load-trust", fixture.path("ca.pem")] : ["--load-signer", fixture.path("ca.pem")]
        let ocsptool = try await runTool(["ocsptool", "--ask=http://127.0.0.1:\(server.port)/", "--load-cert", fixture.path("leaf.pem"),
                                          "--load-issuer", fixture.path("ca.pem")] + signer,
                                         timeout: 60, package: "gnutls-bin")
        #expect(ocsptool.output.contains("Certificate Status: revoked"), "\(ocsptool)")
        #expect(ocsptool.output.contains("Verifying OCSP Response: Success"), "\(ocsptool)")
    }

    @Test("a GET (RFC 5019) from curl gets the same DER as the POST; the CRL is served at /ca.crl")
    func getEqualsPost() async throws {
        let fixture = try OCSPInteropFixture()
        let server = try await fixture.startResponder()
        defer { Task { try? await server.close() } }
        let request = try OCSPRequest(certificate: fixture.leaf, issuer: fixture.ca.certificate)
        let requestFile = try fixture.directory.write(request.derEncoded, to: "req.der")
        let post = try await runTool(["curl", "-sS", "--max-time", "20", "-H", "Content-Type: application/ocsp-request", "--data-binary", "@\(requestFile)",
                                      "-o", fixture.path("post.der"), "-w", "%{content_type}", "http://127.0.0.1:\(server.port)/"], timeout: 60)
        #expect(post.succeeded, "\(post)")
        #expect(post.standardOutput == "application/ocsp-response")
        let encoded = Data(request.derEncoded).base64EncodedString()
            .addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
        let get = try await runTool(["curl", "-sS", "--max-time", "20", "-o", fixture.path("get.der"), "http://127.0.0.1:\(server.port)/\(encoded)"], timeout: 60)
        #expect(get.succeeded, "\(get)")
        let postBytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: fixture.path("post.der"))))
        let getBytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: fixture.path("get.der"))))
        #expect(postBytes == getBytes)
        #expect(try OCSPResponse.verify(derEncoded: getBytes, certificate: fixture.leaf, issuer: fixture.ca.certificate).status == .good)

        let crl = try await runTool(["curl", "-sS", "--max-time", "20", "-o", fixture.path("ca.crl"), "http://127.0.0.1:\(server.port)/ca.crl"], timeout: 60)
        #expect(crl.succeeded, "\(crl)")
        let parsed = try CertificateRevocationList.load(contentsOfFile: fixture.path("ca.crl"))
        #expect(parsed.first?.isSigned(by: fixture.ca.certificate) == true)

        // Garbage gets malformedRequest, never a dropped connection.
        let garbage = try await runTool(["curl", "-sS", "--max-time", "20", "--data-binary", "not an ocsp request", "-o", fixture.path("bad.der"),
                                         "http://127.0.0.1:\(server.port)/"], timeout: 60)
        #expect(garbage.succeeded, "\(garbage)")
        #expect(try OCSPResponse.load(contentsOfFile: fixture.path("bad.der")).responseStatus == .malformedRequest)
    }

    @Test("pkilint: our responses (CA-signed, delegated, revoked) and the responder certificate have no findings")
    func pkilintIsClean() async throws {
        let fixture = try OCSPInteropFixture()
        let issuer = fixture.ca.certificate
        let caResponder = try OCSPResponder(authority: fixture.ca)
        let delegated = try OCSPResponder(issuer: issuer, ledger: fixture.ca.ledger!, signer: fixture.responderCertificate, key: fixture.responderKey)
        var files: [String] = []
        let request = try OCSPRequest(certificate: fixture.leaf, issuer: issuer, nonce: OCSPRequest.randomNonce())
        files.append(try fixture.directory.write(caResponder.respond(to: request).response.derEncoded, to: "good.der"))
        files.append(try fixture.directory.write(delegated.respond(to: request).response.derEncoded, to: "delegated.der"))
        try fixture.ca.revoke(fixture.leaf, reason: .superseded)
        files.append(try fixture.directory.write(caResponder.respond(to: request).response.derEncoded, to: "revoked.der"))
        let unknownID = try OCSPCertificateID(serialNumber: SerialNumber(bytes: [0x7f, 0x01]), issuer: issuer)
        files.append(try fixture.directory.write(caResponder.respond(to: try OCSPRequest(certificateIDs: [unknownID])).response.derEncoded, to: "unknown.der"))
        for file in files {
            let result = try await runTool(["lint_ocsp_response", "lint", "-s", "WARNING", file], timeout: 120, package: "pkilint")
            #expect(result.succeeded && result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(file): \(result)")
        }
        let cert = try await runTool(["lint_pkix_cert", "lint", "-s", "WARNING", fixture.path("responder.pem")], timeout: 120, package: "pkilint")
        #expect(cert.succeeded && cert.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(cert)")
    }

    @Test("our requests and verification agree with an `openssl ocsp -index` responder on good, revoked and unknown; openssl's requests parse")
    func ourClientAgainstOpenSSLResponder() async throws {
        let fixture = try OCSPInteropFixture()
        let issuer = fixture.ca.certificate
        let revokedLeaf = try fixture.ca.issue(
            CertificateRequest.create(subject: try DistinguishedName("CN=revoked.example.com"), key: KeyPair.generate(),
                                      alternativeNames: [.dnsName("revoked.example.com")]), profile: .tlsServer)
        let stranger = try fixture.ca.issue(
            CertificateRequest.create(subject: try DistinguishedName("CN=stranger.example.com"), key: KeyPair.generate(),
                                      alternativeNames: [.dnsName("stranger.example.com")]), profile: .tlsServer)
        func line(_ flag: String, _ certificate: Certificate, revoked: String = "") -> String {
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "UTC")
            formatter.dateFormat = "yyMMddHHmmss'Z'"
            return "\(flag)\t\(formatter.string(from: certificate.notValidAfter))\t\(revoked)\t\(certificate.serialNumber.hexString.uppercased())\tunknown\t/CN=x\n"
        }
        _ = try fixture.directory.write(line("V", fixture.leaf) + line("R", revokedLeaf, revoked: "250101000000Z,keyCompromise"), to: "index.txt")
        _ = try fixture.directory.write(try fixture.ca.key.pemEncodedForTests(), to: "ca.key")
        // openssl's responder runs offline (-reqin/-respout): `openssl ocsp -port` cannot be
        // bound to 127.0.0.1 only, so no listening socket is opened for it.
        for (index, (certificate, expected)) in [(fixture.leaf, "good"), (revokedLeaf, "revoked"), (stranger, "unknown")].enumerated() {
            let nonce = try OCSPRequest.randomNonce()
            let request = try OCSPRequest(certificate: certificate, issuer: issuer, nonce: nonce)
            let requestFile = try fixture.directory.write(request.derEncoded, to: "req\(index).der")
            let responseFile = fixture.path("resp\(index).der")
            let result = try await runTool(["openssl", "ocsp", "-index", fixture.path("index.txt"), "-rsigner", fixture.path("ca.pem"),
                                            "-rkey", fixture.path("ca.key"), "-CA", fixture.path("ca.pem"), "-reqin", requestFile,
                                            "-respout", responseFile, "-ndays", "1"], timeout: 60)
            #expect(result.succeeded, "\(result)")
            let response = try OCSPResponse.load(contentsOfFile: responseFile)
            #expect(response.nonce == nonce)
            let single = try response.validate(certificate: certificate, issuer: issuer, nonce: nonce)
            switch single.status {
            case .good: #expect(expected == "good")
            case .unknown: #expect(expected == "unknown")
            case .revoked(_, let reason):
                #expect(expected == "revoked")
                #expect(reason == .keyCompromise)
            }
            // And openssl parses our request as we built it.
            let text = try await runTool(["openssl", "ocsp", "-reqin", requestFile, "-req_text"], timeout: 60)
            #expect(text.standardOutput.uppercased().contains(certificate.serialNumber.hexString.uppercased()), "\(text)")
        }
        // A request made by openssl parses.
        let reqout = fixture.path("openssl-req.der")
        let made = try await runTool(["openssl", "ocsp", "-sha256", "-issuer", fixture.path("ca.pem"), "-cert", fixture.path("leaf.pem"),
                                      "-reqout", reqout], timeout: 60)
        #expect(made.succeeded, "\(made)")
        let parsed = try OCSPRequest(derEncoded: [UInt8](Data(contentsOf: URL(fileURLWithPath: reqout))))
        #expect(parsed.certificateIDs.first?.matches(certificate: fixture.leaf, issuer: issuer) == true)
        #expect(parsed.certificateIDs.first?.hashAlgorithm == .sha256)
        #expect(parsed.nonce != nil)
    }

    @Test("200 concurrent mixed requests (good, revoked, unknown, malformed) are all answered correctly, and the responder keeps answering")
    func concurrentLoad() async throws {
        let fixture = try OCSPInteropFixture()
        let issuer = fixture.ca.certificate
        let revokedLeaf = try fixture.ca.issue(
            CertificateRequest.create(subject: try DistinguishedName("CN=r.example.com"), key: KeyPair.generate(),
                                      alternativeNames: [.dnsName("r.example.com")]), profile: .tlsServer)
        try fixture.ca.revoke(revokedLeaf, reason: .cessationOfOperation)
        let server = try await fixture.startResponder()
        defer { Task { try? await server.close() } }
        let url = "http://127.0.0.1:\(server.port)/"
        let good = try OCSPRequest(certificate: fixture.leaf, issuer: issuer)
        let revoked = try OCSPRequest(certificate: revokedLeaf, issuer: issuer, nonce: OCSPRequest.randomNonce())
        let unknown = try OCSPRequest(certificateIDs: [OCSPCertificateID(serialNumber: SerialNumber(bytes: [9, 9]), issuer: issuer)])
        let started = ContinuousClock.now
        let latencies = try await withThrowingTaskGroup(of: Duration.self) { group in
            for index in 0..<200 {
                group.addTask {
                    let begin = ContinuousClock.now
                    switch index % 4 {
                    case 0:
                        let response = try await OCSPClient.fetch(good, from: url, timeout: .seconds(60))
                        #expect(try response.verify(certificate: fixture.leaf, issuer: issuer).status == .good)
                    case 1:
                        let response = try await OCSPClient.fetch(revoked, from: url, timeout: .seconds(60))
                        #expect(try response.validate(certificate: revokedLeaf, issuer: issuer, nonce: revoked.nonce).status
                                == .revoked(date: try #require(fixture.ca.ledger?.certificate(serial: revokedLeaf.serialNumber)?.revocation?.date),
                                            reason: .cessationOfOperation))
                    case 2:
                        let response = try await OCSPClient.fetch(unknown, from: url, timeout: .seconds(60))
                        #expect(response.responses.map(\.status) == [.unknown])
                    default:
                        let response = try await OCSPClient.fetch(derEncodedRequest: [0x30, 0x01, 0xFF], from: url, timeout: .seconds(60))
                        #expect(response.responseStatus == .malformedRequest)
                    }
                    return ContinuousClock.now - begin
                }
            }
            var all: [Duration] = []
            for try await latency in group { all.append(latency) }
            return all
        }
        let elapsed = ContinuousClock.now - started
        #expect(latencies.count == 200)
        let sorted = latencies.sorted()
        let p99 = sorted[Int(Double(sorted.count - 1) * 0.99)]
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("OCSP responder load: 200 requests in \(String(format: "%.2f", seconds)) s = \(String(format: "%.0f", 200 / seconds)) requests/s, p99 \(p99)")
        // Still answering afterwards.
        let after = try await OCSPClient.fetch(good, from: url)
        #expect(try after.verify(certificate: fixture.leaf, issuer: issuer).status == .good)
    }
}
