import Foundation
import GnuTLSCore
import SwiftASN1

/// An X.500 distinguished name: the subject or issuer of a certificate.
///
/// Its truth is the DER encoding; it is built from typed attributes, parsed from DER or from
/// the RFC 4514 string form, and rendered back to that form with escaping that round-trips.
///
/// ```swift
/// let name = try DistinguishedName("CN=api.example.com,O=Example\\, Inc.,C=US")
/// name.commonName   // "api.example.com"
/// name.description  // "CN=api.example.com,O=Example\\, Inc.,C=US"
/// ```
public struct DistinguishedName: Hashable, Sendable, CustomStringConvertible, ExpressibleByArrayLiteral {
    /// The relative distinguished names, in DER order (most significant first, so `C` before `CN`).
    public var rdns: [RelativeDistinguishedName]

    /// A name from RDNs in DER order.
    public init(_ rdns: [RelativeDistinguishedName]) { self.rdns = rdns }

    /// A name with one attribute per RDN, in DER order.
    public init(attributes: [Attribute]) { self.rdns = attributes.map { RelativeDistinguishedName([$0]) } }

    /// A name with one attribute per RDN, in DER order: `[.country("US"), .commonName("x")]`.
    public init(arrayLiteral elements: Attribute...) { self.init(attributes: elements) }

    /// Parses the RFC 4514 string form (`CN=leaf,O=Example,C=US`: most significant RDN last).
    /// - Throws: ``GnuTLSError`` `.invalidName`.
    public init(_ rfc4514: String) throws {
        self = try RFC4514.parse(rfc4514)
    }

    /// Parses a DER `Name`.
    /// - Throws: ``GnuTLSError`` `.malformedDER`.
    public init(derEncoded der: [UInt8]) throws {
        do {
            let root = try DER.parse(der)
            self.rdns = try DER.sequence(root, identifier: .sequence) { nodes in
                var rdns: [RelativeDistinguishedName] = []
                while let rdnNode = nodes.next() {
                    let attributes: [Attribute] = try DER.set(rdnNode, identifier: .set) { members in
                        var attributes: [Attribute] = []
                        while let member = members.next() {
                            attributes.append(try DER.sequence(member, identifier: .sequence) { fields in
                                guard let oidNode = fields.next(), let valueNode = fields.next(), fields.next() == nil else {
                                    throw GnuTLSError(.malformedDER, "a name attribute is not a (type, value) pair")
                                }
                                guard oidNode.identifier == .objectIdentifier, case .primitive(let content) = oidNode.content,
                                      let oid = ObjectIdentifierText.text(content: content) else {
                                    throw GnuTLSError(.malformedDER, "a name attribute's type is not an object identifier")
                                }
                                return Attribute(type: try AttributeType(oid: oid), value: AttributeValue(validDER: Array(valueNode.encodedBytes)))
                            })
                        }
                        return attributes
                    }
                    guard !attributes.isEmpty else { throw GnuTLSError(.malformedDER, "a relative distinguished name is empty") }
                    rdns.append(RelativeDistinguishedName(attributes))
                }
                return rdns
            }
        } catch let error as GnuTLSError {
            throw error
        } catch {
            throw GnuTLSError(.malformedDER, "bytes are not a DER distinguished name: \(error)")
        }
    }

    /// The DER `Name`. Attributes of a multi-valued RDN are written in DER's SET OF order.
    public var derEncoded: [UInt8] {
        // Nothing here can fail: an AttributeType holds a validated OID and an AttributeValue
        // one complete DER element, so the name is written from bytes without `try`.
        var rdnBytes: [UInt8] = []
        for rdn in rdns {
            let members = rdn.attributes.map { attribute in
                DERWriter.element(tag: 0x30, content: attribute.type.derEncoded + attribute.value.derEncoded)
            }.sorted { $0.lexicographicallyPrecedes($1) }
            rdnBytes += DERWriter.element(tag: 0x31, content: members.flatMap { $0 })
        }
        return DERWriter.element(tag: 0x30, content: rdnBytes)
    }

    /// The RFC 4514 string (least significant RDN first).
    public var description: String { RFC4514.render(self) }

    /// Every attribute, in DER order.
    public var attributes: [Attribute] { rdns.flatMap(\.attributes) }

    /// The string values of every attribute of `type`, in DER order.
    public func values(of type: AttributeType) -> [String] {
        attributes.filter { $0.type == type }.compactMap(\.value.stringValue)
    }

