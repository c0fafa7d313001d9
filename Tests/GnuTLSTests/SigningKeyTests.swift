import Foundation
@_spi(Benchmarks) import GnuTLS
@_spi(Benchmarks) import GnuTLSAuthority
import GnuTLSTestSupport
import Synchronization
import Testing
import TestSupport

/// A remote signer stand-in: the private key lives in a file that only `openssl pkeyutl`
/// (a separate process) reads; this process sees the public key and the signatures. Counts
/// every signature it is asked for.
final class ProcessSigner: SigningKey {
    let publicKey: PublicKey
    let directory: TemporaryDirectory
    private let keyPath: String
    private let calls = Mutex<Int>(0)

    init(_ algorithm: KeyAlgorithm = .ecdsaP256) throws {
        directory = try TemporaryDirectory(prefix: "process-signer")
        let key = try KeyPair.generate(algorithm)
        keyPath = try directory.write(try key.pemEncoded(), to: "remote.key.pem")
        publicKey = key.publicKey
    }

    var count: Int { calls.withLock { $0 } }

    var signatureSchemes: [SignatureScheme] { [.ecdsaSHA256, .ecdsaSHA384, .ecdsaSHA512] }

    func sign(_ data: [UInt8], algorithm: SignatureScheme) throws -> [UInt8] {
        let n = calls.withLock { value in value += 1; return value }
        let input = try directory.write(data, to: "digest-\(n).bin")
        let output = directory.file("signature-\(n).bin")
        // For an EC key, `pkeyutl -sign` signs its input as a digest: a DER ECDSA-Sig-Value.
        let errors = directory.file("pkeyutl-\(n).err")
        let status = try Self.spawnAndWait(
            ["openssl", "pkeyutl", "-sign", "-inkey", keyPath, "-in", input, "-out", output], standardError: errors)
        guard status == 0 else {
            let message = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
            throw GnuTLSError(.signerFailed, "openssl pkeyutl failed (status \(status)): \(message)")
        }
        return Array(try Data(contentsOf: URL(fileURLWithPath: output)))
    }

    /// Runs `arguments` (looked up on PATH) and waits for it on the calling thread; its
    /// standard error goes to the file `standardError`. `sign` is synchronous (GnuTLS calls
    /// it inside its own call), so this cannot await the tests' swift-subprocess runner;
    /// openssl's input and output are files, so no pipe is read, and the waits retry EINTR.
    static func spawnAndWait(_ arguments: [String], standardError: String) throws -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, standardError, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid = pid_t()
        let spawned = posix_spawnp(&pid, arguments[0], &actions, nil, &argv, environ)
        guard spawned == 0 else {
            throw GnuTLSError(.signerFailed, "cannot start \(arguments[0]): \(String(cString: strerror(spawned)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 {
            guard errno == EINTR else { throw GnuTLSError(.signerFailed, "waitpid failed: \(String(cString: strerror(errno)))") }
        }
        // WIFEXITED / WEXITSTATUS, which Swift cannot import (macros).
        return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }
}

/// A signer in this process that counts, optionally sleeps (a slow HSM or network call),
/// and can be told to fail.
final class CountingSigner: SigningKey {
    let inner: KeyPair
    let delay: UInt32
    let failure: (any Error)?
    private let calls = Mutex<Int>(0)

    init(_ inner: KeyPair, delayMicroseconds: UInt32 = 0, failure: (any Error)? = nil) {
        self.inner = inner
        self.delay = delayMicroseconds
        self.failure = failure
    }

    var publicKey: PublicKey { inner.publicKey }
    var count: Int { calls.withLock { $0 } }

    func sign(_ data: [UInt8], algorithm: SignatureScheme) throws -> [UInt8] {
        calls.withLock { $0 += 1 }
        if let failure { throw failure }
        if delay > 0 { usleep(delay) }
        return try inner.sign(data, algorithm: algorithm)
    }
}

struct RemoteSignerFailure: Error, Equatable {
    var reason: String
}

