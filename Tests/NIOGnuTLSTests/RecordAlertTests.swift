import GnuTLS
import GnuTLSCore
import Testing

// Fatal record errors after the handshake answer with the alert RFC 8446 §5.1/§5.2 and
// RFC 5246 §7.2.2 require (issue 7, item 2). The damaged records are sent in memory to one
// engine; what it answers goes to the other engine, which must read the exact alert.
// `RecordAlertInteropTests` asserts the same against OpenSSL on a real socket.

/// Ways to damage the record stream after the handshake.
enum RecordDamage: String, CaseIterable, CustomStringConvertible {
    /// The last byte of an application-data record (its AEAD tag) flipped.
    case flippedTag
    /// An 18 KB application-data record: over 2^14 + 2048, the limit of every version.
    case oversizedRecord
    var description: String { rawValue }

    /// GnuTLS's name for the alert the receiver must send.
    var expectedAlert: String {
        switch self {
        case .flippedTag: "Bad record MAC"
        case .oversizedRecord: "Record overflow"
        }
    }

    func records(from sender: TLSEngine) throws -> [UInt8] {
        switch self {
        case .flippedTag:
            try Array("hello".utf8).withUnsafeBytes { try sender.write($0) }
            var bytes = sender.takeOutbound()
            bytes[bytes.count - 1] ^= 0x01
            return bytes
        case .oversizedRecord:
            let length = 16 * 1024 + 2048 + 1
            return [0x17, 0x03, 0x03, UInt8(length >> 8), UInt8(length & 0xFF)] + randomBytes(length)
        }
    }
}

@Suite struct RecordAlertTests {
    static let versions: [TLSVersion] = [.tls12, .tls13]

    @Test(arguments: versions, RecordDamage.allCases)
    func damagedRecordIsAnsweredWithTheExactAlert(version: TLSVersion, damage: RecordDamage) throws {
        for serverReceives in [true, false] {
            let fixture = try EngineFixture(version)
            let pair = try EnginePair(client: try fixture.client(), server: try fixture.server())
            #expect(pair.handshake().bothComplete)
            // Settle post-handshake messages (TLS 1.3 tickets) first.
            _ = try drain(pair.client)
            _ = try drain(pair.server)
            let (sender, receiver) = serverReceives ? (pair.client, pair.server) : (pair.server, pair.client)
            receiver.receive(try damage.records(from: sender))
            #expect(throws: CoreTLSFailure.self, "\(damage) to the \(serverReceives ? "server" : "client")") {
                _ = try drain(receiver)
            }
            let answer = receiver.takeOutbound()
            #expect(!answer.isEmpty, "no alert for \(damage) sent by the \(serverReceives ? "server" : "client")")
            if version == .tls12 {
                // TLS 1.2 alerts after the handshake are encrypted too; the record type is clear.
                #expect(answer.first == 0x15, "\(answer.prefix(8))")
            } else {
                // TLS 1.3 hides the type: an application-data record.
                #expect(answer.first == 0x17, "\(answer.prefix(8))")
            }
            sender.receive(answer)
            do {
                _ = try drain(sender)
                Issue.record("the \(serverReceives ? "client" : "server") read no alert after \(damage)")
            } catch {
                #expect(error.kind == .alertReceived(damage.expectedAlert), "\(damage): \(error)")
            }
        }
    }

    @Test(arguments: versions)
    func emptyAlertRecordIsAnsweredWithAnAlert(version: TLSVersion) throws {
        let fixture = try EngineFixture(version)
        let pair = try EnginePair(client: try fixture.client(), server: try fixture.server())
        #expect(pair.handshake().bothComplete)
        _ = try drain(pair.client)
        pair.server.receive([0x15, 0x03, 0x03, 0x00, 0x00])
        #expect(throws: CoreTLSFailure.self) { _ = try drain(pair.server) }
        let answer = pair.server.takeOutbound()
        #expect(!answer.isEmpty)
        pair.client.receive(answer)
        do {
            _ = try drain(pair.client)
            Issue.record("the client read no alert")
        } catch {
            guard case .alertReceived = error.kind else {
                Issue.record("expected an alert, got \(error)")
                return
            }
        }
    }

    @Test func changeCipherSpecAfterTheHandshakeIsAnUnexpectedMessage() throws {
        let fixture = try EngineFixture(.tls13)
        let pair = try EnginePair(client: try fixture.client(), server: try fixture.server())
        #expect(pair.handshake().bothComplete)
        _ = try drain(pair.client)
        pair.server.receive([0x14, 0x03, 0x03, 0x00, 0x01, 0x01])
        #expect(throws: CoreTLSFailure.self) { _ = try drain(pair.server) }
        let answer = pair.server.takeOutbound()
        pair.client.receive(answer)
        do {
            _ = try drain(pair.client)
            Issue.record("the client read no alert")
        } catch {
            #expect(error.kind == .alertReceived("Unexpected message"), "\(error)")
        }
    }
}
