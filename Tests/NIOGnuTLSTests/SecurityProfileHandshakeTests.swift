import Foundation
import GnuTLS
import GnuTLSCore
import Testing

// Issue 9: the security profile reaches GnuTLS (credentials and priority string) and the
// Swift verifier from one mapping. Before, `.high`/`.low` with the default priority string
// (which said %PROFILE_MEDIUM) or a custom priority string without %PROFILE_MEDIUM made
// GnuTLS OR two profiles into ULTRA, and every handshake failed with status 258 (insecure
// algorithm) for P-256, Ed25519 and RSA-2048 alike.

@Suite("Security profiles x key types in a real handshake (one mapping for GnuTLS and Swift)")
struct SecurityProfileHandshakeTests {
    static let profiles: [SecurityProfile] = [.low, .medium, .high]
    static let keys: [KeyAlgorithm] = [.ecdsaP256, .ed25519, .rsa2048, .rsa3072]

    /// Whether a chain of `key` leaves (below P-256 CAs) is acceptable under `profile`, per
    /// the profile's documented numbers.
    static func expectedAccepted(_ profile: SecurityProfile, _ key: KeyAlgorithm) -> Bool {
        switch key {
        case .rsa2048: return profile.minimumRSABits <= 2048
        case .rsa3072: return profile.minimumRSABits <= 3072
        default: return true
        }
    }

    /// A client and a server handshake in memory; GnuTLS verifies the server in the
    /// handshake, then the Swift verifier runs with the context's policy, as the NIO
    /// handler does.
    static func handshake(pki: TestPKI, profile: SecurityProfile, priority: String? = nil) throws -> (gnutls: Bool, swift: Bool, failure: String) {
        var server = TLSConfiguration.makeServerConfiguration(identity: pki.serverIdentity)
        server.securityProfile = profile
        server.priorityString = priority
        var client = TLSConfiguration.makeClientConfiguration(trustStore: pki.trust)
        client.securityProfile = profile
        client.priorityString = priority
        let clientContext = try TLSContext(configuration: client)
        let pair = try EnginePair(client: clientContext, server: try TLSContext(configuration: server))
        let outcome = pair.handshake()
        var swiftAccepted = false
        var failure = outcome.clientFailure.map { "\($0)" } ?? outcome.serverFailure.map { "\($0)" } ?? ""
        let chain = pki.serverIdentity.chain
        do {
            try clientContext.verifier?.verify(chain[0], intermediates: Array(chain.dropFirst()),
                                               policy: clientContext.verificationPolicy(forHost: "localhost"))
            swiftAccepted = true
        } catch {
            failure += " swift: \(error)"
        }
        return (outcome.bothComplete, swiftAccepted, failure)
    }

    @Test("default priority string: each profile accepts exactly the key types its numbers allow, GnuTLS and Swift alike",
          arguments: profiles, keys)
    func profileByKeyType(_ profile: SecurityProfile, _ key: KeyAlgorithm) throws {
        let pki = try TestPKI(algorithm: key)
        let result = try Self.handshake(pki: pki, profile: profile)
        let expected = Self.expectedAccepted(profile, key)
        #expect(result.gnutls == expected, "GnuTLS, \(profile) with \(key): \(result.failure)")
        #expect(result.swift == expected, "Swift verifier, \(profile) with \(key): \(result.failure)")
    }

    @Test("a custom priority string without %PROFILE_ works with every profile", arguments: profiles)
    func customPriorityString(_ profile: SecurityProfile) throws {
        let pki = try TestPKI(algorithm: .ecdsaP256)
        let result = try Self.handshake(pki: pki, profile: profile, priority: "NORMAL")
        #expect(result.gnutls, "\(profile): \(result.failure)")
        #expect(result.swift, "\(profile): \(result.failure)")
        let secure = try Self.handshake(pki: pki, profile: profile, priority: "SECURE128:-VERS-TLS1.2")
        #expect(secure.gnutls, "\(profile): \(secure.failure)")
    }

    @Test("a custom priority string naming another %PROFILE_ than securityProfile is refused with a clear error")
    func conflictingProfileKeyword() throws {
        let pki = try TestPKI(algorithm: .ecdsaP256)
        var client = TLSConfiguration.makeClientConfiguration(trustStore: pki.trust)
        client.priorityString = "NORMAL:%PROFILE_HIGH"
        let error = #expect(throws: GnuTLSError.self) { try TLSContext(configuration: client) }
        #expect(error?.code == .invalidArgument)
        #expect("\(error.map { "\($0)" } ?? "")".contains("%PROFILE_HIGH"))
        client.securityProfile = .high
        #expect(throws: Never.self) { try TLSContext(configuration: client) }
    }

    @Test("versions outside minimumVersion...maximumVersion are removed from a custom priority string")
    func customPriorityKeepsVersionBounds() throws {
        let pki = try TestPKI(algorithm: .ecdsaP256)
        var server = TLSConfiguration.makeServerConfiguration(identity: pki.serverIdentity)
        server.priorityString = "NORMAL"
        server.maximumVersion = .tls12
        var client = TLSConfiguration.makeClientConfiguration(trustStore: pki.trust)
        client.priorityString = "NORMAL"
        let pair = try EnginePair(client: try TLSContext(configuration: client), server: try TLSContext(configuration: server))
        #expect(pair.handshake().bothComplete)
        #expect(pair.client.protocolVersion == TLSVersion.tls12.description)
    }

    @Test("TLSVersion and the policy types are closed: no other value can be made")
    func closedTypes() {
        #expect(TLSVersion(rawValue: 12) == .tls12)
        #expect(TLSVersion(rawValue: 13) == .tls13)
        for number in [-1, 0, 10, 11, 14, 99, Int.max] {
            #expect(TLSVersion(rawValue: number) == nil)
        }
        #expect(SecurityProfile(name: "HIGH") == .high)
        #expect(SecurityProfile(name: "ultra") == nil)
        #expect(SecurityProfile.high.minimumRSABits == 3072 && !SecurityProfile.high.allowsSHA1)
        #expect(PeerVerification.fullVerification.name == "full")
        #expect(ClientCertificatePolicy.required.name == "required")
        #expect(TLSConfiguration.Role.server.name == "server")
        #expect(RevocationPolicy.requireCRLs.name == "require")
        #expect(VerificationProfile.webPKI.description == "web-pki")
    }
}