    /// The most specific (last) common name.
    public var commonName: String? { values(of: .commonName).last }
    /// The organization names.
    public var organization: [String] { values(of: .organization) }
    /// The organizational unit names.
    public var organizationalUnit: [String] { values(of: .organizationalUnit) }
    /// The country code.
    public var country: String? { values(of: .country).first }

    /// Whether the name has no RDNs.
    public var isEmpty: Bool { rdns.isEmpty }

    /// The attributes as the certificate builder writes them (one RDN each).
    package var coreAttributes: [CoreNameAttribute] {
        get throws {
            guard rdns.allSatisfy({ $0.attributes.count == 1 }) else {
                throw GnuTLSError(.invalidName, "multi-valued RDNs ('+') cannot be written into a certificate or request by GnuTLS: use one attribute per RDN")
            }
            return attributes.map { CoreNameAttribute(oid: $0.type.oid, valueDER: $0.value.derEncoded) }
        }
    }

    /// One attribute of a name.
    public struct Attribute: Hashable, Sendable, CustomStringConvertible {
        /// What the attribute is.
        public var type: AttributeType
        /// Its value, with its ASN.1 string type.
        public var value: AttributeValue

        /// An attribute with a value encoded as ``AttributeType/defaultEncoding``.
        public init(_ type: AttributeType, _ value: String) {
            self.type = type
            self.value = AttributeValue(value, encoding: type.defaultEncoding)
        }

        /// An attribute with an explicit value.
        public init(type: AttributeType, value: AttributeValue) {
            self.type = type
            self.value = value
        }

        /// A common name (CN) attribute, as a UTF8String.
        public static func commonName(_ value: String) -> Attribute { Attribute(.commonName, value) }
        /// An organisation (O) attribute, as a UTF8String.
        public static func organization(_ value: String) -> Attribute { Attribute(.organization, value) }
        /// An organisational unit (OU) attribute, as a UTF8String.
        public static func organizationalUnit(_ value: String) -> Attribute { Attribute(.organizationalUnit, value) }
        /// A country (C) attribute: a two-letter code, as a PrintableString.
        public static func country(_ value: String) -> Attribute { Attribute(.country, value) }
        /// A state or province (ST) attribute, as a UTF8String.
        public static func stateOrProvince(_ value: String) -> Attribute { Attribute(.stateOrProvince, value) }
        /// A locality (L) attribute, as a UTF8String.
        public static func locality(_ value: String) -> Attribute { Attribute(.locality, value) }
        /// A domain component (DC) attribute, as an IA5String.
        public static func domainComponent(_ value: String) -> Attribute { Attribute(.domainComponent, value) }
        /// An emailAddress attribute (PKCS #9), as an IA5String.
        public static func emailAddress(_ value: String) -> Attribute { Attribute(.emailAddress, value) }
        /// A serialNumber attribute, as a PrintableString.
        public static func serialNumber(_ value: String) -> Attribute { Attribute(.serialNumber, value) }

        /// A readable form, for logs and messages.
        public var description: String { RFC4514.render(self) }
    }
}

/// One RDN: usually a single attribute; several joined with `+` in the string form.
public struct RelativeDistinguishedName: Hashable, Sendable {
    /// The attributes, at least one.
    public var attributes: [DistinguishedName.Attribute]
    /// An RDN of the given attributes.
    public init(_ attributes: [DistinguishedName.Attribute]) { self.attributes = attributes }
}

/// The type of a name attribute: an object identifier, with names for the common ones.
///
/// Always a valid object identifier: ``init(oid:)`` refuses any other text, so a name
/// built from attribute types can always be DER-encoded.
public struct AttributeType: Hashable, Sendable, CustomStringConvertible {
    /// The dotted object identifier, in canonical form (`2.5.4.3`).
    public let oid: String
    /// The DER of the OBJECT IDENTIFIER (tag, length, contents).
    let derEncoded: [UInt8]

    /// An attribute type by dotted OID (`1.3.6.1.4.1.55555.1`).
    /// - Throws: ``GnuTLSError`` `.invalidArgument` unless `oid` is a valid dotted object
    ///   identifier: at least two arcs of decimal digits without leading zeros or signs, the
    ///   first 0, 1 or 2, the second below 40 under 0 and 1.
    public init(oid: String) throws {
        guard let der = ObjectIdentifierText.derEncoded(oid) else {
            throw GnuTLSError(.invalidArgument, "'\(oid)' is not a dotted object identifier (such as 2.5.4.3)")
        }
        self.oid = oid
        self.derEncoded = der
    }

