import GnuTLS
import GnuTLSCore
import NIOGnuTLS
import Testing

// The engine's copy-free record I/O (issue 11): ciphertext lent for the duration of a call
// instead of copied into the engine's queue, and ciphertext handed straight to the
// transport's buffer instead of queued.

@Suite struct EngineRecordIOTests {
    static let versions: [TLSVersion] = [.tls12, .tls13]

    /// A finished pair, the client's session tickets read.
    private func connectedPair(_ version: TLSVersion) throws -> EnginePair {
        let fixture = try EngineFixture(version)
        let pair = try EnginePair(client: try fixture.client(), server: try fixture.server())
        #expect(pair.handshake().bothComplete)
        _ = try drain(pair.client)
        return pair
    }

    /// `body` run with `bytes[range]` lent to `engine`.
    private func lending<Value>(_ bytes: UnsafeRawBufferPointer, _ range: some RangeExpression<Int>, to engine: TLSEngine,
                                _ body: () throws(CoreTLSFailure) -> Value) throws(CoreTLSFailure) -> Value {
        try engine.withReceived(UnsafeRawBufferPointer(rebasing: bytes[range])) {
            Result { () throws(CoreTLSFailure) in try body() }
        }.get()
    }

    /// The ciphertext of `payload`, written by the client.
    private func ciphertext(of payload: [UInt8], from pair: EnginePair) throws -> [UInt8] {
        try payload.withUnsafeBytes { bytes in try pair.client.write(bytes) }
        return pair.client.takeOutbound()
    }

    @Test(arguments: versions)
    func lentCiphertextIsReadInPlaceAndTheUnreadRestIsKept(version: TLSVersion) throws {
        let pair = try connectedPair(version)
        let payload = randomBytes(40_000)
        var wire = try ciphertext(of: payload, from: pair)
        // Cut in the middle of the third record. Only one record is read during the loan:
        // the rest of the lent bytes are copied into the engine when the call returns.
        let cut = 36_000
        var received: [UInt8] = []
        try wire.withUnsafeBytes { bytes in
            let outcome = try lending(bytes, ..<cut, to: pair.server) { () throws(CoreTLSFailure) in
                try pair.server.read { received.append(contentsOf: $0) }
            }
            #expect(outcome == .data(16_384))
        }
        #expect(received == Array(payload.prefix(16_384)))
        #expect(pair.server.pendingInboundBytes > 0)
        // The lent memory is the caller's again: overwriting it changes nothing.
        for index in 0..<cut { wire[index] = 0 }
        received += try drain(pair.server).bytes
        #expect(received.count > 16_384 && received.count < payload.count)
        // The rest of the third record, lent while GnuTLS holds its first part.
        try wire.withUnsafeBytes { bytes in
            received += try lending(bytes, cut..., to: pair.server) { () throws(CoreTLSFailure) in try drain(pair.server) }.bytes
        }
        #expect(received == payload)
        #expect(pair.server.pendingInboundBytes == 0)
    }

    @Test(arguments: versions)
    func nestedLoansKeepTheirOrder(version: TLSVersion) throws {
        let pair = try connectedPair(version)
        let payload = randomBytes(50_000)
        let wire = try ciphertext(of: payload, from: pair)
        let queued = 3_000
        let outer = 30_000
        pair.server.receive(Array(wire[..<queued]))
        let received = try wire.withUnsafeBytes { bytes in
            try lending(bytes, queued..<outer, to: pair.server) { () throws(CoreTLSFailure) in
                // A re-entrant delivery (nothing read from the outer loan yet): the outer
                // loan's bytes come before the inner's.
                try lending(bytes, outer..., to: pair.server) { () throws(CoreTLSFailure) in try drain(pair.server) }
            }
        }
        #expect(received.bytes == payload)
        #expect(pair.server.pendingInboundBytes == 0)
    }

    @Test(arguments: versions)
    func outputGoesToTheSinkInOrder(version: TLSVersion) throws {
        let pair = try connectedPair(version)
        let first = randomBytes(1_000)
        let second = randomBytes(20_000)
        let third = randomBytes(500)
        // Queued before the sink is set: handed to it first.
        try first.withUnsafeBytes { bytes in try pair.client.write(bytes) }
        var sunk: [UInt8] = []
        let result = pair.client.withOutput(to: { sunk.append(contentsOf: $0) }) {
            Result<Void, any Error> {
                try second.withUnsafeBytes { bytes in try pair.client.write(bytes) }
                // A nested sink does not take over: the bytes stay in order in the outer one.
                var inner: [UInt8] = []
                try pair.client.withOutput(to: { inner.append(contentsOf: $0) }) {
                    Result<Void, any Error> { try third.withUnsafeBytes { bytes in try pair.client.write(bytes) } }
                }.get()
                #expect(inner.isEmpty)
            }
        }
        try result.get()
        #expect(!pair.client.hasOutbound)
        // Outside the sink, output is queued again.
        try first.withUnsafeBytes { bytes in try pair.client.write(bytes) }
        #expect(pair.client.hasOutbound)
        sunk += pair.client.takeOutbound()
        pair.server.receive(sunk)
        #expect(try drain(pair.server).bytes == first + second + third + first)
    }
}

/// GnuTLSHandler's share of the record path: what it reports must not change when it takes
/// the peer's certificates from the verifier (or its cache) instead of parsing them again.
@Suite struct HandlerPeerCertificateTests {
    /// Two connections of one client context to one server: the second is answered by the
    /// verified-chain cache, or (TLS 1.2: resumed, with the chain restored from the session)
    /// by the verification the session was made with.
    @Test(arguments: [TLSVersion.tls12, .tls13])
    func aChainCacheHitReportsThePresentedCertificates(version: TLSVersion) async throws {
        let fixture = try EngineFixture(version)
        // TLS 1.3 resumption sends no certificate: full handshakes there.
        let client = try fixture.client { $0.sessionResumption = version == .tls12 }
        let server = try fixture.server()
        var infos: [ConnectionInfo] = []
        for _ in 0..<2 {
            let serverEnd = try await TLSEnd(context: server)
            let clientEnd = try await TLSEnd(context: client, host: "localhost")
            try await serverEnd.activate()
            try await clientEnd.activate()
            try await shuttle(clientEnd, serverEnd)
            #expect(await eventually { clientEnd.recorder.events.count == 1 })
            infos.append(contentsOf: clientEnd.recorder.events)
            await clientEnd.finish()
            await serverEnd.finish()
        }
        guard infos.count == 2 else {
            Issue.record("\(infos.count) handshakes completed, not 2")
            return
        }
        #expect(!infos[0].verificationCacheHit && !infos[0].verificationFromResumedSession)
        #expect(infos[1].verificationCacheHit == (version == .tls13))
        #expect(infos[1].verificationFromResumedSession == (version == .tls12))
        #expect(infos[1].isResumed == (version == .tls12))
        let presented = fixture.pki.serverIdentity.chain.map(\.derEncoded)
        for info in infos {
            #expect(info.peerCertificates.map { $0.derEncoded } == presented)
            #expect(info.peerCertificates == fixture.pki.serverIdentity.chain)
            #expect(info.verifiedChain?.leaf == fixture.pki.serverIdentity.leaf)
        }
    }
}
