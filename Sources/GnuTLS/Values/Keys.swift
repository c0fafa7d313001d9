import Foundation
import GnuTLSCore
import SwiftASN1

/// A public-key algorithm with its size or curve.
///
/// `RawRepresentable` by the names `tlsctl` uses (`ecdsa-p256`, `rsa-3072`, `ed25519`, …).
public struct KeyAlgorithm: RawRepresentable, Hashable, Sendable, CustomStringConvertible, CaseIterable {
    /// The `tlsctl` name: `ecdsa-p256`, `rsa-3072`, `ed25519`, ….
    public var rawValue: String
    /// The algorithm named `rawValue` (one of ``allCases``), or nil.
    public init?(rawValue: String) {
        guard Self.allCases.contains(where: { $0.rawValue == rawValue }) else { return nil }
        self.rawValue = rawValue
    }
    private init(_ name: String) { rawValue = name }
    /// A readable form, for logs and messages.
    public var description: String { rawValue }

    /// RSA with a 2048-bit modulus (the smallest size the authority accepts).
    public static let rsa2048 = KeyAlgorithm("rsa-2048")
    /// RSA with a 3072-bit modulus.
    public static let rsa3072 = KeyAlgorithm("rsa-3072")
    /// RSA with a 4096-bit modulus.
    public static let rsa4096 = KeyAlgorithm("rsa-4096")
    /// ECDSA on NIST P-256 (secp256r1), signing with SHA-256. The default.
    public static let ecdsaP256 = KeyAlgorithm("ecdsa-p256")
    /// ECDSA on NIST P-384 (secp384r1), signing with SHA-384.
    public static let ecdsaP384 = KeyAlgorithm("ecdsa-p384")
    /// ECDSA on NIST P-521 (secp521r1), signing with SHA-512.
    public static let ecdsaP521 = KeyAlgorithm("ecdsa-p521")
    /// Ed25519 (RFC 8410).
    public static let ed25519 = KeyAlgorithm("ed25519")

    /// Every algorithm the package generates keys for.
    public static let allCases: [KeyAlgorithm] = [.rsa2048, .rsa3072, .rsa4096, .ecdsaP256, .ecdsaP384, .ecdsaP521, .ed25519]

    var coreKind: CoreKeyKind {
        switch rawValue {
        case "rsa-2048": return .rsa(bits: 2048)
        case "rsa-3072": return .rsa(bits: 3072)
        case "rsa-4096": return .rsa(bits: 4096)
        case "ecdsa-p384": return .ecdsa(curveBits: 384)
        case "ecdsa-p521": return .ecdsa(curveBits: 521)
        case "ed25519": return .ed25519
        default: return .ecdsa(curveBits: 256)
        }
    }
}

/// A public-key algorithm family.
public struct KeyFamily: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// `RSA`, `ECDSA`, `Ed25519`, or GnuTLS's name for another family (`DSA`, `Ed448`, …).
    public let rawValue: String
    /// A family by GnuTLS's name; prefer the static members.
    public init(rawValue: String) { self.rawValue = rawValue }
    /// RSA (GnuTLS `GNUTLS_PK_RSA`).
    public static let rsa = KeyFamily(rawValue: "RSA")
    /// ECDSA on a named curve (GnuTLS `GNUTLS_PK_ECDSA`).
    public static let ecdsa = KeyFamily(rawValue: "ECDSA")
    /// Ed25519 (GnuTLS `GNUTLS_PK_EDDSA_ED25519`).
    public static let ed25519 = KeyFamily(rawValue: "Ed25519")
    /// A readable form, for logs and messages.
    public var description: String { rawValue }
}

/// The family and size of a key as read from a certificate, request or key file, including
/// sizes this library does not generate (RSA-1024, for example).
public struct KeyDescription: Hashable, Sendable, CustomStringConvertible {
    /// The family: ``KeyFamily/rsa``, ``KeyFamily/ecdsa``, ``KeyFamily/ed25519``, or
    /// another (by GnuTLS's name).
    public var family: KeyFamily
    /// Modulus size for RSA, curve size for ECDSA, 256 for Ed25519.
    public var bits: Int
    /// The curve for ECDSA keys (`P-256`, `P-384`, `P-521`).
    public var curve: String?