    /// A well-known type; `arcs` are constants of this file.
    private init(_ arcs: UInt...) {
        self.oid = arcs.map(String.init).joined(separator: ".")
        self.derEncoded = ObjectIdentifierText.derEncoded(arcs: arcs)
    }

    /// `CN`, 2.5.4.3
    public static let commonName = AttributeType(2, 5, 4, 3)
    /// `SN`, 2.5.4.4
    public static let surname = AttributeType(2, 5, 4, 4)
    /// `serialNumber`, 2.5.4.5
    public static let serialNumber = AttributeType(2, 5, 4, 5)
    /// `C`, 2.5.4.6
    public static let country = AttributeType(2, 5, 4, 6)
    /// `L`, 2.5.4.7
    public static let locality = AttributeType(2, 5, 4, 7)
    /// `ST`, 2.5.4.8
    public static let stateOrProvince = AttributeType(2, 5, 4, 8)
    /// `STREET`, 2.5.4.9
    public static let street = AttributeType(2, 5, 4, 9)
    /// `O`, 2.5.4.10
    public static let organization = AttributeType(2, 5, 4, 10)
    /// `OU`, 2.5.4.11
    public static let organizationalUnit = AttributeType(2, 5, 4, 11)
    /// `title`, 2.5.4.12
    public static let title = AttributeType(2, 5, 4, 12)
    /// `GN`, 2.5.4.42
    public static let givenName = AttributeType(2, 5, 4, 42)
    /// `DC`, 0.9.2342.19200300.100.1.25
    public static let domainComponent = AttributeType(0, 9, 2342, 19200300, 100, 1, 25)
    /// `UID`, 0.9.2342.19200300.100.1.1
    public static let userID = AttributeType(0, 9, 2342, 19200300, 100, 1, 1)
    /// `emailAddress`, 1.2.840.113549.1.9.1 (PKCS#9; deprecated in favour of email SANs)
    public static let emailAddress = AttributeType(1, 2, 840, 113549, 1, 9, 1)

    static let shortNames: [(String, AttributeType)] = [
        ("CN", .commonName), ("SN", .surname), ("serialNumber", .serialNumber), ("C", .country),
        ("L", .locality), ("ST", .stateOrProvince), ("STREET", .street), ("O", .organization),
        ("OU", .organizationalUnit), ("title", .title), ("GN", .givenName), ("DC", .domainComponent),
        ("UID", .userID), ("emailAddress", .emailAddress),
    ]

    /// The short name used in the string form (`CN`), or `nil` for an OID without one.
    public var shortName: String? { Self.shortNames.first { $0.1 == self }?.0 }

    /// The string type values of this attribute are encoded with when built from a string:
    /// PrintableString for `C` and `serialNumber` (RFC 5280), IA5String for `DC` and
    /// `emailAddress`, UTF8String otherwise.
    public var defaultEncoding: AttributeValue.Encoding {
        switch self {
        case .country, .serialNumber: return .printableString
        case .domainComponent, .emailAddress: return .ia5String
        default: return .utf8String
        }
    }

    /// A readable form, for logs and messages.
    public var description: String { shortName ?? oid }
}

/// The value of a name attribute: a string with its ASN.1 type, or any other DER value.
public struct AttributeValue: Hashable, Sendable, CustomStringConvertible {
    /// ASN.1 string types, by tag.
    public struct Encoding: RawRepresentable, Hashable, Sendable {
        /// The ASN.1 universal tag number.
        public var rawValue: UInt8
        /// An encoding by tag number; prefer the static members.
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// UTF8String (tag 12).
        public static let utf8String = Encoding(rawValue: 0x0C)
        /// PrintableString (tag 19).
        public static let printableString = Encoding(rawValue: 0x13)
        /// TeletexString (tag 20; read as Latin-1).
        public static let teletexString = Encoding(rawValue: 0x14)
        /// IA5String (tag 22).
        public static let ia5String = Encoding(rawValue: 0x16)
        /// UniversalString (tag 28).
        public static let universalString = Encoding(rawValue: 0x1C)
        /// BMPString (tag 30).
        public static let bmpString = Encoding(rawValue: 0x1E)
    }

    /// The complete DER of the value (tag, length, contents).
    public let derEncoded: [UInt8]

