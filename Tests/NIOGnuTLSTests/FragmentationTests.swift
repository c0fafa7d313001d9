import GnuTLS
import GnuTLSAuthority
import GnuTLSCore
import Testing

// Handshake messages spread over several TLS records that arrive together (issue 7, item 1).
// Each side is driven the way the NIO handler drives it: `handshake()` is called once per
// delivery of bytes, never again on a timer. A handshake that needs another call without
// new input stalls here, and the test fails at once instead of timing out.

/// Splits the records in `bytes` so that no record carries more than `fragment` bytes of
/// payload (the same content type and version on each piece). Only valid for plaintext
/// records (the ClientHello) or to re-frame bytes the receiver has not decrypted yet.
func resplit(records bytes: [UInt8], into pieces: Int) -> [UInt8] {
    var output: [UInt8] = []
    var offset = 0
    while offset + 5 <= bytes.count {
        let length = Int(bytes[offset + 3]) << 8 | Int(bytes[offset + 4])
        let payload = Array(bytes[(offset + 5)..<min(bytes.count, offset + 5 + length)])
        let size = max(1, payload.count / pieces)
        var start = 0
        while start < payload.count {
            let chunk = payload[start..<min(payload.count, start + size)]
            output += [bytes[offset], bytes[offset + 1], bytes[offset + 2], UInt8(chunk.count >> 8), UInt8(chunk.count & 0xFF)]
            output += chunk
            start += size
        }
        offset += 5 + length
    }
    return output
}

/// The number of TLS records in `bytes`.
func recordCount(_ bytes: [UInt8]) -> Int {
    var count = 0
    var offset = 0
    while offset + 5 <= bytes.count {
        offset += 5 + (Int(bytes[offset + 3]) << 8 | Int(bytes[offset + 4]))
        count += 1
    }
    return count
}

/// Runs a handshake in which each side's `handshake()` is called once per batch of bytes it
/// receives (and once at the start for the client), as an event loop would. `transform`
/// may rewrite each batch in flight.
func eventDrivenHandshake(_ pair: EnginePair, maxRounds: Int = 32,
                          transform: (_ toServer: Bool, _ bytes: [UInt8]) -> [UInt8] = { $1 }) -> HandshakeOutcome {
    var outcome = HandshakeOutcome()
    func step(_ engine: TLSEngine, _ complete: inout Bool, _ failure: inout CoreTLSFailure?) {
        guard !complete, failure == nil else { return }
        do { complete = try engine.handshake() == .complete } catch { failure = error }
    }
    step(pair.client, &outcome.clientComplete, &outcome.clientFailure)
    for _ in 0..<maxRounds {
        var moved = false
        let toServer = pair.client.takeOutbound()
        if !toServer.isEmpty {
            pair.server.receive(transform(true, toServer))
            step(pair.server, &outcome.serverComplete, &outcome.serverFailure)
            moved = true
        }
        let toClient = pair.server.takeOutbound()
        if !toClient.isEmpty {
            pair.client.receive(transform(false, toClient))
            step(pair.client, &outcome.clientComplete, &outcome.clientFailure)
            moved = true
        }
        if !moved { break }
    }
    return outcome
}

/// DNS names that make a certificate larger than one TLS record (16 KiB).
func bulkyNames(count: Int = 98) -> [GeneralName] {
    let label = String(repeating: "x", count: 60)
    return [.dnsName("localhost"), .ipAddress(IPAddress("127.0.0.1")!)]
        + (0..<count).map { .dnsName("n\($0).\(label).\(label).\(label).example.com") }
}

@Suite struct FragmentationTests {
    static let versions: [TLSVersion] = [.tls12, .tls13]

    @Test(arguments: versions, [2, 3, 50])
    func clientHelloSplitIntoRecordsArrivingTogether(version: TLSVersion, pieces: Int) throws {
        let fixture = try EngineFixture(version)
        let pair = try EnginePair(client: try fixture.client(), server: try fixture.server())
        var first = true
        let outcome = eventDrivenHandshake(pair) { toServer, bytes in
            guard toServer, first else { return bytes }
            first = false
            let split = resplit(records: bytes, into: pieces)
            #expect(recordCount(split) >= pieces)
            return split
        }
        #expect(outcome.clientFailure == nil && outcome.serverFailure == nil)
        #expect(outcome.bothComplete)
        #expect(try transfer(Array("ping".utf8), from: pair.client, to: pair.server).bytes == Array("ping".utf8))
    }