    /// The matching generatable algorithm, if there is one.
    public var algorithm: KeyAlgorithm? {
        switch (family, bits) {
        case (.rsa, 2048): return .rsa2048
        case (.rsa, 3072): return .rsa3072
        case (.rsa, 4096): return .rsa4096
        case (.ecdsa, 256): return .ecdsaP256
        case (.ecdsa, 384): return .ecdsaP384
        case (.ecdsa, 521): return .ecdsaP521
        case (.ed25519, _): return .ed25519
        default: return nil
        }
    }

    /// A readable form, for logs and messages.
    public var description: String {
        if let curve { return "\(family) \(curve)" }
        if family == .ed25519 { return family.rawValue }
        return "\(family) \(bits)"
    }

    init(_ kind: CoreKeyKind) {
        switch kind {
        case .rsa(let bits): self.init(family: .rsa, bits: bits, curve: nil)
        case .ecdsa(let bits): self.init(family: .ecdsa, bits: bits, curve: "P-\(bits)")
        case .ed25519: self.init(family: .ed25519, bits: 256, curve: nil)
        case .other(let name, let bits): self.init(family: KeyFamily(rawValue: name), bits: bits, curve: nil)
        }
    }

    init(family: KeyFamily, bits: Int, curve: String?) {
        self.family = family
        self.bits = bits
        self.curve = curve
    }
}

/// A public key: its DER `SubjectPublicKeyInfo` and what can be derived from it.
public struct PublicKey: Hashable, Sendable, CustomStringConvertible {
    /// The DER `SubjectPublicKeyInfo`.
    public let derEncoded: [UInt8]
    /// Algorithm and size.
    public let keyDescription: KeyDescription

    /// Parses a DER `SubjectPublicKeyInfo`.
    /// - Throws: ``GnuTLSError`` `.malformedDER`.
    public init(derEncoded: [UInt8]) throws {
        let handle = try PublicKeyHandle(spki: derEncoded)
        self.derEncoded = derEncoded
        self.keyDescription = KeyDescription(handle.kind)
    }

    /// Parses a PEM `PUBLIC KEY` block.
    public init(pemEncoded: String) throws {
        let document = try PEMBlock.parseAll(pemEncoded)[0]
        guard document.label == "PUBLIC KEY" else {
            throw GnuTLSError(.unexpectedObject, "expected a PUBLIC KEY PEM block, found \(document.label)")
        }
        try self.init(derEncoded: document.derBytes)
    }

    init(spki: [UInt8], kind: CoreKeyKind) {
        derEncoded = spki
        keyDescription = KeyDescription(kind)
    }

    /// The `PUBLIC KEY` PEM block.
    public var pemEncoded: String { PEMBlock(label: "PUBLIC KEY", derBytes: derEncoded).pemString }

    /// SHA-256 of the DER `SubjectPublicKeyInfo` (the "SPKI pin").
    public var sha256Fingerprint: [UInt8] { CoreCrypto.sha256(derEncoded) }

    /// The key identifier of RFC 5280 section 4.2.1.2, method 1: SHA-1 of the
    /// `subjectPublicKey` BIT STRING contents. Used for SKI and AKI extensions.
    public var keyIdentifier: [UInt8] {
        CoreCrypto.sha1(Self.subjectPublicKeyBits(derEncoded) ?? derEncoded)
    }

    /// A readable form, for logs and messages.
    public var description: String { "\(keyDescription) public key \(sha256Fingerprint.colonHex.prefix(23))…" }

    /// The contents of the `subjectPublicKey` BIT STRING (without the unused-bits byte).
    package static func subjectPublicKeyBits(_ spki: [UInt8]) -> [UInt8]? {
        guard let node = try? DERReader.children(of: spki), node.count == 2,
              node[1].tag == 0x03, let first = node[1].content.first, first == 0 else { return nil }
        return Array(node[1].content.dropFirst())
    }
}