    /// A string value with the given encoding. Characters PrintableString cannot hold fall
    /// back to UTF8String so the value is never lost.
    public init(_ string: String, encoding: Encoding = .utf8String) {
        let bytes = Array(string.utf8)
        let tag: UInt8
        switch encoding {
        case .printableString:
            tag = (try? ASN1PrintableString(string)) != nil ? Encoding.printableString.rawValue : Encoding.utf8String.rawValue
        case .ia5String:
            tag = bytes.allSatisfy({ $0 < 0x80 }) ? Encoding.ia5String.rawValue : Encoding.utf8String.rawValue
        default:
            tag = Encoding.utf8String.rawValue
        }
        derEncoded = DERWriter.element(tag: tag, content: bytes)
    }

    /// A value from its complete DER (any ASN.1 type).
    /// - Throws: ``GnuTLSError`` `.malformedDER` unless `derEncoded` is exactly one complete
    ///   DER element.
    public init(derEncoded: [UInt8]) throws {
        guard !derEncoded.isEmpty, (try? DER.parse(derEncoded)) != nil else {
            throw GnuTLSError(.malformedDER, "an attribute value must be one complete DER element (\(derEncoded.count) bytes given)")
        }
        self.derEncoded = derEncoded
    }

    /// Bytes already parsed as one DER element.
    init(validDER: [UInt8]) { self.derEncoded = validDER }

    /// The string type, or `nil` when the value is not one of the ASN.1 string types.
    public var encoding: Encoding? {
        guard let tag = derEncoded.first else { return nil }
        switch tag {
        case 0x0C, 0x13, 0x14, 0x16, 0x1C, 0x1E: return Encoding(rawValue: tag)
        default: return nil
        }
    }

    /// The value as text when it is a string type; `nil` otherwise.
    public var stringValue: String? {
        guard let encoding, let node = try? DER.parse(derEncoded), case .primitive(let bytes) = node.content else { return nil }
        switch encoding {
        case .utf8String, .printableString, .ia5String:
            return String(validating: bytes, as: UTF8.self)
        case .teletexString:
            return String(bytes.map { Character(Unicode.Scalar($0)) })
        case .bmpString:
            guard bytes.count % 2 == 0 else { return nil }
            let units = stride(from: bytes.startIndex, to: bytes.endIndex, by: 2).map { UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]) }
            return String(decoding: units, as: UTF16.self)
        case .universalString:
            guard bytes.count % 4 == 0 else { return nil }
            var scalars = String.UnicodeScalarView()
            for index in stride(from: bytes.startIndex, to: bytes.endIndex, by: 4) {
                let value = bytes[index..<index + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                guard let scalar = Unicode.Scalar(value) else { return nil }
                scalars.append(scalar)
            }
            return String(scalars)
        default:
            return nil
        }
    }

    /// A readable form, for logs and messages.
    public var description: String { stringValue ?? "#" + derEncoded.hexString }
}

/// The RFC 4514 string form of distinguished names.
enum RFC4514 {
    static func render(_ name: DistinguishedName) -> String {
        name.rdns.reversed().map { rdn in rdn.attributes.map(render).joined(separator: "+") }.joined(separator: ",")
    }

    static func render(_ attribute: DistinguishedName.Attribute) -> String {
        guard let short = attribute.type.shortName, let string = attribute.value.stringValue else {
            // RFC 4514 section 2.4: a type without a short name, or a value that is not a
            // string, is written as the dotted OID and the hex of the value's DER.
            return "\(attribute.type.oid)=#\(attribute.value.derEncoded.hexString)"
        }
        return "\(short)=\(escape(string))"
    }