@Suite("SigningKey: one seam for the CA and TLS")
struct SigningKeyTests {
    @Test("a key in another process signs a root, a request and a leaf that openssl verifies")
    func processSignerIssues() async throws {
        let remote = try ProcessSigner()
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Remote Root"), key: remote)
        #expect(remote.count == 1)
        let leafKey = try ProcessSigner()
        let request = try CertificateRequest.create(subject: try DistinguishedName("CN=localhost"), key: leafKey, alternativeNames: [.dnsName("localhost")])
        #expect(leafKey.count == 1)
        #expect(request.isSignatureValid)
        let leaf = try root.issue(request, profile: .tlsServer)
        #expect(remote.count == 2)
        let directory = remote.directory
        let rootPath = try directory.write(root.certificate.pemEncoded, to: "root.pem")
        let leafPath = try directory.write(leaf.pemEncoded, to: "leaf.pem")
        let verify = try await Tool.run(["openssl", "verify", "-CAfile", rootPath, leafPath], timeout: 30)
        #expect(verify.succeeded, "\(verify)")
    }

    @Test("a key in another process serves TLS 1.2 and 1.3: one signature per full handshake")
    func processSignerServesTLS() throws {
        let pki = try BenchmarkPKI()
        let remote = try ProcessSigner()
        let request = try CertificateRequest.create(subject: try DistinguishedName("CN=localhost"), key: remote, alternativeNames: [.dnsName("localhost")])
        let chain = try pki.issuing.issueWithChain(request, profile: .tlsServer)
        let signaturesForRequest = remote.count
        var handshakes = 0
        for version in [TLSVersion.tls12, .tls13] {
            var server = TLSConfiguration.makeServerConfiguration(identity: try TLSIdentity(chain: chain, key: remote))
            server.minimumVersion = version
            server.maximumVersion = version
            server.sessionResumption = false
            let serverContext = try TLSContext(configuration: server)
            let clientContext = try TLSContext(configuration: pki.clientConfiguration(version: version, tickets: false))
            for _ in 0..<2 {
                let pair = try InMemoryTLSPair(client: clientContext, server: serverContext)
                try pair.handshake()
                #expect(!pair.isResumed)
                handshakes += 1
            }
        }
        #expect(remote.count - signaturesForRequest == handshakes)
    }

    @Test("a mutual-TLS client whose key signs elsewhere is accepted")
    func externalClientKey() throws {
        let pki = try BenchmarkPKI()
        let signer = CountingSigner(try KeyPair.generate(.ecdsaP256))
        let request = try CertificateRequest.create(subject: try DistinguishedName("CN=client"), key: signer, alternativeNames: [.uri("spiffe://example.org/c")])
        let chain = try pki.issuing.issueWithChain(request, profile: .tlsClient)
        let before = signer.count
        let client = TLSConfiguration.makeClientConfiguration(trustStore: pki.trustStore, identity: try TLSIdentity(chain: chain, key: signer))
        let pair = try InMemoryTLSPair(client: try TLSContext(configuration: client),
                                       server: try TLSContext(configuration: pki.serverConfiguration(mutual: true)))
        try pair.handshake()
        #expect(signer.count == before + 1)
    }

