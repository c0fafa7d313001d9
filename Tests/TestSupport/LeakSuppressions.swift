/// LeakSanitizer suppressions for leaks in the Swift toolchain's own libraries, read by the
/// sanitizer runtime when the test executable is built with `--sanitize=address`.
///
/// - `Foundation.Process.run()` (swift-corelibs-foundation) leaks the side table of a weak
///   reference it forms, for a few of the hundreds of `openssl`/`certtool`/pkilint processes
///   the interoperability tests start (32 bytes each, allocated in `swift_weakAssign`).
/// - `String(contentsOfFile:)` (swift-foundation's `readBytesFromFile`) leaks a 4096-byte
///   read buffer, seen when the TLS interoperability tests poll a peer's output file that
///   is still empty.
/// - `FileHandle.readabilityHandler` (swift-corelibs-foundation) leaks the same kind of weak
///   reference side table (32 bytes) when its monitor is set up; the tlsctl serve tests use
///   it to read a background server's output.
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
    leak:10Foundation7ProcessC3runyyKF
    leak:20FoundationEssentials17readBytesFromFile
    leak:10Foundation10FileHandleC7monitor
    leak:libXCTest.so

    """
