import Foundation
import GnuTLS
import GnuTLSAuthority
import GnuTLSTestSupport
import PropertyBased
import Testing

// Issue 9: property-based tests (x-sheep/swift-property-based) over names, general names,
// serials, keys and certificates. Every property is "build, encode, parse, compare, never
// crash": hostile input gets a typed error, valid input round-trips.

/// Characters that make OIDs, RFC 4514 text and host names interesting.
private let oidCharacters: [Character] = Array("0123456789..+-a 19")
private let nameCharacters: [Character] = Array("abcXYZ019 =,+;\\\"#<>.-*@:/é€\u{0}\u{7F}") + ["CN=", "O=", "OU=", "2.5.4.3=", "#0c0161"].flatMap { Array($0) }
private let hostCharacters: [Character] = Array("abz09-.*_ Aé:[]/")

private func characters(_ set: [Character]) -> Generator<Character, Shrink.None<Character?>> {
    Gen.element(of: set).map { $0 ?? "a" }
}

private let bytes = Gen.uint8(in: 0...255).array(of: 0...96)

@Suite("Property-based: names, general names, serials, keys, certificates never crash and round-trip")
struct PropertyTests {
    @Test("AttributeType(oid:): any text is either refused or encodes, parses and renders back unchanged")
    func attributeTypes() async {
        await propertyCheck(count: 300, input: characters(oidCharacters).string(of: 0...24)) { text in
            guard let type = try? AttributeType(oid: text) else { return }
            #expect(type.oid == text)
            let name = DistinguishedName([RelativeDistinguishedName([DistinguishedName.Attribute(type: type, value: AttributeValue("v"))])])
            let parsed = try DistinguishedName(derEncoded: name.derEncoded)
            #expect(parsed == name)
            #expect(try DistinguishedName(parsed.description) == parsed)
        }
    }

    @Test("DistinguishedName from RFC 4514 text: refused with GnuTLSError or round-trips through DER")
    func rfc4514Names() async {
        await propertyCheck(count: 300, input: characters(nameCharacters).string(of: 0...40)) { text in
            let name: DistinguishedName
            do {
                name = try DistinguishedName(text)
            } catch {
                #expect(error is GnuTLSError, "\(type(of: error)): \(error)")
                return
            }
            let again = try DistinguishedName(derEncoded: name.derEncoded)
            #expect(again == name)
            #expect(again.derEncoded == name.derEncoded)
            _ = name.description
        }
    }

    @Test("DistinguishedName from random DER: refused with GnuTLSError or re-encodes to the same bytes' meaning")
    func derNames() async {
        let valid = (try? DistinguishedName("CN=a.example.com,O=Example,C=US").derEncoded) ?? []
        let mutated = Gen.int(in: 0...max(0, valid.count - 1)).array(of: 1...3).map { positions -> [UInt8] in
            var copy = valid
            for position in positions where copy.indices.contains(position) { copy[position] ^= UInt8(truncatingIfNeeded: position &* 37 | 1) }
            return copy
        }
        await propertyCheck(count: 300, input: bytes, mutated) { random, flipped in
            for der in [random, flipped] {
                do {
                    let name = try DistinguishedName(derEncoded: der)
                    #expect(try DistinguishedName(derEncoded: name.derEncoded) == name)
                    _ = name.description
                } catch {
                    #expect(error is GnuTLSError, "\(type(of: error)): \(error)")
                }
            }
        }
    }

    @Test("general names: host names, IP addresses and networks parse or are refused; what parses round-trips")
    func generalNames() async {
        await propertyCheck(count: 300, input: characters(hostCharacters).string(of: 0...30), Gen.uint8(in: 0...255).array(of: 0...20)) { text, raw in
            if let address = IPAddress(text) {
                #expect(IPAddress(address.description) == address)
            }
            if let address = IPAddress(bytes: raw) {
                #expect(raw.count == 4 || raw.count == 16)
                #expect(IPAddress(address.description) == address)
                let network = IPNetwork(address: address, prefixLength: Int(raw.first ?? 0) % (raw.count * 8 + 1))
                #expect(IPNetwork(network.description) == network)
                #expect(network.contains(network.address))
            }
            if let name = GeneralName(prefixed: text) {
                _ = name.description
            }
            _ = IPNetwork(text)
        }
    }