/// A signature scheme: what a ``SigningKey`` is asked to make (the hash and padding
/// together, as TLS 1.3 names them). Not to be confused with ``SignatureAlgorithm``, which
/// describes the algorithm a parsed certificate or CRL was signed with.
///
/// `RawRepresentable` by the names below (`ecdsa-sha256`, `rsa-pss-sha256`, …).
public struct SignatureScheme: RawRepresentable, Hashable, Sendable, CustomStringConvertible, CaseIterable {
    /// The scheme's name.
    public let rawValue: String
    let core: CoreSignatureAlgorithm

    /// The scheme with this name, if there is one.
    public init?(rawValue: String) {
        guard let match = Self.allCases.first(where: { $0.rawValue == rawValue }) else { return nil }
        self = match
    }

    init(_ core: CoreSignatureAlgorithm) {
        self.core = core
        switch core {
        case .ecdsaSHA256: rawValue = "ecdsa-sha256"
        case .ecdsaSHA384: rawValue = "ecdsa-sha384"
        case .ecdsaSHA512: rawValue = "ecdsa-sha512"
        case .rsaPKCS1SHA256: rawValue = "rsa-pkcs1-sha256"
        case .rsaPKCS1SHA384: rawValue = "rsa-pkcs1-sha384"
        case .rsaPKCS1SHA512: rawValue = "rsa-pkcs1-sha512"
        case .rsaPSSSHA256: rawValue = "rsa-pss-sha256"
        case .rsaPSSSHA384: rawValue = "rsa-pss-sha384"
        case .rsaPSSSHA512: rawValue = "rsa-pss-sha512"
        case .ed25519: rawValue = "ed25519"
        }
    }

    /// A readable form, for logs and messages.
    public var description: String { rawValue }

    /// ECDSA over a SHA-256 digest (GnuTLS `GNUTLS_SIGN_ECDSA_SHA256`, TLS `ecdsa_secp256r1_sha256`).
    public static let ecdsaSHA256 = SignatureScheme(.ecdsaSHA256)
    /// ECDSA over a SHA-384 digest (`GNUTLS_SIGN_ECDSA_SHA384`).
    public static let ecdsaSHA384 = SignatureScheme(.ecdsaSHA384)
    /// ECDSA over a SHA-512 digest (`GNUTLS_SIGN_ECDSA_SHA512`).
    public static let ecdsaSHA512 = SignatureScheme(.ecdsaSHA512)
    /// RSA PKCS#1 v1.5 over a SHA-256 digest (`GNUTLS_SIGN_RSA_SHA256`).
    public static let rsaPKCS1SHA256 = SignatureScheme(.rsaPKCS1SHA256)
    /// RSA PKCS#1 v1.5 over a SHA-384 digest (`GNUTLS_SIGN_RSA_SHA384`).
    public static let rsaPKCS1SHA384 = SignatureScheme(.rsaPKCS1SHA384)
    /// RSA PKCS#1 v1.5 over a SHA-512 digest (`GNUTLS_SIGN_RSA_SHA512`).
    public static let rsaPKCS1SHA512 = SignatureScheme(.rsaPKCS1SHA512)
    /// RSA-PSS over a SHA-256 digest, MGF1-SHA-256, salt as long as the digest (`GNUTLS_SIGN_RSA_PSS_RSAE_SHA256`).
    public static let rsaPSSSHA256 = SignatureScheme(.rsaPSSSHA256)
    /// RSA-PSS over a SHA-384 digest (`GNUTLS_SIGN_RSA_PSS_RSAE_SHA384`).
    public static let rsaPSSSHA384 = SignatureScheme(.rsaPSSSHA384)
    /// RSA-PSS over a SHA-512 digest (`GNUTLS_SIGN_RSA_PSS_RSAE_SHA512`).
    public static let rsaPSSSHA512 = SignatureScheme(.rsaPSSSHA512)
    /// Ed25519 over the message itself (`GNUTLS_SIGN_EDDSA_ED25519`).
    public static let ed25519 = SignatureScheme(.ed25519)

