import CGnuTLS
import Glibc
import Synchronization

/// Where a token's PIN comes from, and what happened the last time the token asked.
///
/// GnuTLS calls ``pinCallback`` with an attempt counter that grows while the token refuses
/// PINs; this source answers attempt 0 only, so one operation logs in at most once and a
/// wrong PIN is reported, never retried (retries would count down the token's PIN tries).
package final class CorePINSource: @unchecked Sendable {  // `provide` is Sendable; `outcomes` is guarded by its mutex
    /// What the token was told on one thread's last request.
    package enum Outcome: Sendable, Equatable {
        /// The PIN was given (once).
        case supplied
        /// The token asked again after refusing the PIN: refused here.
        case retryRefused
        /// No PIN was available.
        case noPIN
    }

    package typealias Provide = @Sendable (_ token: String) -> String?
    private let provide: Provide
    private let outcomes = Mutex<[UInt: Outcome]>([:])
    private let attempts = Mutex<Int>(0)

    /// - Parameter provide: returns the PIN for the token with this label, or `nil` when none is known.
    package init(_ provide: @escaping Provide) { self.provide = provide }

    private static var currentThread: UInt { UInt(pthread_self()) }

    /// How many times a PIN was handed to a token through this source.
    package var suppliedCount: Int { attempts.withLock { $0 } }

    /// What happened on this thread's last PIN request; cleared.
    package func takeOutcome() -> Outcome? { outcomes.withLock { $0.removeValue(forKey: Self.currentThread) } }

    func supply(attempt: Int, token: String, flags: UInt32, into buffer: UnsafeMutablePointer<CChar>?, capacity: Int) -> Int32 {
        let thread = Self.currentThread
        if attempt > 0 || flags & UInt32(GNUTLS_PIN_WRONG.rawValue) != 0 {
            outcomes.withLock { $0[thread] = .retryRefused }
            return GNUTLS_E_PKCS11_PIN_ERROR
        }
        guard let pin = provide(token), let buffer else {
            outcomes.withLock { $0[thread] = .noPIN }
            return GNUTLS_E_PKCS11_PIN_ERROR
        }
        let bytes = Array(pin.utf8)
        guard bytes.count < capacity, !bytes.contains(0) else {
            outcomes.withLock { $0[thread] = .noPIN }
            return GNUTLS_E_PKCS11_PIN_ERROR
        }
        bytes.withUnsafeBufferPointer { source in
            buffer.withMemoryRebound(to: UInt8.self, capacity: capacity) { target in
                target.update(from: source.baseAddress!, count: bytes.count)
                target[bytes.count] = 0
            }
        }
        attempts.withLock { $0 += 1 }
        outcomes.withLock { $0[thread] = .supplied }
        return 0
    }
}

/// A key found on a token.
package struct CoreTokenKey: Sendable, Hashable {
    package var url: String
    package var label: String
    package var kind: CoreKeyKind?
}

