import Foundation
import GnuTLS
import Logging
import NIOCore

/// The OCSP step of a handshake: after the chain verified, before any application byte is
/// released, the context's ``RevocationChecker`` looks at the stapled response, the trust
/// store's CRLs and (soft/hard modes) the online responder. It runs in a task, never on the
/// event loop, and is bounded by the handshake timeout (the handler fails the handshake
/// when it fires, and each online query has that deadline too).
enum OCSPHandshakeCheck {
    static func make(context: TLSContext, info: ConnectionInfo, staple: @autoclosure () -> [UInt8]?, logger: Logger) -> (@Sendable () async throws -> Void)? {
        guard let chain = info.verifiedChain?.certificates, chain.count > 1 else { return nil }
        let checker = context.revocationChecker
        guard checker.mode != .off || chain[0].requiresOCSPStapling else { return nil }
        // Read from the session only when a check runs.
        let staple = staple()
        let crls = context.configuration.trustStore?.crls ?? []
        let limit = context.configuration.handshakeTimeout.components
        let timeout = TimeAmount.nanoseconds(limit.seconds * 1_000_000_000 + limit.attoseconds / 1_000_000_000)
        let fetcher: OCSPFetcher = { request, url in try await OCSPClient.fetch(request, from: url, timeout: timeout, logger: logger) }
        return {
            let stapled: OCSPResponse?
            if let staple {
                // A staple that does not parse counts as none; the checker then reports what is missing.
                stapled = try? OCSPResponse(derEncoded: staple)
            } else {
                stapled = nil
            }
            try await checker.check(chain: chain, staple: stapled, crls: crls, fetcher: fetcher)
        }
    }
}

extension OCSPHandshakeCheck {
    /// Why the stapled response does not vouch for the peer's leaf (revoked, unknown, or
    /// invalid), when GnuTLS refused the handshake over it; `nil` when it is fine or absent.
    static func stapleProblem(context: TLSContext, peer: [Certificate], staple: [UInt8]?) -> VerificationError? {
        guard let staple, let leaf = peer.first else { return nil }
        let issuers = peer.dropFirst().filter { $0.subject == leaf.issuer }
            + (context.configuration.trustStore?.certificates ?? []).filter { $0.subject == leaf.issuer }
        var last: VerificationError?
        for issuer in issuers {
            do throws(VerificationError) {
                try OCSPResponse.verify(derEncoded: staple, certificate: leaf, issuer: issuer)
                return nil
            } catch {
                last = error
            }
        }
        return last
    }
}