    /// Every signature scheme the package can sign with.
    public static let allCases: [SignatureScheme] = CoreSignatureAlgorithm.allCases.map(SignatureScheme.init)

    /// The length of the digest ``SigningKey/sign(_:algorithm:)`` receives; `nil` for
    /// Ed25519, which receives the whole message.
    public var digestLength: Int? { core.digestLength == 0 ? nil : core.digestLength }

    /// The key family that makes this signature.
    public var keyFamily: KeyFamily { KeyFamily(rawValue: core.keyFamily) }
}

/// How a ``SigningKey`` is written to a CA directory.
public struct KeyReference: Hashable, Sendable, CustomStringConvertible {
    /// What is saved (used by `LocalAuthority.save`).
    package enum StoredForm: Hashable, Sendable {
        case inMemory(KeyPair)
        case uri(String)
    }
    package let storedForm: StoredForm

    /// A key held in memory: saved as PKCS#8 (encrypted with the CA's passphrase when given).
    public static func inMemory(_ key: KeyPair) -> KeyReference { KeyReference(storedForm: .inMemory(key)) }
    /// A key that lives elsewhere and is named by a URI (RFC 7512 `pkcs11:`): saved as the URI.
    public static func uri(_ uri: String) -> KeyReference { KeyReference(storedForm: .uri(uri)) }

    /// A readable form, for logs and messages.
    public var description: String {
        switch storedForm {
        case .inMemory(let key): return "in-memory \(key)"
        case .uri(let uri): return uri
        }
    }
}

/// A private key that signs: certificates, requests, CRLs, OCSP responses, and TLS
/// handshakes all reach it through this one seam.
///
/// Conforming types in this package: ``KeyPair`` (in memory) and ``PKCS11Key`` (on a token).
/// Conform your own type to sign elsewhere (a remote signer, a KMS): the library bridges it
/// to GnuTLS (`gnutls_privkey_import_ext4`), so it serves every signing path the same way.
///
/// ```swift
/// struct RemoteKey: SigningKey {
///     let publicKey: PublicKey
///     func sign(_ data: [UInt8], algorithm: SignatureScheme) throws -> [UInt8] {
///         try kms.sign(digest: data, scheme: algorithm.rawValue)
///     }
/// }
/// ```
///
/// ``sign(_:algorithm:)`` is called synchronously, on the thread that needs the signature:
/// inside a TLS handshake that is the connection's event loop (GnuTLS's sign callback
/// cannot wait). A slow signer there delays every connection of that event loop.
public protocol SigningKey: Sendable {
    /// The public half.
    var publicKey: PublicKey { get }
    /// The schemes ``sign(_:algorithm:)`` accepts, preferred first. By default, every scheme
    /// of the key's family (``KeyFamily``) that this library uses.
    var signatureSchemes: [SignatureScheme] { get }
    /// Signs `data` with `algorithm`.
    ///
    /// `data` is the digest of the message (``SignatureScheme/digestLength`` bytes) for
    /// ECDSA and RSA, as Go's `crypto.Signer` receives it, and the message itself for
    /// Ed25519. Return an ECDSA signature as a DER `Ecdsa-Sig-Value`, an RSA or Ed25519
    /// signature as its raw bytes. Throw to refuse; the error reaches the caller of the
    /// signing operation (issuance, request creation) unchanged.
    func sign(_ data: [UInt8], algorithm: SignatureScheme) throws -> [UInt8]
    /// How a CA directory saves this key; `nil` (the default) when it cannot: such a key is
    /// used from memory only.
    var reference: KeyReference? { get }
}

extension SigningKey {
    /// Every scheme of the key's family: RSA-PSS and PKCS#1 v1.5 with SHA-256/384/512,
    /// ECDSA with the curve's digest first, Ed25519.
    public var signatureSchemes: [SignatureScheme] {
        let kind = (try? PublicKeyHandle(spki: publicKey.derEncoded).kind) ?? .other(name: "unknown", bits: 0)
        return kind.signatureAlgorithms.map(SignatureScheme.init)
    }

    /// `nil`: the key cannot be saved to a CA directory.
    public var reference: KeyReference? { nil }
}

