import Foundation

/// LeakSanitizer suppressions for leaks in the Swift toolchain's own libraries, read by the
/// sanitizer runtime when the test executable is built with `--sanitize=address`.
///
/// - `String(contentsOfFile:)` (swift-foundation's `readBytesFromFile`) leaks a 4096-byte
///   read buffer, seen when a test reads a file that is still empty (the tests read
///   `/proc` files and files programs wrote).
/// - XCTest's runner leaks its own suite objects (`XCTestSuiteRun`, `XCTMainMisc`) in the
///   XCTest pass of `swift test`, which runs no test of this package.
///
/// - GnuTLS 3.7.9 itself (``ChildLeakSuppressions/gnuTLSLines``), in this process and in
///   the `tlsctl` processes the tests start.
///
/// Nothing else is suppressed: a leak in GnuTLSCore, GnuTLS or NIOGnuTLS still fails the run.
/// The function is looked up by name by the sanitizer runtime; without a sanitizer it is
/// never called.
@_cdecl("__lsan_default_suppressions")
public func lsanDefaultSuppressions() -> UnsafePointer<CChar> {
    UnsafeRawPointer(leakSuppressions.utf8Start).assumingMemoryBound(to: CChar.self)
}

/// NUL-terminated, as every `StaticString` literal is. Patterns match a substring of any
/// frame's (mangled) function or module name; a `$` would anchor the end, so none is used.
/// Keep the GnuTLS lines equal to ``ChildLeakSuppressions/gnuTLSLines``.
private let leakSuppressions: StaticString = """
    leak:20FoundationEssentials17readBytesFromFile
    leak:libXCTest.so
    leak:gnutls_x509_ext_import_name_constraints

    """

/// LeakSanitizer suppressions for the sanitized `tlsctl` the tests start (directly, or
/// through the x509-limbo driver): handed down in `LSAN_OPTIONS`, which children inherit,
/// as a suppressions file written once per test run. The shipping `tlsctl` carries no
/// sanitizer hook of its own.
public enum ChildLeakSuppressions {
    /// GnuTLS 3.7.9's own leaks, which no caller can avoid:
    ///
    /// - `gnutls_x509_ext_import_name_constraints` (via `extract_name_constraints` in
    ///   lib/x509/name_constraints.c) leaks the OID string of an otherName constraint whose
    ///   type it cannot map (`gnutls_x509_othername_to_virtual` fails and the error path
    ///   frees only the value): 25 bytes each time GnuTLS reads such a CA, in its trust-list
    ///   verification and in the handshake's alike (x509-limbo
    ///   `rfc5280::nc::nc-forbids-othername-noop`). Not a one-time allocation: a process that
    ///   verifies such chains for ever grows by that much per verification; the Swift
    ///   verifier checks these constraints itself, but GnuTLS is still asked for its opinion.
    public static let gnuTLSLines = ["leak:gnutls_x509_ext_import_name_constraints"]

    /// What a child leaves behind when it calls `exit` with work still in flight, which is
    /// how a command-line tool ends: swift-argument-parser's parse state when `tlsctl`
    /// exits on a usage error (`ArgumentParser.InputKey`), and the test fixture's own
    /// strings when it exits from inside a task.
    public static let exitLines = ["leak:ArgumentParser", "leak:TLSServiceFixture"]

    /// The same lines plus `libgnutls.so.30` as a module, for the x509-limbo run only, whose
    /// `tlsctl verify` children read 150 third-party chains. One of them
    /// (`rfc5280::nc::nc-forbids-othername-noop`) makes GnuTLS 3.7.9 leak its 25 bytes in
    /// `gnutls_x509_ext_import_name_constraints` (see ``gnuTLSLines``), but the sanitizer's
    /// fast unwinder stops at the first frame inside libgnutls (built without frame
    /// pointers), an unnamed static function, so no function-name line can match it; the
    /// full unwinder (`fast_unwind_on_malloc=0`) names it but made `tlsctl verify` 17 times
    /// slower (0.6 s to 11 s of CPU on `pathological::nc-dos-1`), past the driver's
    /// 30 s per case. Only this run loses GnuTLS-allocated leaks; Swift allocations are
    /// still reported, and `tlsctl verify` in `VerifyCommandTests` keeps the narrow lines.
    public static var conformanceRunEnvironment: [String: String] {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("swift-gnutls-lsan-conformance-\(getpid()).supp").path
        let lines = gnuTLSLines + exitLines + ["leak:libgnutls.so.30"]
        guard FileManager.default.createFile(atPath: path, contents: Data((lines.joined(separator: "\n") + "\n").utf8)) else { return [:] }
        let others = (ProcessInfo.processInfo.environment["LSAN_OPTIONS"] ?? "").split(separator: ":")
            .filter { !$0.hasPrefix("suppressions=") }.map(String.init)
        return ["LSAN_OPTIONS": (others + ["suppressions=\(path)"]).joined(separator: ":")]
    }

    /// Sets `LSAN_OPTIONS=suppressions=FILE` (kept with any options already there) for every
    /// child started afterwards. Unconditional: the sanitizer runtime's symbols are local to
    /// a sanitized test executable (dlsym cannot tell), and an unsanitized child ignores
    /// the variable. Idempotent.
    public static func install() { _ = installed }

    private static let installed: Bool = {
        let existing = ProcessInfo.processInfo.environment["LSAN_OPTIONS"] ?? ""
        // A suppressions file given by the caller wins: LSAN_OPTIONS holds only one.
        guard !existing.contains("suppressions=") else { return false }
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("swift-gnutls-lsan-children-\(getpid()).supp").path
        guard FileManager.default.createFile(atPath: path, contents: Data(((gnuTLSLines + exitLines).joined(separator: "\n") + "\n").utf8)) else { return false }
        setenv("LSAN_OPTIONS", existing.isEmpty ? "suppressions=\(path)" : "\(existing):suppressions=\(path)", 1)
        return true
    }()
}
