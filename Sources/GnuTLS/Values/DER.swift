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

/// Writes DER from bytes that are already valid, without the throwing serializer API.
enum DERWriter {
    /// `tag`, the DER length of `content`, `content`.
    static func element(tag: UInt8, content: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [tag]
        if content.count < 0x80 {
            out.append(UInt8(content.count))
        } else {
            var length = content.count
            var octets: [UInt8] = []
            while length > 0 {
                octets.insert(UInt8(length & 0xFF), at: 0)
                length >>= 8
            }
            out.append(0x80 | UInt8(octets.count))
            out += octets
        }
        return out + content
    }
}

/// Dotted object identifiers, validated strictly so that text and DER round-trip (SwiftASN1's
/// `init(dotRepresentation:)` accepts `+5`, a first arc above 2, and traps when the first
/// two arcs overflow).
enum ObjectIdentifierText {
    /// The arcs of `text`, or `nil` unless it is canonical dotted decimal.
    static func arcs(_ text: String) -> [UInt]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 2, parts.count <= 128 else { return nil }
        var arcs: [UInt] = []
        for part in parts {
            guard !part.isEmpty, part.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  part == "0" || part.first != "0", let arc = UInt(part) else { return nil }
            arcs.append(arc)
        }
        // SwiftASN1 reads subidentifiers of at most 63 bits: nothing larger is written.
        let limit = UInt(Int64.max)
        guard arcs[0] <= 2, arcs[0] == 2 || arcs[1] < 40, arcs[1] <= limit - 80,
              arcs.dropFirst(2).allSatisfy({ $0 <= limit }) else { return nil }
        return arcs
    }

    /// The dotted text of an OBJECT IDENTIFIER's contents octets, or `nil` when they are
    /// not a valid encoding. (SwiftASN1's `description` renders `2.999` as `26.39`.)
    static func text(content: some Collection<UInt8>) -> String? {
        var arcs: [UInt] = []
        var value: UInt = 0
        var started = false
        for byte in content {
            if !started && byte == 0x80 { return nil }  // a leading zero septet
            guard value <= UInt(Int64.max) >> 7 else { return nil }
            value = value << 7 | UInt(byte & 0x7F)
            started = true
            if byte & 0x80 == 0 {
                arcs.append(value)
                value = 0
                started = false
            }
        }
        guard !started, let first = arcs.first else { return nil }
        let head: [UInt] = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80]
        return (head + arcs.dropFirst()).map(String.init).joined(separator: ".")
    }

    /// The DER OBJECT IDENTIFIER for `text`, or `nil` when it is not a valid dotted OID.
    static func derEncoded(_ text: String) -> [UInt8]? {
        arcs(text).map { derEncoded(arcs: $0) }
    }

    /// The DER OBJECT IDENTIFIER for valid `arcs` (see ``arcs(_:)``).
    static func derEncoded(arcs: [UInt]) -> [UInt8] {
        var content: [UInt8] = []
        func base128(_ value: UInt) {
            var value = value
            var septets: [UInt8] = [UInt8(value & 0x7F)]
            value >>= 7
            while value > 0 {
                septets.insert(UInt8(value & 0x7F) | 0x80, at: 0)
                value >>= 7
            }
            content += septets
        }
        base128(arcs.count > 1 ? arcs[0] * 40 + arcs[1] : arcs.first ?? 0)
        for arc in arcs.dropFirst(2) { base128(arc) }
        return DERWriter.element(tag: 0x06, content: content)
    }
}
