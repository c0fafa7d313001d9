/// LeakSanitizer suppressions for leaks in the Swift toolchain's own libraries, read by the
/// sanitizer runtime when the test executable is built with `--sanitize=address`.
///
/// - `String(contentsOfFile:)` (swift-foundation's `readBytesFromFile`) leaks a 4096-byte
///   read buffer, seen when a test reads a file that is still empty (the tests read
///   `/proc` files and files programs wrote).
/// - XCTest's runner leaks its own suite objects (`XCTestSuiteRun`, `XCTMainMisc`) in the
///   XCTest pass of `swift test`, which runs no test of this package.
///
/// Nothing else is suppressed: a leak in GnuTLS, GnuTLSCore or GnuTLS still fails the run.
/// The function is looked up by name by the sanitizer runtime; without a sanitizer it is
/// never called.
@_cdecl("__lsan_default_suppressions")
public func lsanDefaultSuppressions() -> UnsafePointer<CChar> {
    UnsafeRawPointer(leakSuppressions.utf8Start).assumingMemoryBound(to: CChar.self)
}

/// NUL-terminated, as every `StaticString` literal is. Patterns match a substring of any
/// frame's (mangled) function or module name; a `$` would anchor the end, so none is used.
private let leakSuppressions: StaticString = """
    leak:20FoundationEssentials17readBytesFromFile
    leak:libXCTest.so

    """
