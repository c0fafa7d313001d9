import Foundation
import Testing
@testable import GnuTLS
@testable import GnuTLSAuthority
import GnuTLSTestSupport
import TestSupport

@Suite struct OCSPTests {
    static func seconds(_ date: Date) -> Date { Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down)) }

    /// `body` must throw a `VerificationError` whose only problem has `reason` at `position`.
    @discardableResult
    static func expectReason(
        _ reason: VerificationError.Reason, position: Int = 0, sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () throws -> Void
    ) -> VerificationError? {
        do {
            try body()
            Issue.record("expected \(reason), but verification passed", sourceLocation: sourceLocation)
        } catch let error as VerificationError {
            #expect(error.problems.map(\.reason) == [reason], "\(error)", sourceLocation: sourceLocation)
            #expect(error.problems.first?.position == position, sourceLocation: sourceLocation)
            return error
        } catch {
            Issue.record("expected VerificationError \(reason), got \(error)", sourceLocation: sourceLocation)
        }
        return nil
    }

    @Test(arguments: [OCSPHashAlgorithm.sha1, .sha256])
    func requestRoundTrips(hash: OCSPHashAlgorithm) throws {
        let fixture = try OCSPFixture()
        let leaf = try fixture.leaf()
        let nonce = try OCSPRequest.randomNonce()
        let request = try OCSPRequest(certificate: leaf, issuer: fixture.ca.certificate, hashAlgorithm: hash, nonce: nonce)
        let parsed = try OCSPRequest(derEncoded: request.derEncoded)
        #expect(parsed == request)
        #expect(parsed.nonce == nonce)
        #expect(parsed.certificateIDs.count == 1)
        #expect(parsed.certificateIDs[0].hashAlgorithm == hash)
        #expect(parsed.certificateIDs[0].issuerKeyHash.count == (hash == .sha1 ? 20 : 32))
        #expect(parsed.certificateIDs[0].matches(certificate: leaf, issuer: fixture.ca.certificate))
        #expect(!parsed.isSigned)
        #expect(try OCSPRequest(certificate: leaf, issuer: fixture.ca.certificate).nonce == nil)
        // The SHA-1 issuer key hash is the CA's key identifier (RFC 5280 method 1).
        if hash == .sha1 { #expect(parsed.certificateIDs[0].issuerKeyHash == fixture.ca.certificate.publicKey.keyIdentifier) }
    }

    @Test func hostileRequestsAreTypedErrors() throws {
        for bytes: [UInt8] in [[], [0x30], [0x30, 0x00], [0x30, 0x02, 0x30, 0x00], Array(repeating: 0xFF, count: 64), [0x04, 0x01, 0x00]] {
            expectGnuTLSError(.malformedDER) { try OCSPRequest(derEncoded: bytes) }
        }
        let fixture = try OCSPFixture()
        let request = try OCSPRequest(certificate: try fixture.leaf(), issuer: fixture.ca.certificate)
        for cut in 1..<request.derEncoded.count {
            #expect(throws: GnuTLSError.self) { try OCSPRequest(derEncoded: Array(request.derEncoded.prefix(cut))) }
        }
        expectGnuTLSError(.invalidArgument) { try OCSPRequest(certificateIDs: request.certificateIDs, nonce: []) }
        expectGnuTLSError(.invalidArgument) { try OCSPRequest(certificateIDs: request.certificateIDs, nonce: Array(repeating: 1, count: 33)) }
    }

    @Test func responderAnswersGoodRevokedUnknownFromTheLedger() throws {
        let fixture = try OCSPFixture()
        let issuer = fixture.ca.certificate
        let good = try fixture.leaf("good.example.com")
        let revoked = try fixture.leaf("revoked.example.com")
        let revocationDate = Self.seconds(Date()).addingTimeInterval(-60)
        try fixture.ca.revoke(revoked, reason: .keyCompromise, date: revocationDate)
        let other = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Other Root"))
        let neverIssued = try other.issue(try CertificateRequest.create(subject: try DistinguishedName("CN=x"), key: try KeyPair.generate(), alternativeNames: [.dnsName("x.example")]), profile: .tlsServer)
        let responder = try OCSPResponder(authority: fixture.ca, validity: 3600)

        let nonce = try OCSPRequest.randomNonce()
        let answer = responder.respond(to: try OCSPRequest(certificate: good, issuer: issuer, nonce: nonce).derEncoded)
        #expect(answer.response.responseStatus == .successful)
        #expect(answer.response.nonce == nonce)
        #expect(answer.response.responderID == .byKeyHash(issuer.publicKey.keyIdentifier))
        #expect(answer.response.certificates.isEmpty)
        let single = try answer.response.verify(certificate: good, issuer: issuer, nonce: nonce)
        #expect(single.status == .good)
        #expect(single.nextUpdate.map { $0.timeIntervalSince(single.thisUpdate) } == 3600)

        let revokedAnswer = responder.respond(to: try OCSPRequest(certificate: revoked, issuer: issuer, hashAlgorithm: .sha256)).response
        #expect(try revokedAnswer.validate(certificate: revoked, issuer: issuer).status == .revoked(date: revocationDate, reason: .keyCompromise))
        let error = Self.expectReason(.revoked) { try revokedAnswer.verify(certificate: revoked, issuer: issuer) }
        #expect(error?.problems.first?.revocationReason == .keyCompromise)
        #expect(error?.problems.first?.revocationDate == revocationDate)

        // A serial this CA never issued: unknown.
        let unknownID = try OCSPCertificateID(serialNumber: SerialNumber(bytes: [0x42]), issuer: issuer)
        let unknown = responder.respond(to: try OCSPRequest(certificateIDs: [unknownID])).response
        #expect(unknown.responses.map(\.status) == [.unknown])
        // Another issuer's certificate: unauthorized; garbage: malformedRequest.
        #expect(responder.respond(to: try OCSPRequest(certificate: neverIssued, issuer: other.certificate).derEncoded).response.responseStatus == .unauthorized)
        #expect(responder.respond(to: [0x30, 0x03, 0x02, 0x01, 0x00]).response.responseStatus == .malformedRequest)
        #expect(responder.respond(to: [0x30, 0x03, 0x02, 0x01, 0x00]).response.derEncoded == [0x30, 0x03, 0x0A, 0x01, 0x01])
    }

    @Test func cachedAnswersShowARevocationAtOnce() throws {
        let fixture = try OCSPFixture()
        let leaf = try fixture.leaf()
        let responder = try OCSPResponder(authority: fixture.ca)
        let request = try OCSPRequest(certificate: leaf, issuer: fixture.ca.certificate)
        let first = responder.respond(to: request)
        let second = responder.respond(to: request)
        #expect(!first.cached && second.cached)
        #expect(first.response == second.response)
        // Revoked through a second handle on the same ledger file, as `tlsctl ca revoke` would.
        let otherProcess = try SQLiteLedger(path: fixture.directory.file("ledger.sqlite"))
        try otherProcess.revoke(serial: leaf.serialNumber, reason: .superseded, date: Date())
        let third = responder.respond(to: request)
        #expect(!third.cached)
        Self.expectReason(.revoked) { try third.response.verify(certificate: leaf, issuer: fixture.ca.certificate) }
    }

    @Test func delegatedResponderSignsAndIsAuthorised() throws {
        let fixture = try OCSPFixture()
        let leaf = try fixture.leaf()
        let (responderCert, responderKey) = try fixture.responder()
        #expect(responderCert.extendedKeyUsage == [.ocspSigning])
        #expect(responderCert.hasOCSPNoCheck)
        #expect(responderCert.keyUsage == [.digitalSignature])
        #expect(!responderCert.isCertificateAuthority)
        let responder = try OCSPResponder(issuer: fixture.ca.certificate, ledger: fixture.ledger, signer: responderCert, key: responderKey)
        let response = responder.respond(to: try OCSPRequest(certificate: leaf, issuer: fixture.ca.certificate)).response
        #expect(response.certificates == [responderCert])
        #expect(try response.verify(certificate: leaf, issuer: fixture.ca.certificate).status == .good)

        // A certificate of the CA without OCSP signing cannot be a responder, and its signature is refused.
        let (serverCert, serverKey) = try fixture.responder(profile: .tlsClient)
        expectGnuTLSError(.invalidArgument, mentioning: ["OCSP-signing"]) {
            try OCSPResponder(issuer: fixture.ca.certificate, ledger: fixture.ledger, signer: serverCert, key: serverKey)
        }
        let single = OCSPResponse.SingleResponse(certificateID: try OCSPCertificateID(certificate: leaf, issuer: fixture.ca.certificate),
                                                 status: .good, thisUpdate: Date(), nextUpdate: Date().addingTimeInterval(3600))
        let forged = try OCSPResponse.sign(responses: [single], signer: serverCert, key: serverKey, includeSignerCertificate: true)
        Self.expectReason(.ocspUnauthorizedSigner) { try forged.verify(certificate: leaf, issuer: fixture.ca.certificate) }
    }

    @Test func craftedResponsesAreRefusedWithTheExactReason() throws {
        let fixture = try OCSPFixture()
        let issuer = fixture.ca.certificate
        let leaf = try fixture.leaf()
        let other = try fixture.leaf("other.example.com")
        let id = try OCSPCertificateID(certificate: leaf, issuer: issuer)
        let now = Self.seconds(Date())
        func signed(_ status: OCSPResponse.CertificateStatus = .good, id: OCSPCertificateID = id, thisUpdate: Date = now,
                    nextUpdate: Date? = now.addingTimeInterval(3600), signer: Certificate? = nil, key: (any SigningKey)? = nil,
                    nonce: [UInt8]? = nil, include: Bool = false) throws -> OCSPResponse {
            try OCSPResponse.sign(responses: [.init(certificateID: id, status: status, thisUpdate: thisUpdate, nextUpdate: nextUpdate)],
                                  signer: signer ?? issuer, key: key ?? fixture.ca.key, producedAt: min(thisUpdate, now), nonce: nonce,
                                  includeSignerCertificate: include)
        }
        #expect(try signed().verify(certificate: leaf, issuer: issuer).status == .good)
        Self.expectReason(.ocspUnknown, position: 1) { try signed(.unknown).verify(certificate: leaf, issuer: issuer, position: 1) }
        Self.expectReason(.ocspNotYetValid) { try signed(thisUpdate: now.addingTimeInterval(86_400), nextUpdate: now.addingTimeInterval(2 * 86_400)).verify(certificate: leaf, issuer: issuer) }
        Self.expectReason(.ocspStale) { try signed(thisUpdate: now.addingTimeInterval(-7200), nextUpdate: now.addingTimeInterval(-3600)).verify(certificate: leaf, issuer: issuer) }
        Self.expectReason(.ocspStale) { try signed(thisUpdate: now.addingTimeInterval(-8 * 86_400), nextUpdate: nil).verify(certificate: leaf, issuer: issuer) }
        // Signed by an unrelated key that names itself: not the issuer, not delegated.
        let stranger = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Stranger"))
        Self.expectReason(.ocspUnauthorizedSigner) { try signed(signer: stranger.certificate, key: stranger.key).verify(certificate: leaf, issuer: issuer) }
        Self.expectReason(.ocspUnauthorizedSigner) { try signed(signer: stranger.certificate, key: stranger.key, include: true).verify(certificate: leaf, issuer: issuer) }
        // A response for another serial.
        Self.expectReason(.ocspWrongCertificate) { try signed(id: try OCSPCertificateID(certificate: other, issuer: issuer)).verify(certificate: leaf, issuer: issuer) }
        // Nonce mismatch and missing nonce.
        Self.expectReason(.ocspNonceMismatch) { try signed(nonce: [1, 2, 3]).verify(certificate: leaf, issuer: issuer, nonce: [4, 5, 6]) }
        Self.expectReason(.ocspNonceMismatch) { try signed().verify(certificate: leaf, issuer: issuer, nonce: [4, 5, 6]) }
        // Responder error statuses.
        for status in [OCSPResponse.Status.tryLater, .internalError, .malformedRequest, .unauthorized, .sigRequired] {
            let error = Self.expectReason(.ocspResponderError) { try OCSPResponse(unsuccessful: status).verify(certificate: leaf, issuer: issuer) }
            #expect(error?.description.contains(status.description) == true)
        }
        // A flipped bit in the signature.
        var tampered = try signed().derEncoded
        tampered[tampered.count - 5] ^= 0x01
        Self.expectReason(.ocspSignatureInvalid) { try OCSPResponse.verify(derEncoded: tampered, certificate: leaf, issuer: issuer) }
        // Truncated and garbage bytes.
        let good = try signed().derEncoded
        for cut in stride(from: 0, to: good.count, by: 7) {
            Self.expectReason(.ocspMalformed) { try OCSPResponse.verify(derEncoded: Array(good.prefix(cut)), certificate: leaf, issuer: issuer) }
        }
        Self.expectReason(.ocspMalformed) { try OCSPResponse.verify(derEncoded: Array(repeating: 0x30, count: 40), certificate: leaf, issuer: issuer) }
    }

    @Test func mustStapleOption() throws {
        let fixture = try OCSPFixture()
        var options = IssuanceOptions(validityDays: 30, ocspURLs: ["http://127.0.0.1:8080"])
        options.mustStaple = true
        let leaf = try fixture.leaf(options: options)
        #expect(leaf.requiresOCSPStapling)
        #expect(leaf.ocspURLs == ["http://127.0.0.1:8080"])
        #expect(!(try fixture.leaf()).requiresOCSPStapling)
        #expect(CertificateProfile(name: "ocsp-responder") == .ocspResponder)
    }
}
