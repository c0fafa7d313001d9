import Foundation
import GnuTLS
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// `PKCS11Key` in this process against SoftHSM2 reached through ``PKCS11Shim`` (which
/// counts `C_Login` at the token and can report the user PIN locked).
///
/// SoftHSM reads `SOFTHSM2_CONF` once, at its first `C_Initialize`, and a process loads it
/// once: so there is one token store and one shim per test process, made by the first test
/// that needs them, and `SOFTHSM2_CONF` is set in this process (only here). Loading the
/// shim explicitly (`module:`) initializes GnuTLS's PKCS#11 by hand, without p11-kit's
/// configured SoftHSM beside it.
@Suite("PKCS11Key: wrong and locked PINs, counted at the token (SoftHSM2 behind a PKCS#11 shim)", .serialized)
struct PKCS11PINTests {
    struct Fixture: Sendable {
        static let pin = "1234"
        static let uri = "pkcs11:token=pin-tests;object=k"
        let directory: TemporaryDirectory
        let shim: PKCS11Shim

        init() async throws {
            directory = try TemporaryDirectory(prefix: "pkcs11-pin-tests")
            let tokens = directory.file("tokens")
            try FileManager.default.createDirectory(atPath: tokens, withIntermediateDirectories: true)
            let configuration = try directory.write("directories.tokendir = \(tokens)\nobjectstore.backend = file\nlog.level = ERROR\n", to: "softhsm2.conf")
            let result = try await Tool.run(["softhsm2-util", "--init-token", "--free", "--label", "pin-tests", "--pin", Self.pin, "--so-pin", "5678"],
                                            timeout: 60, environment: ["SOFTHSM2_CONF": configuration], package: "softhsm2")
            guard result.succeeded else { throw FixtureError(detail: "\(result)") }
            setenv("SOFTHSM2_CONF", configuration, 1)
            shim = try await PKCS11Shim(in: directory.path)
            _ = try PKCS11Key.generate(.ecdsaP256, uri: Self.uri, pin: .value(Self.pin), module: shim.modulePath)
        }

        /// Opens the key with `pin`, counting the logins the token sees.
        func open(pin: String) throws -> PKCS11Key {
            try PKCS11Key(uri: Self.uri, pin: .value(pin), module: shim.modulePath)
        }
    }

    struct FixtureError: Error, CustomStringConvertible {
        var detail: String
        var description: String { "softhsm2-util could not make the test token: \(detail)" }
    }

    static let fixture = Task { try await Fixture() }

    @Test("a wrong PIN reaches the token once (one C_Login, CKR_PIN_INCORRECT): .wrongPIN, not retried; the right PIN logs in once and signs")
    func wrongPINOnce() async throws {
        let fixture = try await Self.fixture.value
        let shim = fixture.shim
        try shim.lock(.none)
        shim.resetLogins()
        let error = #expect(throws: GnuTLSError.self) { try fixture.open(pin: "0000") }
        #expect(error?.code == .wrongPIN && error?.message.contains("given to it once, not retried") == true, "\(String(describing: error))")
        #expect(shim.logins().count == 1 && shim.logins().allSatisfy { $0.hasSuffix("rv=0xa0") }, "\(shim.logins())")

        shim.resetLogins()
        let listError = #expect(throws: GnuTLSError.self) { try PKCS11Key.listKeys(uri: "pkcs11:token=pin-tests", pin: .value("0000")) }
        #expect(listError?.code == .wrongPIN, "\(String(describing: listError))")
        #expect(shim.logins().count == 1 && shim.logins().allSatisfy { $0.hasSuffix("rv=0xa0") }, "\(shim.logins())")

        shim.resetLogins()
        do {
            let key = try fixture.open(pin: Fixture.pin)
            let signature = try key.sign(Array(repeating: 7, count: 32), algorithm: .ecdsaSHA256)
            #expect(!signature.isEmpty)
            #expect(key.pinAttempts == 1)
        }
        #expect(shim.logins().count == 1 && shim.logins().allSatisfy { $0.hasSuffix("rv=0x0") }, "\(shim.logins())")
    }

    @Test("a locked user PIN is .pinLocked with a message that says how to unlock it; flagged: no login at all; answered by C_Login: one",
          arguments: [(PKCS11Shim.Lock.flag, 0), (.login, 1)])
    func pinLocked(_ lock: PKCS11Shim.Lock, logins: Int) async throws {
        let fixture = try await Self.fixture.value
        let shim = fixture.shim
        try shim.lock(lock)
        defer { try? shim.lock(.none) }
        shim.resetLogins()
        let error = #expect(throws: GnuTLSError.self) { try fixture.open(pin: Fixture.pin) }
        #expect(error?.code == .pinLocked, "\(String(describing: error))")
        #expect(error?.message.contains("is locked (too many wrong PINs)") == true
                && error?.message.contains("unlock it with the security officer PIN") == true, "\(String(describing: error))")
        let listError = #expect(throws: GnuTLSError.self) { try PKCS11Key.listKeys(uri: "pkcs11:token=pin-tests", pin: .value(Fixture.pin)) }
        #expect(listError?.code == .pinLocked, "\(String(describing: listError))")
        // Two operations, each refused before a login or after one.
        #expect(shim.logins().count == 2 * logins && shim.logins().allSatisfy { $0.hasSuffix("rv=0xa4") }, "\(shim.logins())")
    }
}