    @Test("serial numbers: any bytes make a positive canonical serial whose hex parses back")
    func serials() async {
        await propertyCheck(count: 300, input: Gen.uint8(in: 0...255).array(of: 0...24)) { raw in
            let serial = SerialNumber(bytes: raw)
            #expect(!serial.bytes.isEmpty)
            #expect(serial.bytes.count == 1 || serial.bytes[0] != 0)
            #expect(SerialNumber(hex: serial.hexString) == serial)
            #expect(SerialNumber(hex: serial.description) == serial)
            #expect(!(serial < serial))
        }
    }

    @Test("keys and public keys from random or damaged DER: a typed error, never a crash")
    func keys() async throws {
        let key = try KeyPair.generate(.ecdsaP256)
        let pkcs8 = try key.derEncoded()
        let spki = key.publicKey.derEncoded
        let damage = Gen.int(in: 0...1_000).array(of: 1...3)
        await propertyCheck(count: 200, input: bytes, damage) { random, positions in
            for der in [random, Self.damaged(pkcs8, at: positions), Self.damaged(spki, at: positions)] {
                do {
                    let parsed = try KeyPair(derEncoded: der)
                    #expect(try KeyPair(derEncoded: parsed.derEncoded()).publicKey == parsed.publicKey)
                } catch {
                    #expect(error is GnuTLSError, "\(type(of: error)): \(error)")
                }
                do {
                    let parsed = try PublicKey(derEncoded: der)
                    #expect(try PublicKey(derEncoded: parsed.derEncoded) == parsed)
                    _ = parsed.keyDescription.family
                } catch {
                    #expect(error is GnuTLSError, "\(type(of: error)): \(error)")
                }
            }
        }
    }

    @Test("certificates: built, encoded, parsed and compared; damaged DER is a typed error")
    func certificates() async throws {
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Property Root,O=swift-gnutls tests"))
        let key = try KeyPair.generate(.ecdsaP256)
        let request = try CertificateRequest.create(
            subject: try DistinguishedName("CN=p.example.com"), key: key, alternativeNames: [.dnsName("p.example.com"), .ipAddress(IPAddress("192.0.2.1")!)])
        let leaf = try root.issue(request, profile: .tlsServer)
        let der = leaf.derEncoded
        #expect(try Certificate(derEncoded: der) == leaf)
        #expect(try Certificate(pemEncoded: leaf.pemEncoded) == leaf)
        await propertyCheck(count: 200, input: Gen.int(in: 0...(der.count - 1)).array(of: 1...4), Gen.uint8(in: 1...255)) { positions, mask in
            var copy = der
            for position in positions { copy[position] ^= mask }
            // The same position drawn twice undoes its own damage: nothing to test then.
            guard copy != der else { return }
            do {
                let parsed = try Certificate(derEncoded: copy)
                #expect(parsed.derEncoded == copy)
                #expect(try Certificate(derEncoded: parsed.derEncoded) == parsed)
                _ = parsed.subject.description
                _ = parsed.subjectAlternativeNames.map(\.description)
                _ = parsed.publicKey.keyDescription
                // Verification of a damaged certificate is a rejection, never a crash.
                #expect(throws: (any Error).self) {
                    try Verifier(trustStore: TrustStore(certificates: [root.certificate])).verify(parsed, policy: .server(host: "p.example.com"))
                }
            } catch {
                #expect(error is GnuTLSError, "\(type(of: error)): \(error)")
            }
        }
    }

    @Test("alternative names in a request: refused with GnuTLSError, or written and read back unchanged")
    func requestNames() async throws {
        let key = try KeyPair.generate(.ecdsaP256)
        let subject = try DistinguishedName("CN=names")
        await propertyCheck(count: 100, input: characters(hostCharacters).string(of: 1...20)) { host in
            for name in [GeneralName.dnsName(host), .email("x@" + host), .uri("https://" + host + "/")] {
                do {
                    let request = try CertificateRequest.create(subject: subject, key: key, alternativeNames: [name])
                    #expect(request.subjectAlternativeNames == [name])
                    #expect(try CertificateRequest(derEncoded: request.derEncoded) == request)
                } catch {
                    #expect(error is GnuTLSError, "\(type(of: error)): \(error)")
                }
            }
        }
    }

    private static func damaged(_ der: [UInt8], at positions: [Int]) -> [UInt8] {
        var copy = der
        for position in positions { copy[position % copy.count] ^= 0x5A }
        return copy
    }
}
