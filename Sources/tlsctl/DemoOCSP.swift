import Foundation
import GnuTLS
import GnuTLSAuthority
import NIOGnuTLSAuthority
import NIOGnuTLS

/// The demo's OCSP act: the issuing CA's responder on 127.0.0.1, a server stapling its
/// response fetched from that responder (`auto`), a hard-fail client seeing good; then the
/// certificate revoked, the server unable to staple a good answer any more, and the client
/// refusing it with the reason the responder gives.
enum DemoOCSP {
    static func run(_ pki: DemoPKI, workspace: DemoWorkspace, log: inout DemoLog) async throws {
        let host = DemoTLS.host
        log.begin("OCSP: the issuing CA's responder, a stapling server, a hard-fail client")
        // The issuing CA with a ledger of its own for this act (ocsp-ledger.sqlite).
        let ca = try LocalAuthority(certificate: pki.intermediate.certificate, key: pki.intermediate.key,
                                    issuers: pki.intermediate.chain, ledger: SQLiteLedger.create(path: workspace.file("ocsp-ledger.sqlite"), authority: pki.intermediate.certificate))
        let responder = try await OCSPServer.start(responder: try OCSPResponder(authority: ca), host: host, port: 0)
        do {
            try await act(pki, ca: ca, responderPort: responder.port, log: &log)
        } catch {
            try? await responder.close()
            throw error
        }
        // Closed (and its ledger released) before the workspace is removed.
        try? await responder.close()
    }

    private static func act(_ pki: DemoPKI, ca: LocalAuthority, responderPort: Int, log: inout DemoLog) async throws {
        let host = DemoTLS.host
        let url = "http://\(host):\(responderPort)/"
        log.detail("responder: OCSPServer on \(url), answering from the issuing CA's ledger, signed by the CA")
        let key = try KeyPair.generate(.ecdsaP256)
        let request = try CertificateRequest.create(subject: try DistinguishedName("CN=server.demo.test,O=swift-gnutls demo,OU=ocsp"), key: key,
                                                    alternativeNames: DemoPKI.serverNames)
        let chain = try ca.issueWithChain(request, profile: .tlsServer, options: IssuanceOptions(validityDays: 7, ocspURLs: [url]))
        let leaf = chain[0]
        log.detail("issued a server certificate with OCSP URL \(url), serial \(Format.colonHex(leaf.serialNumber.bytes))")

        // Hard-fail wants an answer for every certificate below the root: the intermediate's
        // comes from the root's CRL in the client's trust store.
        var trust = TrustStore(certificates: [pki.root.certificate])
        trust.add(try pki.root.makeCRL(nextUpdateIn: 1))
        var client = DemoTLS.clientConfiguration(trust: trust, identity: nil)
        client.ocspRevocation = .hardFail

        // Server: staple `auto` (fetched from the certificate's OCSP URL).
        var identity = try TLSIdentity(chain: chain, key: key)
        identity.ocspResponse = try await OCSPClient.fetch(try OCSPRequest(certificate: leaf, issuer: ca.certificate), from: url)
        let server = try await DemoServer.start(.makeServerConfiguration(identity: identity))
        log.detail("server: staples the good answer it fetched from \(url)")
        switch await DemoTLS.exchange(port: server.port, configuration: client, message: "hello with OCSP") {
        case .success(let (info, _)):
            log.check("hard-fail client: accepted the server on its stapled good answer", info.verifiedChain != nil, info.protocolVersion)
        case .failure(let error):
            log.check("hard-fail client: accepted the server on its stapled good answer", false, TLSOutput.reason(error))
        }
        _ = await server.nextEvent(timeout: DemoTLS.timeout)
        await server.stop()

        try ca.revoke(leaf, reason: .keyCompromise)
        log.detail("revoked serial \(Format.colonHex(leaf.serialNumber.bytes)) (keyCompromise) in the ledger")
        var refreshed = identity
        refreshed.ocspResponse = try await OCSPClient.fetch(try OCSPRequest(certificate: leaf, issuer: ca.certificate), from: url)
        do {
            _ = try TLSContext(configuration: .makeServerConfiguration(identity: refreshed))
            log.check("server: refuses to staple the revoked answer", false, "it built a context with it")
        } catch {
            log.check("server: refuses to staple the revoked answer", true, "\(error)")
        }
        refreshed.ocspResponse = nil
        let unstapled = try await DemoServer.start(.makeServerConfiguration(identity: refreshed))
        switch await DemoTLS.exchange(port: unstapled.port, configuration: client, message: "this must not be sent") {
        case .success:
            log.check("hard-fail client: refuses the revoked server", false, "it connected")
        case .failure(let error):
            let problem = (error as? TLSError)?.verification?.problems.first
            log.check("hard-fail client: refuses the revoked server, asking the responder itself",
                      problem?.reason == .revoked && problem?.revocationReason == .keyCompromise, TLSOutput.reason(error))
        }
        await unstapled.stop()
    }
}
