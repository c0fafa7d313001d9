import Foundation
import GnuTLSCore

/// Where a token's user PIN comes from.
///
/// Whatever the source, a PIN is handed to the token at most once per operation: when the
/// token refuses it, the operation fails with `.wrongPIN` instead of trying again (silent
/// retries would count down the token's remaining tries and lock it).
public struct PKCS11PIN: Sendable, CustomStringConvertible {
    enum Backing: Sendable {
        case none
        case value(String)
        case callback(@Sendable (String) -> String?)
    }
    let backing: Backing

    /// No PIN: for tokens that need no login, or objects that are not private.
    public static let none = PKCS11PIN(backing: .none)
    /// This PIN.
    public static func value(_ pin: String) -> PKCS11PIN { PKCS11PIN(backing: .value(pin)) }
    /// The PIN in a file (its first line; read now, so a missing file fails here with `.fileAccess`).
    public static func file(_ path: String) throws -> PKCS11PIN {
        let text = try FileIO.readText(path)
        let pin = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        guard !pin.isEmpty else { throw GnuTLSError(.invalidArgument, "PIN file \(path) is empty") }
        return .value(pin.hasSuffix("\r") ? String(pin.dropLast()) : pin)
    }
    /// A PIN asked for when the token needs it: `ask` receives the token's label and returns
    /// the PIN, or `nil` to cancel. It is called at most once per operation, synchronously.
    public static func callback(_ ask: @escaping @Sendable (_ tokenLabel: String) -> String?) -> PKCS11PIN {
        PKCS11PIN(backing: .callback(ask))
    }

    var source: CorePINSource {
        switch backing {
        case .none: return CorePINSource { _ in nil }
        case .value(let pin): return CorePINSource { _ in pin }
        case .callback(let ask): return CorePINSource(ask)
        }
    }

    /// A readable form, for logs and messages.
    public var description: String {
        switch backing {
        case .none: return "no PIN"
        case .value: return "PIN (value)"
        case .callback: return "PIN (callback)"
        }
    }
}

/// A private key on a PKCS#11 token (a smart card, an HSM, SoftHSM), named by an RFC 7512
/// `pkcs11:` URI. The key never leaves the token: GnuTLS asks the token for each signature.
///
/// Modules are found through p11-kit's configuration, or loaded explicitly with
/// ``loadModule(_:)`` (or the `module:` argument).
///
/// ```swift
/// let key = try PKCS11Key(uri: "pkcs11:token=ca;object=root;type=private", pin: .file("/etc/ca/pin"))
/// let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Token Root"), key: key)
/// ```
public struct PKCS11Key: NativeSigningKey, Hashable, CustomStringConvertible {
    /// The key's `pkcs11:` URI, as given.
    public let uri: String
    /// The public half, read from the token.
    public let publicKey: PublicKey
    let handle: PrivateKeyHandle

    /// Opens the private key `uri` names.
    ///
    /// - Parameters:
    ///   - uri: the RFC 7512 `pkcs11:` URI of the key.
    ///   - pin: the user PIN's source; asked for at most once per operation.
    ///   - module: a PKCS#11 module to load first (otherwise p11-kit's configured modules).
    /// - Throws: ``GnuTLSError`` `.moduleNotFound`, `.tokenNotPresent`, `.objectNotFound`,
    ///   `.pinRequired`, `.wrongPIN`, `.pinLocked`, `.invalidArgument` (not a `pkcs11:` URI).
    public init(uri: String, pin: PKCS11PIN = .none, module: String? = nil) throws {
        try Self.checkURI(uri)
        if let module { try Self.loadModule(module) }
        let handle = try PrivateKeyHandle.importURL(Self.privateKeyURI(uri), pin: pin.source)
        let publicHandle: PublicKeyHandle
        do {
            publicHandle = try handle.publicKey()
        } catch let error as GnuTLSError {
            throw GnuTLSError(.objectNotFound, "the public key of \(uri) could not be read from the token: \(error.message)")
        }
        self.uri = uri
        self.handle = handle
        self.publicKey = PublicKey(spki: try publicHandle.spki(), kind: publicHandle.kind)
    }

