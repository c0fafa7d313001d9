// Shared by GnuTLSTests and GnuTLSAuthorityTests: typed-error expectations, names and
// requests, temporary directories.
import Foundation
import GnuTLS
import GnuTLSAuthority
import Testing
import TestSupport

/// Runs `body`, which must throw an `E` of the given kind (code or reason) whose message
/// contains every word of `words` (case-insensitive). Returns the error for further checks.
public func expectThrows<E: Error, Kind: Equatable, R>(
    _ kind: Kind, _ kindOf: (E) -> Kind, _ message: (E) -> String, words: [String],
    sourceLocation: SourceLocation, _ body: () throws -> R
) -> E? {
    do {
        let value = try body()
        Issue.record("expected \(E.self) \(kind), but the call returned \(value)", sourceLocation: sourceLocation)
    } catch let error as E {
        #expect(kindOf(error) == kind, "wrong kind; error was: \(error)", sourceLocation: sourceLocation)
        for word in words {
            #expect(message(error).localizedCaseInsensitiveContains(word),
                    "message lacks '\(word)': \(message(error))", sourceLocation: sourceLocation)
        }
        return error
    } catch {
        Issue.record("expected \(E.self) \(kind), got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// `body` must throw a ``GnuTLSError`` with `code` and a message mentioning `words`.
@discardableResult
public func expectGnuTLSError<R>(
    _ code: GnuTLSError.Code, mentioning words: [String] = [],
    sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R
) -> GnuTLSError? {
    expectThrows(code, { (error: GnuTLSError) in error.code }, \.message, words: words, sourceLocation: sourceLocation, body)
}

/// `body` must throw an ``IssuanceError`` with `reason` and a message mentioning `words`.
@discardableResult
public func expectIssuanceError<R>(
    _ reason: IssuanceError.Reason, mentioning words: [String] = [],
    sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R
) -> IssuanceError? {
    expectThrows(reason, { (error: IssuanceError) in error.reason }, \.message, words: words, sourceLocation: sourceLocation, body)
}

public func name(_ text: String) throws -> DistinguishedName { try DistinguishedName(text) }

/// A request for a fresh key of `algorithm`.
public func makeRequest(
    _ subject: String, algorithm: KeyAlgorithm = .ecdsaP256, names: [GeneralName] = [],
    keyUsage: KeyUsage? = nil, extendedKeyUsage: [ExtendedKeyUsage] = []
) throws -> (KeyPair, CertificateRequest) {
    let key = try KeyPair.generate(algorithm)
    let request = try CertificateRequest.create(
        subject: try name(subject), key: key, alternativeNames: names, keyUsage: keyUsage,
        extendedKeyUsage: extendedKeyUsage)
    return (key, request)
}

/// Runs `body` with a fresh temporary directory, removed afterwards.
public func withTemporaryDirectory<R>(_ body: (TemporaryDirectory) throws -> R) throws -> R {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    return try body(directory)
}

/// Runs `body` (which runs programs) with a fresh temporary directory, removed afterwards.
public func withTemporaryDirectory<R>(_ body: (TemporaryDirectory) async throws -> R) async throws -> R {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    return try await body(directory)
}

/// A request made by `openssl req` for the key at `keyPath`, with extra arguments
/// (`-addext …`, `-sha1`), read back through the library.
public func opensslRequest(
    key keyPath: String, subject: String, extra: [String] = [], in directory: TemporaryDirectory, file: String = "req.pem"
) async throws -> CertificateRequest {
    let output = directory.file(file)
    try await Tool.runChecked(["openssl", "req", "-new", "-key", keyPath, "-subj", subject, "-out", output] + extra)
    return try CertificateRequest(contentsOfFile: output)
}
