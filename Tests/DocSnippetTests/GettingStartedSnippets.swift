import Foundation
import GnuTLS
import GnuTLSAuthority
import NIOCore
import NIOGnuTLS
import Testing
import TestSupport

/// The code blocks of `Sources/GnuTLS/GnuTLS.docc/GettingStarted.md`, in order, as one
/// program that runs: a CA on disk, issuance, a mutual-TLS echo on 127.0.0.1, verification
/// and revocation. `scripts/check-doc-snippets.sh` checks that every block of the article
/// appears here verbatim; the lines between blocks are the test's own.
@Suite struct GettingStartedSnippets {
    @Test func wholeLifecycle() async throws {
        let directory = try TemporaryDirectory(prefix: "doc-getting-started")
        defer { directory.remove() }
        let caDirectory = directory.file("issuing")

        // Block: create a certificate authority.
        let root = try LocalAuthority.createRoot(
            subject: try DistinguishedName("CN=Example Root CA,O=Example"),
            key: try KeyPair.generate(.ecdsaP384), validityDays: 3650)
        let issuing = try root.createIntermediate(
            subject: try DistinguishedName("CN=Example Issuing CA,O=Example"),
            pathLength: 0, nameConstraints: NameConstraints(permittedDNSDomains: ["example.com"]))
        try issuing.save(to: caDirectory, passphrase: "correct horse battery staple")

        #expect(FileManager.default.fileExists(atPath: caDirectory + "/ledger.sqlite"))

        // Block: issue certificates from requests.
        let serverKey = try KeyPair.generate(.ecdsaP256)
        let request = try CertificateRequest.create(
            subject: try DistinguishedName("CN=api.example.com"), key: serverKey,
            alternativeNames: [.dnsName("api.example.com")])
        let serverChain = try issuing.issueWithChain(request, profile: .tlsServer,
                                                     options: IssuanceOptions(validityDays: 90))

        // Block: a client certificate.
        let clientKey = try KeyPair.generate(.ecdsaP256)
        let clientChain = try issuing.issueWithChain(
            try CertificateRequest.create(
                subject: try DistinguishedName("CN=billing,OU=payments,O=Example"), key: clientKey,
                alternativeNames: [.uri("spiffe://example.com/billing")]),
            profile: .tlsClient, options: IssuanceOptions(validityDays: 30))
        let clientIdentity = try TLSIdentity(chain: clientChain, key: clientKey)

        #expect(serverChain.count == 2)
        #expect(clientIdentity.leaf.subject.commonName == "billing")

        // Block: serve.
        let trust = TrustStore(certificates: [root.certificate])
        let server = try await TLSServer.bind(
            host: "127.0.0.1", port: 0,  // 0: any free port; `server.port` tells which
            context: try TLSContext(configuration: .makeMutualTLSServerConfiguration(
                identity: try TLSIdentity(chain: serverChain, key: serverKey), clientTrustStore: trust)))
        let serving = Task {
            try await server.serve { channel in
                print("client:", channel.info.peerSubject?.description ?? "?")
                try await channel.executeThenClose { inbound, outbound in
                    for try await chunk in inbound { try await outbound.write(chunk) }
                }
            }
        }

        // Block: connect.
        var clientConfiguration = TLSConfiguration.makeClientConfiguration(
            trustStore: trust, identity: clientIdentity)
        clientConfiguration.serverName = "api.example.com"  // SNI and the name verified
        let client = try TLSContext(configuration: clientConfiguration)
        let channel = try await SecureChannel.connect(host: "127.0.0.1", port: server.port, context: client)
        let echo = try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "ping"))
            var replies = inbound.makeAsyncIterator()
            return try await replies.next().map { String(buffer: $0) }
        }

        #expect(echo == "ping")
        #expect(channel.info.peerSubject == serverChain[0].subject)

        // Block: verify a chain yourself.
        let verifier = try Verifier(trustStore: trust)
        let verified = try verifier.verify(serverChain[0], intermediates: [issuing.certificate],
                                           policy: .server(host: "api.example.com"))
        print("anchor:", verified.anchor.subject)

        #expect(verified.anchor == root.certificate)

        // Block: revoke.
        let reopened = try LocalAuthority.load(from: caDirectory, passphrase: "correct horse battery staple")
        try reopened.revoke(clientIdentity.leaf, reason: .keyCompromise)
        let crl = try reopened.makeCRL()
        var trustWithCRL = trust
        trustWithCRL.add(crl)

        // Block: the revoked certificate fails verification.
        do {
            _ = try Verifier(trustStore: trustWithCRL).verify(
                clientIdentity.leaf, intermediates: [issuing.certificate], policy: .client())
        } catch let error as VerificationError where error.contains(.revoked) {
            print(error.problems(.revoked)[0].message)
        }

        // The block above only prints on failure: check that it does fail.
        #expect(throws: VerificationError.self) {
            try Verifier(trustStore: trustWithCRL).verify(
                clientIdentity.leaf, intermediates: [issuing.certificate], policy: .client())
        }

        try await server.close()
        try await serving.value
    }
}