    @Test("an error the signer throws reaches the caller unchanged")
    func signerErrorIsRethrown() throws {
        let failure = RemoteSignerFailure(reason: "KMS quota exceeded")
        let signer = CountingSigner(try KeyPair.generate(.ecdsaP256), failure: failure)
        #expect(throws: failure) {
            _ = try CertificateRequest.create(subject: try DistinguishedName("CN=x"), key: signer)
        }
        #expect(throws: failure) {
            _ = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Root"), key: signer)
        }
        // And in a TLS handshake, the server fails (GnuTLS reports the failed signature).
        let pki = try BenchmarkPKI()
        let good = CountingSigner(try KeyPair.generate(.ecdsaP256))
        let chain = try pki.issuing.issueWithChain(
            try CertificateRequest.create(subject: try DistinguishedName("CN=localhost"), key: good, alternativeNames: [.dnsName("localhost")]),
            profile: .tlsServer)
        let failing = CountingSigner(good.inner, failure: failure)
        let server = try TLSContext(configuration: .makeServerConfiguration(identity: TLSIdentity(chain: chain, key: failing)))
        let pair = try InMemoryTLSPair(client: try TLSContext(configuration: pki.clientConfiguration(tickets: false)), server: server)
        #expect(throws: InMemoryTLSFailure.self) { try pair.handshake() }
        #expect(failing.count == 1)
    }

    @Test("a signer asked for a scheme it does not offer is refused with .mechanismNotSupported")
    func unsupportedScheme() throws {
        let key = try KeyPair.generate(.ecdsaP256)
        #expect(throws: GnuTLSError.self) { _ = try key.sign([UInt8](repeating: 1, count: 32), algorithm: .rsaPSSSHA256) }
        do {
            _ = try key.sign([UInt8](repeating: 1, count: 32), algorithm: .ed25519)
            Issue.record("an ECDSA key made an Ed25519 signature")
        } catch let error as GnuTLSError {
            #expect(error.code == .mechanismNotSupported)
        }
    }

    @Test("KeyPair.sign makes signatures that verify, for every scheme of its family", arguments: [KeyAlgorithm.ecdsaP256, .rsa2048, .ed25519])
    func keyPairSigns(_ algorithm: KeyAlgorithm) async throws {
        let key = try KeyPair.generate(algorithm)
        // A certificate signed through an external wrapper of the same key verifies: the
        // bridge hands GnuTLS exactly what the key signed.
        let wrapped = CountingSigner(key)
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Wrapped \(algorithm)"), key: wrapped)
        #expect(wrapped.count == 1)
        let directory = try TemporaryDirectory(prefix: "wrapped-root")
        let rootPath = try directory.write(root.certificate.pemEncoded, to: "root.pem")
        let verify = try await Tool.run(["openssl", "verify", "-CAfile", rootPath, rootPath], timeout: 30)
        #expect(verify.succeeded, "\(verify)")
        for scheme in key.signatureSchemes {
            let data = [UInt8](repeating: 7, count: scheme.digestLength ?? 100)
            #expect(try !key.sign(data, algorithm: scheme).isEmpty)
        }
    }

    @Test("a CA whose key cannot be saved says so (no downcast to KeyPair)")
    func opaqueKeyCannotBeSaved() throws {
        let signer = CountingSigner(try KeyPair.generate(.ecdsaP256))
        let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Opaque"), key: signer)
        let directory = try TemporaryDirectory(prefix: "opaque-ca")
        do {
            try root.save(to: directory.file("ca"), passphrase: nil)
            Issue.record("an opaque key was saved")
        } catch let error as GnuTLSError {
            #expect(error.code == .invalidArgument)
            #expect(error.message.contains("has no saved form"))
        }
    }

    @Test("Authority is async: a remote authority fits, a LocalAuthority serves through it")
    func asyncAuthority() async throws {
        let local = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Async Root"))
        let authority: any Authority = local
        let key = try KeyPair.generate()
        let request = try CertificateRequest.create(subject: try DistinguishedName("CN=localhost"), key: key, alternativeNames: [.dnsName("localhost")])
        let leaf = try await authority.issue(request, profile: .tlsServer, options: IssuanceOptions(validityDays: 10))
        #expect(leaf.issuer == local.certificate.subject)
        await #expect(throws: LedgerError.self) { _ = try await authority.makeCRL(nextUpdateIn: 1) }
    }

    /// Not a timing assertion: prints the rate, for the docs. GnuTLS calls the signer
    /// synchronously inside the handshake, so a 5 ms signer caps one thread (one event loop)
    /// at about 200 full handshakes per second.
    @Test("handshakes per second with a signer that takes 5 ms (printed, next to the same key without the delay)")
    func slowSignerRate() throws {
        let pki = try BenchmarkPKI()
        let inner = try KeyPair.generate(.ecdsaP256)
        let chain = try pki.issuing.issueWithChain(
            try CertificateRequest.create(subject: try DistinguishedName("CN=localhost"), key: inner, alternativeNames: [.dnsName("localhost")]),
            profile: .tlsServer)
        let client = try TLSContext(configuration: pki.clientConfiguration(tickets: false))
        for delay in [UInt32(0), 5_000] {
            let signer = CountingSigner(inner, delayMicroseconds: delay)
            var configuration = TLSConfiguration.makeServerConfiguration(identity: try TLSIdentity(chain: chain, key: signer))
            configuration.sessionResumption = false
            let server = try TLSContext(configuration: configuration)
            let count = 40
            let start = ContinuousClock.now
            for _ in 0..<count { try InMemoryTLSPair(client: client, server: server).handshake() }
            let elapsed = ContinuousClock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            print("signer delay \(delay / 1000) ms: \(count) full TLS 1.3 handshakes (client and server in one thread) in \(seconds) s = \(Int(Double(count) / seconds)) handshakes/s")
            #expect(signer.count == count)
        }
    }
}