    @Test(arguments: versions)
    func clientHelloOverSixteenKiBInTwoRecordsArrivingTogether(version: TLSVersion) throws {
        // GnuTLS's own client cannot make a ClientHello that large (a few ALPN names at most):
        // one of its ClientHellos grows by an unknown 17,000-byte extension (which a server
        // ignores), then travels as two records. The client's transcript no longer matches,
        // so only the server's side is checked: it answers at once, in one call.
        let fixture = try EngineFixture(version)
        let client = try fixture.client().makeEngine(host: "localhost")
        _ = try client.handshake()
        let hello = try #require(addingExtension(to: client.takeOutbound(), type: 0xFAFA, length: 17_000))
        let records = resplit(records: hello, into: 2)
        #expect(recordCount(records) >= 2)
        #expect(records.count > 16 * 1024)
        let server = try fixture.server().makeEngine(host: nil)
        server.receive(records)
        #expect(try server.handshake() == .wantInput)
        let answer = server.takeOutbound()
        // A ServerHello (handshake record, type 2), not an alert.
        #expect(answer.first == 0x16 && answer.count > 5 && answer[5] == 0x02, "\(answer.prefix(8))")
    }

    @Test(arguments: versions)
    func serverCertificateFlightOverSixteenKiB(version: TLSVersion) throws {
        let fixture = try EngineFixture(version, pki: try TestPKI(serverNames: bulkyNames()))
        #expect(fixture.pki.serverIdentity.leaf.derEncoded.count > 16 * 1024)
        let pair = try EnginePair(client: try fixture.client(), server: try fixture.server())
        let outcome = eventDrivenHandshake(pair)
        #expect(outcome.clientFailure == nil && outcome.serverFailure == nil)
        #expect(outcome.bothComplete)
    }

    @Test(arguments: versions)
    func clientCertificateFlightOverSixteenKiB(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let bigClient = try TestPKI.issue(by: fixture.pki.issuing, subject: "CN=client-big,O=Example",
                                          names: bulkyNames(), profile: .tlsClient)
        #expect(bigClient.leaf.derEncoded.count > 16 * 1024)
        let pair = try EnginePair(client: try fixture.client(identity: bigClient),
                                  server: try fixture.server { $0.clientCertificates = .required })
        let outcome = eventDrivenHandshake(pair)
        #expect(outcome.clientFailure == nil && outcome.serverFailure == nil)
        #expect(outcome.bothComplete)
        #expect(pair.server.peerCertificates.first == bigClient.leaf.derEncoded)
    }

    @Test(arguments: versions)
    func serverFlightInSmallRecordsArrivingTogether(version: TLSVersion) throws {
        // Like `openssl s_server -max_send_frag 512`: the server's plaintext handshake
        // records (all of TLS 1.2's flight before ChangeCipherSpec, TLS 1.3's ServerHello)
        // re-framed into records of at most 512 bytes, and at least three.
        let fixture = try EngineFixture(version)
        let pair = try EnginePair(client: try fixture.client(), server: try fixture.server())
        var first = true
        let outcome = eventDrivenHandshake(pair) { toServer, bytes in
            guard !toServer, first else { return bytes }
            first = false
            var output: [UInt8] = []
            var offset = 0
            var plaintext = true
            while offset + 5 <= bytes.count {
                let length = Int(bytes[offset + 3]) << 8 | Int(bytes[offset + 4])
                let record = Array(bytes[offset..<min(bytes.count, offset + 5 + length)])
                if record[0] != 0x16 { plaintext = false }
                output += plaintext ? resplit(records: record, into: max(3, length / 512 + 1)) : record
                offset += 5 + length
            }
            #expect(recordCount(output) > recordCount(bytes))
            return output
        }
        #expect(outcome.clientFailure == nil && outcome.serverFailure == nil)
        #expect(outcome.bothComplete)
    }
}

/// `hello` (one record holding a ClientHello) with an extension of `length` zero bytes
/// appended, every enclosing length fixed up (the record may then exceed 16 KiB: split it).
func addingExtension(to hello: [UInt8], type: UInt16, length: Int) -> [UInt8]? {
    guard hello.count > 5 + 4 + 2 + 32 + 1 else { return nil }
    func u16(_ at: Int) -> Int { Int(hello[at]) << 8 | Int(hello[at + 1]) }
    var offset = 5 + 4 + 2 + 32
    offset += 1 + Int(hello[offset])
    offset += 2 + u16(offset)
    offset += 1 + Int(hello[offset])
    let extensionsLengthAt = offset
    let extensionsEnd = offset + 2 + u16(offset)
    guard extensionsEnd == hello.count else { return nil }
    let added = [UInt8(type >> 8), UInt8(type & 0xFF), UInt8(length >> 8), UInt8(length & 0xFF)] + [UInt8](repeating: 0, count: length)
    var out = hello + added
    let delta = added.count
    func add(_ at: Int, _ bytes: Int) {
        var total = 0
        for index in 0..<bytes { total = total << 8 | Int(out[at + index]) }
        total += delta
        for index in 0..<bytes { out[at + bytes - 1 - index] = UInt8((total >> (8 * index)) & 0xFF) }
    }
    add(3, 2)
    add(6, 3)
    add(extensionsLengthAt, 2)
    return out
}