    /// Generates a key pair on the token `uri` names; `uri` must carry `object=LABEL` (the
    /// label of the new key) and name one token (`token=…`).
    /// - Throws: as ``init(uri:pin:module:)``, `.unsupportedAlgorithm`/`.mechanismNotSupported`
    ///   when the token cannot generate such a key, `.invalidArgument` when a key matching
    ///   `uri` is already there.
    public static func generate(_ algorithm: KeyAlgorithm, uri: String, pin: PKCS11PIN, module: String? = nil) throws -> PKCS11Key {
        try checkURI(uri)
        if let module { try loadModule(module) }
        // A second key with the same label would make the URI ambiguous.
        if PKCS11.attribute("object", of: uri) != nil, !(try listKeys(uri: uri, pin: pin)).isEmpty {
            throw GnuTLSError(.invalidArgument, "a private key matching \(uri) is already on the token: use it (PKCS11Key(uri:), --existing-key) or choose another object= label")
        }
        _ = try PKCS11.generate(url: uri, kind: algorithm.coreKind, pin: pin.source)
        return try PKCS11Key(uri: uri, pin: pin)
    }

    /// The private keys on the tokens `uri` matches (every token by default).
    /// - Parameters:
    ///   - uri: a `pkcs11:` URI selecting tokens or objects (`pkcs11:` alone: every token).
    ///   - pin: the user PIN (private keys are private objects: without a PIN, most tokens list none).
    ///   - module: a PKCS#11 module to load first (otherwise p11-kit's configured modules).
    public static func listKeys(uri: String = "pkcs11:", pin: PKCS11PIN = .none, module: String? = nil) throws -> [PKCS11KeyInfo] {
        try checkURI(uri)
        if let module { try loadModule(module) }
        let pinSource: CorePINSource? = { if case .none = pin.backing { return nil } else { return pin.source } }()
        return try PKCS11.listKeys(url: uri, pin: pinSource).map {
            PKCS11KeyInfo(uri: $0.url, label: $0.label, keyDescription: $0.kind.map(KeyDescription.init))
        }
    }

    /// Loads a PKCS#11 module (a shared library such as `/usr/lib/softhsm/libsofthsm2.so`)
    /// in addition to p11-kit's configured ones. Loading the same path again does nothing.
    /// - Throws: `.moduleNotFound`.
    public static func loadModule(_ path: String) throws {
        try PKCS11.loadModule(path)
    }

    /// Signs `data` (a digest, or the message for Ed25519) on the token.
    /// - Throws: `.mechanismNotSupported` when the key's family cannot make `algorithm`.
    public func sign(_ data: [UInt8], algorithm: SignatureScheme) throws -> [UInt8] {
        try handle.sign(data, algorithm: algorithm.core)
    }

    /// How many times this key's PIN was handed to the token (each login counts one).
    public var pinAttempts: Int { handle.pinSource?.suppliedCount ?? 0 }

    /// ``KeyReference/uri(_:)``: a CA directory saves the URI, never the key.
    public var reference: KeyReference? { .uri(uri) }

    /// Algorithm and size.
    public var keyDescription: KeyDescription { publicKey.keyDescription }

    /// A readable form, for logs and messages.
    public var description: String { "\(keyDescription) key \(uri)" }

    /// Two token keys are equal when their URIs and public keys are.
    public static func == (lhs: PKCS11Key, rhs: PKCS11Key) -> Bool { lhs.uri == rhs.uri && lhs.publicKey == rhs.publicKey }
    /// Hashes what `==` compares.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(uri)
        hasher.combine(publicKey)
    }

    static func checkURI(_ uri: String) throws {
        guard uri.hasPrefix("pkcs11:") else {
            throw GnuTLSError(.invalidArgument, "'\(uri)' is not a PKCS#11 URI (RFC 7512): it must start with pkcs11:")
        }
    }

    /// `uri` restricted to private-key objects (`type=private`) unless it names a type.
    static func privateKeyURI(_ uri: String) -> String {
        if PKCS11.attribute("type", of: uri) != nil { return uri }
        if let query = uri.firstIndex(of: "?") {
            return String(uri[..<query]) + ";type=private" + String(uri[query...])
        }
        return uri + (uri == "pkcs11:" ? "type=private" : ";type=private")
    }
}

/// A private key found on a token by ``PKCS11Key/listKeys(uri:pin:module:)``.
public struct PKCS11KeyInfo: Hashable, Sendable, CustomStringConvertible {
    /// The key's `pkcs11:` URI.
    public var uri: String
    /// Its label (`CKA_LABEL`).
    public var label: String
    /// Algorithm and size, when the token says.
    public var keyDescription: KeyDescription?

    /// A readable form, for logs and messages.
    public var description: String { "\(uri)\t\(keyDescription.map { "\($0)" } ?? "unknown")" }
}
