import Foundation
import Testing
@testable import GnuTLS
import GnuTLSTestSupport
import TestSupport

/// The package's one file writer (CA keys from the library, every file tlsctl writes).
@Suite struct FileWriterTests {
    @Test func secretFilesAre0600AndPublicOnes0644WhateverTheUmask() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let previous = umask(0)
        defer { umask(previous) }
        try FileIO.write("secret", to: dir.file("key.pem"), secret: true)
        try FileIO.write("public", to: dir.file("cert.pem"))
        let mode = { (name: String) in (try FileManager.default.attributesOfItem(atPath: dir.file(name))[.posixPermissions] as? NSNumber)?.intValue }
        #expect(try mode("key.pem") == 0o600)
        #expect(try mode("cert.pem") == 0o644)
        // Overwriting replaces atomically and leaves no temporary file.
        try FileIO.write("secret 2", to: dir.file("key.pem"), secret: true)
        #expect(try String(contentsOfFile: dir.file("key.pem"), encoding: .utf8) == "secret 2")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == ["cert.pem", "key.pem"])
    }

    @Test func anUnwritableTargetIsATypedError() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        expectGnuTLSError(.fileAccess, mentioning: ["cannot write", "no/such"]) {
            try FileIO.write("x", to: dir.file("no/such/key.pem"), secret: true)
        }
    }
}
