@_spi(Benchmarks) import GnuTLS
@_spi(Benchmarks) import GnuTLSAuthority
import Testing

// The in-memory engine pair's bulk transfer (issue 11): the client encrypts into one wire
// buffer that the pair reuses for every record, and the server reads it in place.

@Suite struct InMemoryTLSPairTests {
    static let versions: [TLSVersion] = [.tls12, .tls13]

    private func connectedPair(_ pki: BenchmarkPKI, _ version: TLSVersion) throws -> InMemoryTLSPair {
        let pair = try InMemoryTLSPair(client: try TLSContext(configuration: pki.clientConfiguration(version: version)),
                                       server: try TLSContext(configuration: pki.serverConfiguration(version: version)))
        try pair.handshake()
        return pair
    }

    private func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    @Test(arguments: versions)
    func everyRecordKeepsItsContentsWhileTheWireIsReused(version: TLSVersion) throws {
        let pair = try connectedPair(try BenchmarkPKI(), version)
        // Whole records, records that GnuTLS splits (over 16 KiB), small ones, a last short
        // one: each transfer writes over the wire buffer the one before used.
        for recordSize in [16 * 1024, 20_000, 1_000, 7] {
            let payload = randomBytes(3 * 16 * 1024 + 123)
            var records: [[UInt8]] = []
            let count = try payload.withUnsafeBytes { bytes in
                try pair.transfer(bytes, recordSize: recordSize) { records.append(Array($0)) }
            }
            #expect(count == payload.count)
            #expect(records.joined().elementsEqual(payload), "record size \(recordSize)")
            // Two records read back to back: the first one's bytes were not overwritten by the second.
            let expectedFirst = Array(payload.prefix(min(recordSize, 16 * 1024)))
            #expect(records.first == expectedFirst, "record size \(recordSize)")
        }
    }
}