/// A key GnuTLS holds itself (software or token): its handle is used directly, with no callback.
protocol NativeSigningKey: SigningKey {
    var handle: PrivateKeyHandle { get }
}

/// The one `gnutls_privkey_t` behind any ``SigningKey``: the key's own for ``KeyPair`` and
/// ``PKCS11Key``; for any other type an external key whose sign callbacks call
/// ``SigningKey/sign(_:algorithm:)``.
package func coreKeyHandle(for key: any SigningKey) throws -> PrivateKeyHandle {
    if let native = key as? any NativeSigningKey { return native.handle }
    let signer = try CoreExternalSigner(spki: key.publicKey.derEncoded, algorithms: Set(key.signatureSchemes.map { $0.core })) { algorithm, input in
        try key.sign(input, algorithm: SignatureScheme(algorithm))
    }
    return try PrivateKeyHandle.external(signer)
}

/// A private key held in memory, and its public key.
///
/// Generate one, or import PKCS#1, SEC1, PKCS#8 or encrypted PKCS#8 from PEM or DER.
/// Export is PKCS#8, encrypted with PBES2 (AES-256-CBC, PBKDF2) when a passphrase is given.
///
/// ```swift
/// let key = try KeyPair.generate(.ecdsaP256)
/// let pem = try key.pemEncoded(passphrase: "correct horse")
/// let again = try KeyPair(pemEncoded: pem, passphrase: "correct horse")
/// ```
public struct KeyPair: NativeSigningKey, Hashable, CustomStringConvertible {
    let handle: PrivateKeyHandle
    /// The public half.
    public let publicKey: PublicKey

    init(handle: PrivateKeyHandle) throws {
        self.handle = handle
        let publicHandle = try handle.publicKey()
        self.publicKey = PublicKey(spki: try publicHandle.spki(), kind: publicHandle.kind)
    }

    /// Generates a new key.
    public static func generate(_ algorithm: KeyAlgorithm = .ecdsaP256) throws -> KeyPair {
        try KeyPair(handle: PrivateKeyHandle.generate(algorithm.coreKind))
    }

    /// Imports a private key from PEM text (`PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`,
    /// `RSA PRIVATE KEY`, `EC PRIVATE KEY`).
    ///
    /// - Throws: ``GnuTLSError`` `.passphraseRequired`, `.wrongPassphrase`, `.malformedPEM`,
    ///   `.malformedDER`, or `.unexpectedObject` (a certificate or request where a key was expected).
    public init(pemEncoded text: String, passphrase: String? = nil) throws {
        let documents = try PEMBlock.parseAll(text)
        guard let document = documents.first(where: { $0.label.hasSuffix("PRIVATE KEY") }) else {
            let found = documents.map(\.label).joined(separator: ", ")
            throw GnuTLSError(.unexpectedObject, "expected a private key, found \(Self.describe(labels: found))")
        }
        try self.init(derEncoded: document.derBytes, passphrase: passphrase)
    }

    /// Imports a DER private key: PKCS#1, SEC1, PKCS#8 or encrypted PKCS#8.
    public init(derEncoded der: [UInt8], passphrase: String? = nil) throws {
        do {
            try self.init(handle: PrivateKeyHandle.importDER(der, passphrase: passphrase))
        } catch let error as GnuTLSError where error.code == .malformedDER {
            if (try? CertificateHandle(der: der)) != nil {
                throw GnuTLSError(.unexpectedObject, "expected a private key, found a certificate")
            }
            if (try? RequestHandle(der: der)) != nil {
                throw GnuTLSError(.unexpectedObject, "expected a private key, found a certificate request")
            }
            throw Self.unsupportedKeyError(der, passphrase: passphrase) ?? error
        }
    }

