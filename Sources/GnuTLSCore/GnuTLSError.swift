/// An error from swift-gnutls: a failed GnuTLS call, or input the library refused.
///
/// Errors are structs, not enums, so new codes can be added without breaking callers.
/// Match on ``code``; read ``message`` for words a user can act on.
///
/// ```swift
/// do { _ = try KeyPair(pemEncoded: text, passphrase: "wrong") }
/// catch let error as GnuTLSError where error.code == .wrongPassphrase { … }
/// ```
public struct GnuTLSError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of failure this is.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        /// The code's name, stable across releases.
        public var rawValue: String
        /// A code by name; prefer the static members.
        public init(rawValue: String) { self.rawValue = rawValue }
        /// A readable form, for logs and messages.
        public var description: String { rawValue }

        /// A GnuTLS function returned an error that has no more specific code here.
        public static let library = Code(rawValue: "library")
        /// The passphrase does not decrypt the private key.
        public static let wrongPassphrase = Code(rawValue: "wrongPassphrase")
        /// The private key is encrypted and no passphrase was given.
        public static let passphraseRequired = Code(rawValue: "passphraseRequired")
        /// Text that should be PEM is not: no block, a broken header or footer, or bad base64.
        public static let malformedPEM = Code(rawValue: "malformedPEM")
        /// Bytes that should be DER are not a valid encoding of the expected structure.
        public static let malformedDER = Code(rawValue: "malformedDER")
        /// The input is a valid object, but not the kind that was expected
        /// (a certificate where a private key was expected, for example).
        public static let unexpectedObject = Code(rawValue: "unexpectedObject")
        /// An argument is out of range or inconsistent.
        public static let invalidArgument = Code(rawValue: "invalidArgument")
        /// The algorithm, curve or key size is not supported.
        public static let unsupportedAlgorithm = Code(rawValue: "unsupportedAlgorithm")
        /// A distinguished name string is not valid RFC 4514.
        public static let invalidName = Code(rawValue: "invalidName")
        /// A file could not be read or written.
        public static let fileAccess = Code(rawValue: "fileAccess")
        /// A signature does not verify.
        public static let signatureInvalid = Code(rawValue: "signatureInvalid")
        /// A signing key (a token, a remote signer) failed to sign.
        public static let signerFailed = Code(rawValue: "signerFailed")
        /// The key or token cannot make the signature asked for (mechanism or scheme not offered).
        public static let mechanismNotSupported = Code(rawValue: "mechanismNotSupported")
        /// A private key does not match the certificate (or public key) it is paired with.
        public static let keyMismatch = Code(rawValue: "keyMismatch")
        /// A PKCS#11 module could not be found or loaded.
        public static let moduleNotFound = Code(rawValue: "moduleNotFound")
        /// No token matching the `pkcs11:` URI is present in any loaded module.
        public static let tokenNotPresent = Code(rawValue: "tokenNotPresent")
        /// No object (key) matching the `pkcs11:` URI is on the token.
        public static let objectNotFound = Code(rawValue: "objectNotFound")
        /// The token needs a PIN and none was given.
        public static let pinRequired = Code(rawValue: "pinRequired")
        /// The token refused the PIN (it was tried once, never retried).
        public static let wrongPIN = Code(rawValue: "wrongPIN")
        /// The token's PIN is locked after too many wrong attempts.
        public static let pinLocked = Code(rawValue: "pinLocked")
    }

    /// What kind of failure this is.
    public var code: Code
    /// A sentence saying what was attempted, on what, and why it failed.
    public var message: String
    /// The GnuTLS function that failed, when one did.
    public var function: String?
    /// GnuTLS's negative return code, when a GnuTLS function failed.
    public var gnutlsCode: Int32?
    /// GnuTLS's symbolic name for ``gnutlsCode`` (`GNUTLS_E_DECRYPTION_FAILED`, …).
    public var gnutlsName: String?
    /// GnuTLS's own description of ``gnutlsCode``.
    public var gnutlsDescription: String?

    /// Creates an error.
    public init(
        _ code: Code, _ message: String, function: String? = nil, gnutlsCode: Int32? = nil,
        gnutlsName: String? = nil, gnutlsDescription: String? = nil
    ) {
        self.code = code
        self.message = message
        self.function = function
        self.gnutlsCode = gnutlsCode
        self.gnutlsName = gnutlsName
        self.gnutlsDescription = gnutlsDescription
    }

    /// A readable form, for logs and messages.
    public var description: String {
        var text = message
        if let function, let gnutlsName {
            text += " (\(function): \(gnutlsName)"
            if let gnutlsDescription { text += ", \(gnutlsDescription)" }
            text += ")"
        }
        return text
    }
}
