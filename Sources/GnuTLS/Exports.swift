@_exported import struct GnuTLSCore.GnuTLSError
import GnuTLSCore

/// The error every `GnuTLS` and `GnuTLSAuthority` API throws for a failed GnuTLS call or
/// input it refuses: a struct with a `code` (`GnuTLSError.Code`) to match on and a `message` that
/// says what was attempted, on what, and why it failed.
///
/// The type is defined in `GnuTLSCore` (the only target that calls GnuTLS) and re-exported
/// here, so `import GnuTLS` is all a caller needs. This alias puts it in this module's
/// documentation, where ``GnuTLSError`` links resolve; its codes and fields are listed in
/// <doc:GnuTLSErrors>.
///
/// ```swift
/// do { _ = try KeyPair(pemEncoded: text, passphrase: "wrong") }
/// catch let error as GnuTLSError where error.code == .wrongPassphrase { … }
/// ```
public typealias GnuTLSError = GnuTLSCore.GnuTLSError