/// PKCS#11 through GnuTLS (which loads modules with p11-kit).
package enum PKCS11 {
    /// Sources of the global PIN function (`gnutls_pkcs11_set_pin_function`), by thread: set
    /// while an operation with no per-object PIN function runs (key generation, listing).
    private static let globalSources = Mutex<[UInt: CorePINSource]>([:])
    private static let loadedModules = Mutex<Set<String>>([])
    private static let installGlobalPIN: Void = {
        gnutls_pkcs11_set_pin_function(globalPINCallback, nil)
    }()

    /// Runs `body` with `pin` answering the global PIN function on this thread.
    static func withGlobalPIN<R>(_ pin: CorePINSource?, _ body: () throws -> R) rethrows -> R {
        _ = installGlobalPIN
        let thread = UInt(pthread_self())
        globalSources.withLock { $0[thread] = pin }
        defer { _ = globalSources.withLock { $0.removeValue(forKey: thread) } }
        return try body()
    }

    static func globalSource() -> CorePINSource? {
        globalSources.withLock { $0[UInt(pthread_self())] }
    }

    /// Loads the PKCS#11 module at `path` (`gnutls_pkcs11_add_provider`), once per process.
    /// Without it, GnuTLS loads the modules p11-kit's configuration names.
    package static func loadModule(_ path: String) throws {
        if loadedModules.withLock({ $0.contains(path) }) { return }
        guard access(path, R_OK) == 0 else {
            throw GnuTLSError(.moduleNotFound, "PKCS#11 module \(path) was not found or cannot be read")
        }
        let rc = gnutls_pkcs11_add_provider(path, nil)
        guard rc >= 0 else {
            throw GnuTLSError.from(rc, function: "gnutls_pkcs11_add_provider",
                                   context: "PKCS#11 module \(path) could not be loaded", code: .moduleNotFound)
        }
        _ = loadedModules.withLock { $0.insert(path) }
    }

    /// The token part of a `pkcs11:` URI: the path attributes that name a token, without the
    /// object ones (`object`, `id`, `type`) and the query.
    static func tokenURI(of url: String) -> String {
        let body = url.dropFirst("pkcs11:".count).split(separator: "?", maxSplits: 1).first ?? ""
        let kept = body.split(separator: ";").filter { attribute in
            let name = attribute.split(separator: "=", maxSplits: 1).first ?? ""
            return ["token", "manufacturer", "serial", "model", "library-manufacturer", "library-description",
                    "library-version", "slot-description", "slot-manufacturer", "slot-id"].contains(String(name))
        }
        return "pkcs11:" + kept.joined(separator: ";")
    }

    /// The token's flags (`gnutls_pkcs11_token_get_flags`), or a typed error when no token matches.
    static func tokenFlags(_ url: String) throws -> UInt32 {
        var flags: UInt32 = 0
        let token = tokenURI(of: url)
        let rc = gnutls_pkcs11_token_get_flags(token, &flags)
        guard rc >= 0 else {
            throw GnuTLSError.from(rc, function: "gnutls_pkcs11_token_get_flags",
                                   context: "no token matching \(token) is present in the loaded PKCS#11 modules", code: .tokenNotPresent)
        }
        return flags
    }

    /// Refuses before any login when the token is missing or its user PIN is locked.
    static func checkToken(_ url: String) throws {
        let flags = try tokenFlags(url)
        if flags & UInt32(GNUTLS_PKCS11_TOKEN_USER_PIN_LOCKED) != 0 {
            throw GnuTLSError(.pinLocked, "the user PIN of the token named by \(tokenURI(of: url)) is locked (too many wrong PINs): unlock it with the security officer PIN")
        }
    }

    /// Maps a failed PKCS#11 operation to a typed error, using what `pin` saw.
    package static func error(_ rc: Int32, function: StaticString, context: String, pin: CorePINSource?) -> GnuTLSError {
        let outcome = pin?.takeOutcome()
        let code: GnuTLSError.Code
        var what = context
        switch rc {
        case GNUTLS_E_PKCS11_PIN_LOCKED:
            code = .pinLocked
            what += ": the token's user PIN is locked (too many wrong PINs): unlock it with the security officer PIN"
        case GNUTLS_E_PKCS11_PIN_ERROR, GNUTLS_E_PKCS11_PIN_EXPIRED, GNUTLS_E_PKCS11_USER_ERROR:
            if outcome == .noPIN {
                code = .pinRequired
                what += ": the token needs a PIN and none was given"
            } else {
                code = .wrongPIN
                let given = pin?.suppliedCount ?? 0
                what += ": the token refused the PIN (given to it \(given == 1 ? "once" : "\(given) times"), not retried)"
            }
        case GNUTLS_E_PKCS11_REQUESTED_OBJECT_NOT_AVAILBLE, GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE:
            code = .objectNotFound
            what += ": no such object on the token"
        case GNUTLS_E_PKCS11_UNSUPPORTED_FEATURE_ERROR, GNUTLS_E_UNSUPPORTED_SIGNATURE_ALGORITHM:
            code = .mechanismNotSupported
            what += ": the token does not support this mechanism"
        case GNUTLS_E_PKCS11_LOAD_ERROR:
            code = .moduleNotFound
        case GNUTLS_E_PKCS11_SLOT_ERROR, GNUTLS_E_PKCS11_TOKEN_ERROR, GNUTLS_E_PKCS11_DEVICE_ERROR:
            code = .tokenNotPresent
        default:
            code = .signerFailed
        }
        var error = GnuTLSError.from(rc, function: function, context: what, code: code)
        if code == .wrongPIN || code == .pinRequired || code == .pinLocked { error.message = what }
        return error
    }

    /// Imports the private key at `url` into a new `gnutls_privkey_t` whose PIN function is
    /// `pin` (`gnutls_privkey_set_pin_function`, then `gnutls_privkey_import_url`).
    static func importURL(_ url: String, pin: CorePINSource) throws -> gnutls_privkey_t {
        try checkToken(url)
        var key: gnutls_privkey_t?
        try check(gnutls_privkey_init(&key), "gnutls_privkey_init")
        guard let key else { throw GnuTLSError(.library, "gnutls_privkey_init returned no key") }
        // The PIN source is kept alive by the PrivateKeyHandle (or TLS context) that owns this key.
        gnutls_privkey_set_pin_function(key, pinCallback, Unmanaged.passUnretained(pin).toOpaque())
        let rc = withGlobalPIN(pin) { gnutls_privkey_import_url(key, url, 0) }
        guard rc >= 0 else {
            gnutls_privkey_deinit(key)
            throw error(rc, function: "gnutls_privkey_import_url", context: "opening private key \(url)", pin: pin)
        }
        return key
    }

    /// Generates a key pair on the token named by `url` (which must carry `object=` for the
    /// label) with `gnutls_pkcs11_privkey_generate3`; returns the public key's DER SPKI.
    package static func generate(url: String, kind: CoreKeyKind, pin: CorePINSource) throws -> [UInt8] {
        try checkToken(url)
        guard let label = attribute("object", of: url) else {
            throw GnuTLSError(.invalidArgument, "the key URI \(url) needs an object=LABEL attribute to name the new key")
        }
        let (pk, bits): (gnutls_pk_algorithm_t, UInt32)
        switch kind {
        case .rsa(let size): (pk, bits) = (GNUTLS_PK_RSA, UInt32(size))
        case .ecdsa(256): (pk, bits) = (GNUTLS_PK_ECDSA, cgnutls_curve_to_bits(GNUTLS_ECC_CURVE_SECP256R1))
        case .ecdsa(384): (pk, bits) = (GNUTLS_PK_ECDSA, cgnutls_curve_to_bits(GNUTLS_ECC_CURVE_SECP384R1))
        case .ecdsa(521): (pk, bits) = (GNUTLS_PK_ECDSA, cgnutls_curve_to_bits(GNUTLS_ECC_CURVE_SECP521R1))
        case .ed25519: (pk, bits) = (GNUTLS_PK_EDDSA_ED25519, cgnutls_curve_to_bits(GNUTLS_ECC_CURVE_ED25519))
        default: throw GnuTLSError(.unsupportedAlgorithm, "cannot generate a \(kind) key on a token")
        }
        var spki = gnutls_datum_t(data: nil, size: 0)
        let flags = UInt32(GNUTLS_PKCS11_OBJ_FLAG_LOGIN.rawValue | GNUTLS_PKCS11_OBJ_FLAG_MARK_PRIVATE.rawValue
                           | GNUTLS_PKCS11_OBJ_FLAG_MARK_SENSITIVE.rawValue)
        let token = tokenURI(of: url)
        let rc = withGlobalPIN(pin) {
            gnutls_pkcs11_privkey_generate3(token, pk, bits, label, nil, GNUTLS_X509_FMT_DER, &spki, 0, flags)
        }
        defer { if spki.data != nil { cgnutls_free(spki.data) } }
        guard rc >= 0 else {
            throw error(rc, function: "gnutls_pkcs11_privkey_generate3", context: "generating key '\(label)' (\(kind)) on \(token)", pin: pin)
        }
        return takeBytes(spki)
    }

    /// The value of a path attribute of a `pkcs11:` URI (percent-decoded).
    package static func attribute(_ name: String, of url: String) -> String? {
        attributes(of: url)[name]
    }

    /// The kind of the public key stored beside a private key (same URI, `type=public`), if any.
    static func publicKeyKind(ofPrivateKey url: String) -> CoreKeyKind? {
        let publicURL = url.replacingTypePrivateWithPublic
        guard let handle = try? PublicKeyHandle() else { return nil }
        guard gnutls_pubkey_import_url(handle.raw, publicURL, 0) >= 0 else { return nil }
        return handle.kind
    }

    /// The URLs of the tokens `url` matches (its token attributes, compared decoded).
    static func tokens(matching url: String) -> [(url: String, flags: UInt32)] {
        let wanted = attributes(of: tokenURI(of: url))
        var found: [(String, UInt32)] = []
        var sequence: UInt32 = 0
        while true {
            var pointer: UnsafeMutablePointer<CChar>?
            guard gnutls_pkcs11_token_get_url(sequence, GNUTLS_PKCS11_URL_GENERIC, &pointer) >= 0, let pointer else { break }
            let tokenURL = String(cString: pointer)
            cgnutls_free(pointer)
            sequence += 1
            let have = attributes(of: tokenURL)
            guard wanted.allSatisfy({ have[$0.key] == $0.value }) else { continue }
            var flags: UInt32 = 0
            _ = gnutls_pkcs11_token_get_flags(tokenURL, &flags)
            found.append((tokenURL, flags))
        }
        return found
    }

    static func attributes(of url: String) -> [String: String] {
        let body = url.dropFirst("pkcs11:".count).split(separator: "?", maxSplits: 1).first ?? ""
        var result: [String: String] = [:]
        for attribute in body.split(separator: ";") {
            let parts = attribute.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { result[String(parts[0])] = String(parts[1]).removingPercentEncodingPKCS11 }
        }
        return result
    }

    /// Lists the private keys on the tokens that `url` matches (`pkcs11:` for all).
    ///
    /// With `pin`, each matching token that has a user PIN is logged into (private keys are
    /// private objects), one token at a time: a token that refuses the PIN ends the listing
    /// at once, so the PIN reaches at most one token that refuses it, and never a token
    /// without a user PIN (p11-kit's trust module, say).
    package static func listKeys(url: String, pin: CorePINSource?) throws -> [CoreTokenKey] {
        let tokens = tokens(matching: url)
        if tokens.isEmpty && url != "pkcs11:" {
            throw GnuTLSError(.tokenNotPresent, "no token matching \(tokenURI(of: url)) is present in the loaded PKCS#11 modules")
        }
        var keys: [CoreTokenKey] = []
        let objectFilter = attributes(of: url).filter { ["object", "id"].contains($0.key) }
        for token in tokens {
            let hasUserPIN = token.flags & UInt32(GNUTLS_PKCS11_TOKEN_USER_PIN_INITIALIZED) != 0
            let login = pin != nil && hasUserPIN && token.flags & UInt32(GNUTLS_PKCS11_TOKEN_LOGIN_REQUIRED) != 0
            if login && token.flags & UInt32(GNUTLS_PKCS11_TOKEN_USER_PIN_LOCKED) != 0 {
                throw GnuTLSError(.pinLocked, "the user PIN of token \(token.url) is locked (too many wrong PINs): unlock it with the security officer PIN")
            }
            keys += try listKeys(onToken: token.url, login: login, pin: pin)
                .filter { key in objectFilter.allSatisfy { attributes(of: key.url)[$0.key] == $0.value } }
        }
        return keys
    }

    private static func listKeys(onToken token: String, login: Bool, pin: CorePINSource?) throws -> [CoreTokenKey] {
        var list: UnsafeMutablePointer<gnutls_pkcs11_obj_t?>?
        var count: UInt32 = 0
        var flags = UInt32(GNUTLS_PKCS11_OBJ_FLAG_PRIVKEY.rawValue)
        if login { flags |= UInt32(GNUTLS_PKCS11_OBJ_FLAG_LOGIN.rawValue) }
        let rc = withGlobalPIN(login ? pin : nil) { gnutls_pkcs11_obj_list_import_url4(&list, &count, token, flags) }
        guard rc >= 0 else { throw error(rc, function: "gnutls_pkcs11_obj_list_import_url4", context: "listing keys on \(token)", pin: pin) }
        defer {
            for index in 0..<Int(count) { gnutls_pkcs11_obj_deinit(list?[index]) }
            cgnutls_free(list)
        }
        var keys: [CoreTokenKey] = []
        for index in 0..<Int(count) {
            guard let object = list?[index] else { continue }
            var urlPointer: UnsafeMutablePointer<CChar>?
            guard gnutls_pkcs11_obj_export_url(object, GNUTLS_PKCS11_URL_GENERIC, &urlPointer) >= 0, let urlPointer else { continue }
            let objectURL = String(cString: urlPointer)
            cgnutls_free(urlPointer)
            let label = ((try? sizedBuffer("gnutls_pkcs11_obj_get_info") { gnutls_pkcs11_obj_get_info(object, GNUTLS_PKCS11_OBJ_LABEL, $0, $1) }) ?? nil)
                .map { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } ?? ""
            keys.append(CoreTokenKey(url: objectURL, label: label, kind: publicKeyKind(ofPrivateKey: objectURL)))
        }
        return keys
    }
}

extension PrivateKeyHandle {
    /// Opens the private key a `pkcs11:` URI names, with `pin` answering the token.
    package static func importURL(_ url: String, pin: CorePINSource) throws -> PrivateKeyHandle {
        PrivateKeyHandle(taking: try PKCS11.importURL(url, pin: pin), url: url, pin: pin)
    }
}

extension String {
    /// This `pkcs11:` URI naming the public object instead of the private one.
    var replacingTypePrivateWithPublic: String {
        var parts = split(separator: ";", omittingEmptySubsequences: false).map(String.init)
        for index in parts.indices where parts[index] == "type=private" { parts[index] = "type=public" }
        return parts.joined(separator: ";")
    }

    /// RFC 3986 percent-decoding, as RFC 7512 attribute values use it.
    var removingPercentEncodingPKCS11: String {
        var bytes: [UInt8] = []
        var iterator = Array(utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%"), let high = iterator.next(), let low = iterator.next(),
               let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) {
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