    /// When GnuTLS cannot import well-formed key bytes, says why in words a user can act
    /// on: an `EncryptedPrivateKeyInfo` whose scheme GnuTLS does not know (scrypt), or an EC
    /// key on a curve it lacks (secp256k1, brainpool). `nil` when the bytes are neither.
    static func unsupportedKeyError(_ der: [UInt8], passphrase: String?) -> GnuTLSError? {
        guard let fields = try? DERReader.children(of: der) else { return nil }
        func oid(_ element: DERReader.Element?) -> String? {
            element.flatMap { try? ASN1ObjectIdentifier(derEncoded: $0.node).description }
        }
        // EncryptedPrivateKeyInfo ::= SEQUENCE { encryptionAlgorithm AlgorithmIdentifier, encryptedData OCTET STRING }
        if fields.count == 2, fields[0].tag == 0x30, fields[1].tag == 0x04 {
            guard passphrase != nil else {
                return GnuTLSError(.passphraseRequired, "private key is encrypted: a passphrase is required")
            }
            let algorithm = fields[0].children
            var scheme = oid(algorithm.first) ?? "an unknown scheme"
            if scheme == "1.2.840.113549.1.5.13", let kdf = oid(algorithm.dropFirst().first?.children.first?.children.first) {
                scheme = kdf == "1.3.6.1.4.1.11591.4.11" ? "PBES2 with scrypt" : "PBES2 with key derivation \(kdf)"
            }
            return GnuTLSError(.unsupportedAlgorithm, "private key is encrypted with \(scheme), which GnuTLS cannot decrypt: re-encrypt it with PBES2 and AES-256 (openssl pkcs8 -topk8 -v2 aes256)")
        }
        // PrivateKeyInfo ::= SEQUENCE { version, AlgorithmIdentifier { id-ecPublicKey, namedCurve }, privateKey OCTET STRING, … }
        // ECPrivateKey ::= SEQUENCE { version (1), privateKey OCTET STRING, [0] namedCurve, [1] publicKey }
        var curve: String?
        if fields.count >= 3, fields[0].tag == 0x02, fields[1].tag == 0x30, fields[2].tag == 0x04,
           oid(fields[1].children.first) == "1.2.840.10045.2.1" {
            curve = oid(fields[1].children.dropFirst().first)
        } else if fields.count >= 3, fields[0].tag == 0x02, fields[1].tag == 0x04 {
            curve = oid(fields.first { $0.tag == 0xA0 }?.children.first)
        }
        // The curves GnuTLS knows: P-192, P-224, P-256, P-384, P-521. A key on one of them
        // that failed to import is malformed, not unsupported.
        let known = ["1.2.840.10045.3.1.1", "1.3.132.0.33", "1.2.840.10045.3.1.7", "1.3.132.0.34", "1.3.132.0.35"]
        if let curve, !known.contains(curve) {
            return GnuTLSError(.unsupportedAlgorithm, "private key is an EC key on curve \(curve), which GnuTLS does not support: use P-256, P-384 or P-521")
        }
        return nil
    }

    /// Imports PEM or DER bytes, whichever they are.
    public init(bytes: [UInt8], passphrase: String? = nil) throws {
        if PEMBlock.looksLikePEM(bytes) {
            try self.init(pemEncoded: String(decoding: bytes, as: UTF8.self), passphrase: passphrase)
        } else {
            try self.init(derEncoded: bytes, passphrase: passphrase)
        }
    }

    /// Reads a key file (PEM or DER).
    public init(contentsOfFile path: String, passphrase: String? = nil) throws {
        try self.init(bytes: FileIO.read(path), passphrase: passphrase)
    }

    /// PKCS#8 DER; encrypted (PBES2, AES-256) when `passphrase` is given.
    public func derEncoded(passphrase: String? = nil) throws -> [UInt8] {
        if let passphrase, passphrase.isEmpty {
            throw GnuTLSError(.invalidArgument, "an empty passphrase does not protect a key: give a non-empty one or none")
        }
        let der = try handle.exportPKCS8(passphrase: passphrase)
        return passphrase == nil ? der : EncryptedPKCS8.withPRFNullParameters(der)
    }

    /// `PRIVATE KEY` PEM, or `ENCRYPTED PRIVATE KEY` when `passphrase` is given.
    public func pemEncoded(passphrase: String? = nil) throws -> String {
        PEMBlock(label: passphrase == nil ? "PRIVATE KEY" : "ENCRYPTED PRIVATE KEY",
                    derBytes: try derEncoded(passphrase: passphrase)).pemString
    }