    /// Escapes a value per RFC 4514 section 2.4.
    static func escape(_ value: String) -> String {
        var out = ""
        let scalars = Array(value.unicodeScalars)
        for (index, scalar) in scalars.enumerated() {
            switch scalar {
            case "\"", "+", ",", ";", "<", ">", "\\", "=":
                out += "\\" + String(scalar)
            case "#" where index == 0:
                out += "\\#"
            case " " where index == 0 || index == scalars.count - 1:
                out += "\\ "
            case "\u{0}":
                out += "\\00"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += String(format: "\\%02X", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    static func parse(_ text: String) throws -> DistinguishedName {
        let bytes = Array(text.utf8)
        if bytes.allSatisfy({ $0 == 0x20 }) { return DistinguishedName([]) }
        var rdns: [RelativeDistinguishedName] = []
        var attributes: [DistinguishedName.Attribute] = []
        var index = 0

        func fail(_ why: String) -> GnuTLSError {
            GnuTLSError(.invalidName, "'\(text)' is not a valid RFC 4514 distinguished name: \(why)")
        }

        while true {
            // attributeType
            while index < bytes.count, bytes[index] == 0x20 { index += 1 }
            let typeStart = index
            while index < bytes.count, bytes[index] != UInt8(ascii: "=") { index += 1 }
            guard index < bytes.count else { throw fail("an attribute has no '='") }
            let typeText = String(decoding: bytes[typeStart..<index], as: UTF8.self).trimmingCharacters(in: .whitespaces)
            index += 1
            let type = try attributeType(typeText, fail: fail)

            // attributeValue. Unescaped spaces after '=' are not part of the value (as
            // spaces around the type and before a separator are not): "CN = x, O = y", the
            // form openssl prints, means CN=x,O=y. A leading space that belongs to the
            // value is written escaped ("\ x").
            while index < bytes.count, bytes[index] == 0x20 { index += 1 }
            var value: AttributeValue
            if index < bytes.count, bytes[index] == UInt8(ascii: "#") {
                index += 1
                let start = index
                while index < bytes.count, hexValue(bytes[index]) != nil { index += 1 }
                guard let der = [UInt8](hex: String(decoding: bytes[start..<index], as: UTF8.self)), !der.isEmpty,
                      (try? DER.parse(der)) != nil else {
                    throw fail("the hex value of \(typeText) is not a complete DER element")
                }
                value = AttributeValue(validDER: der)
                while index < bytes.count, bytes[index] == 0x20 { index += 1 }
                // Only a separator may follow the hex digits; anything else would be
                // silently taken as one.
                if index < bytes.count, ![UInt8(ascii: ","), UInt8(ascii: "+"), UInt8(ascii: ";")].contains(bytes[index]) {
                    throw fail("unexpected '\(Character(Unicode.Scalar(bytes[index])))' after the hex value of \(typeText)")
                }
            } else {
                var raw: [UInt8] = []
                var lastEscaped = 0  // length of `raw` after the last escaped byte
                while index < bytes.count {
                    let c = bytes[index]
                    if c == UInt8(ascii: ",") || c == UInt8(ascii: "+") || c == UInt8(ascii: ";") { break }
                    if c == UInt8(ascii: "\\") {
                        index += 1
                        guard index < bytes.count else { throw fail("it ends with a lone backslash") }
                        let next = bytes[index]
                        if let high = hexValue(next) {
                            guard index + 1 < bytes.count, let low = hexValue(bytes[index + 1]) else {
                                throw fail("'\\\(Character(Unicode.Scalar(next)))' starts a hex pair that is not complete")
                            }
                            raw.append(high << 4 | low)
                            index += 2
                        } else if " \"#+,;<=>\\".utf8.contains(next) {
                            raw.append(next)
                            index += 1
                        } else {
                            throw fail("'\\\(Character(Unicode.Scalar(next)))' is not a valid escape")
                        }
                        lastEscaped = raw.count
                        continue
                    }
                    if c == UInt8(ascii: "\"") || c == UInt8(ascii: "<") || c == UInt8(ascii: ">") {
                        throw fail("'\(Character(Unicode.Scalar(c)))' must be escaped")
                    }
                    raw.append(c)
                    index += 1
                }
                // Unescaped trailing spaces are not part of the value.
                while raw.count > lastEscaped, raw.last == 0x20 { raw.removeLast() }
                guard let string = String(validating: raw, as: UTF8.self) else {
                    throw fail("the value of \(typeText) is not valid UTF-8")
                }
                value = AttributeValue(string, encoding: type.defaultEncoding)
            }
            attributes.append(DistinguishedName.Attribute(type: type, value: value))

            if index >= bytes.count {
                rdns.append(RelativeDistinguishedName(attributes))
                break
            }
            let separator = bytes[index]
            index += 1
            if separator != UInt8(ascii: "+") {
                rdns.append(RelativeDistinguishedName(attributes))
                attributes = []
            }
            guard index < bytes.count else { throw fail("it ends with a separator") }
        }
        return DistinguishedName(rdns.reversed())
    }

    private static func attributeType(_ text: String, fail: (String) -> GnuTLSError) throws -> AttributeType {
        if let match = AttributeType.shortNames.first(where: { $0.0.caseInsensitiveCompare(text) == .orderedSame }) {
            return match.1
        }
        if text.caseInsensitiveCompare("E") == .orderedSame || text.caseInsensitiveCompare("EMAIL") == .orderedSame {
            return .emailAddress
        }
        let dotted = text.uppercased().hasPrefix("OID.") ? String(text.dropFirst(4)) : text
        guard !dotted.isEmpty, ObjectIdentifierText.arcs(dotted) != nil else {
            throw fail(text.isEmpty ? "an attribute type is empty" : "'\(text)' is neither a known attribute name nor a dotted OID")
        }
        return try AttributeType(oid: dotted)
    }
}

// MARK: - Bounds for issuance

extension DistinguishedName {
    /// The most attributes a subject this library issues may hold. Real subjects hold a
    /// handful; hundreds only make certificates large and slow to match.
    public static let maximumAttributeCount = 32

    /// The X.520 upper bounds, in characters, of the attribute types with one (RFC 5280
    /// Appendix A.1: `ub-common-name` 64, `ub-locality-name` 128, …); pkilint reports a
    /// value over its bound as fatal.
    static let upperBounds: [AttributeType: Int] = [
        .commonName: 64, .surname: 64, .givenName: 64, .serialNumber: 64, .country: 2, .locality: 128,
        .stateOrProvince: 128, .street: 128, .organization: 64, .organizationalUnit: 64, .title: 64,
        .domainComponent: 63, .userID: 256, .emailAddress: 255,
    ]
    /// The bound of attribute types X.520 leaves unbounded here.
    static let defaultUpperBound = 1024

    /// Why this name may not be the subject of a certificate this library issues, or `nil`:
    /// too many attributes, a value over its X.520 upper bound, a value that is not a
    /// string, or one holding a control character (C0, DEL, C1) or a bidirectional
    /// override/embedding/isolate (which make a name display as another).
    package var issuanceProblem: String? {
        let attributes = self.attributes
        if attributes.count > Self.maximumAttributeCount {
            return "the subject has \(attributes.count) attributes: at most \(Self.maximumAttributeCount) are allowed"
        }
        for attribute in attributes {
            guard let value = attribute.value.stringValue else {
                return "subject attribute \(attribute.type) is not a directory string"
            }
            let length = value.unicodeScalars.count
            let bound = Self.upperBounds[attribute.type] ?? Self.defaultUpperBound
            if length > bound {
                return "subject attribute \(attribute.type) is \(length) characters long: its upper bound is \(bound) (X.520, RFC 5280 appendix A)"
            }
            if attribute.type == .country, !(length == 2 && value.unicodeScalars.allSatisfy { ("A"..."Z").contains($0) }) {
                return "subject attribute C must be a two-letter upper-case ISO 3166 country code, not '\(Escaping.escaped(value))'"
            }
            if let scalar = value.unicodeScalars.first(where: Escaping.isUnsafe) {
                return "subject attribute \(attribute.type) holds the \(Escaping.name(of: scalar)) character U+\(String(scalar.value, radix: 16, uppercase: true)): control and bidirectional-override characters are not allowed in names"
            }
        }
        return nil
    }
}

/// Making hostile text safe to show: control characters (C0, DEL, C1) and bidirectional
/// formatting characters are written as `\u{…}` escapes, so a name cannot move the cursor,
/// clear the terminal, hide text or make itself read as another.
public enum Escaping {
    /// Whether `scalar` is a C0/DEL/C1 control or a bidirectional embedding, override,
    /// isolate or mark.
    public static func isUnsafe(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F: return true
        case 0x200E, 0x200F, 0x061C: return true  // LRM, RLM, ALM
        case 0x202A...0x202E, 0x2066...0x2069: return true  // LRE RLE PDF LRO RLO, LRI RLI FSI PDI
        default: return false
        }
    }

    /// `text` with every unsafe character written as `\u{HEX}`.
    public static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isUnsafe) else { return text }
        var result = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if isUnsafe(scalar) {
                result.append(contentsOf: "\\u{\(String(scalar.value, radix: 16, uppercase: true))}".unicodeScalars)
            } else {
                result.append(scalar)
            }
        }
        return String(result)
    }

    static func name(of scalar: Unicode.Scalar) -> String {
        switch scalar.value {
        case 0x00: return "NUL"
        case 0x01...0x1F, 0x7F: return "control"
        case 0x80...0x9F: return "C1 control"
        default: return "bidirectional formatting"
        }
    }
}
