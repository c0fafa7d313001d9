import SwiftASN1

/// A thin view over SwiftASN1's parser for the few places that walk DER structures the
/// GnuTLS API does not expose (the subject of a request, the subjectPublicKey bits).
enum DERReader {
    struct Element {
        var node: ASN1Node
        /// The first identifier octet (0x30 SEQUENCE, 0x31 SET, 0x03 BIT STRING, 0xA0 [0] …).
        var tag: UInt8 { node.encodedBytes.first ?? 0 }
        /// The contents octets.
        var content: ArraySlice<UInt8> {
            switch node.content {
            case .primitive(let bytes): return bytes
            case .constructed(let children):
                var bytes: [UInt8] = []
                for child in children { bytes.append(contentsOf: child.encodedBytes) }
                return bytes[...]
            }
        }
        var encoded: [UInt8] { Array(node.encodedBytes) }
        var children: [Element] {
            guard case .constructed(let nodes) = node.content else { return [] }
            return nodes.map { Element(node: $0) }
        }
    }

    /// The children of the constructed element `der`.
    static func children(of der: [UInt8]) throws -> [Element] {
        let root = try DER.parse(der)
        guard case .constructed(let nodes) = root.content else {
            throw GnuTLSError(.malformedDER, "expected a constructed DER element")
        }
        return nodes.map { Element(node: $0) }
    }
}