    /// Algorithm and size.
    public var keyDescription: KeyDescription { publicKey.keyDescription }

    /// Signs `data` (a digest, or the message for Ed25519) with GnuTLS.
    public func sign(_ data: [UInt8], algorithm: SignatureScheme) throws -> [UInt8] {
        try handle.sign(data, algorithm: algorithm.core)
    }

    /// ``KeyReference/inMemory(_:)``: saved as PKCS#8.
    public var reference: KeyReference? { .inMemory(self) }

    /// A readable form, for logs and messages.
    public var description: String { "\(keyDescription) key pair" }

    /// Two key pairs are equal when their public keys are.
    public static func == (lhs: KeyPair, rhs: KeyPair) -> Bool { lhs.publicKey == rhs.publicKey }
    /// Hashes the public key, as `==` compares it.
    public func hash(into hasher: inout Hasher) { hasher.combine(publicKey) }

    static func describe(labels: String) -> String {
        switch labels {
        case "CERTIFICATE": return "a certificate"
        case "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST": return "a certificate request"
        case "X509 CRL": return "a CRL"
        default: return "PEM blocks: \(labels)"
        }
    }
}

/// Encrypted PKCS#8 as every major library reads it.
enum EncryptedPKCS8 {
    static let pbes2 = ObjectIdentifierText.derEncoded(arcs: [1, 2, 840, 113549, 1, 5, 13])
    static let pbkdf2 = ObjectIdentifierText.derEncoded(arcs: [1, 2, 840, 113549, 1, 5, 12])

    /// GnuTLS 3.7 writes the PBKDF2 PRF `AlgorithmIdentifier` (hmacWithSHA256) without
    /// parameters; RFC 8018 (appendix A.2, B.1) gives them as NULL and BoringSSL refuses the
    /// key without them. The encryption does not cover these parameters, so the structure is
    /// rewritten with `SEQUENCE { OID, NULL }`. Anything not shaped as expected is returned
    /// unchanged (GnuTLS reads both forms).
    ///
    /// `EncryptedPrivateKeyInfo ::= SEQUENCE { SEQUENCE { pbes2, SEQUENCE { SEQUENCE { pbkdf2,
    /// SEQUENCE { salt, iterations, keyLength?, prf } }, encryptionScheme } }, encryptedData }`
    static func withPRFNullParameters(_ der: [UInt8]) -> [UInt8] {
        guard let top = try? DERReader.children(of: der), top.count == 2, top[0].tag == 0x30 else { return der }
        let algorithm = top[0].children
        guard algorithm.count == 2, algorithm[0].encoded == pbes2, algorithm[1].tag == 0x30 else { return der }
        let schemes = algorithm[1].children
        guard schemes.count == 2, schemes[0].tag == 0x30 else { return der }
        let kdf = schemes[0].children
        guard kdf.count == 2, kdf[0].encoded == pbkdf2, kdf[1].tag == 0x30 else { return der }
        var parameters = kdf[1].children
        guard parameters.count >= 3, let prf = parameters.last, prf.tag == 0x30 else { return der }
        let prfFields = prf.children
        guard prfFields.count == 1, prfFields[0].tag == 0x06 else { return der }
        parameters.removeLast()
        let newPRF = DERWriter.element(tag: 0x30, content: prfFields[0].encoded + [0x05, 0x00])
        let newParameters = DERWriter.element(tag: 0x30, content: parameters.flatMap(\.encoded) + newPRF)
        let newKDF = DERWriter.element(tag: 0x30, content: kdf[0].encoded + newParameters)
        let newSchemes = DERWriter.element(tag: 0x30, content: newKDF + schemes[1].encoded)
        let newAlgorithm = DERWriter.element(tag: 0x30, content: algorithm[0].encoded + newSchemes)
        return DERWriter.element(tag: 0x30, content: newAlgorithm + top[1].encoded)
    }
}
