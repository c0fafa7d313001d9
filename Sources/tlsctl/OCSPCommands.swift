import ArgumentParser
import Foundation
import GnuTLS
import GnuTLSAuthority
import NIOGnuTLSAuthority
import NIOCore
import NIOGnuTLS

/// `tlsctl ocsp serve|request|verify`.
struct OCSPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ocsp",
        abstract: "Run an OCSP responder for a CA, ask a responder about a certificate, or verify an OCSP response.",
        subcommands: [OCSPServe.self, OCSPRequestCommand.self, OCSPVerifyCommand.self])
}

/// `tlsctl ocsp serve --ca DIR [--ca-passphrase-file F] [--responder-cert C --responder-key K [--passphrase-file F]] [--host H] [--port P] [--validity-hours H]`
struct OCSPServe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Answer OCSP requests (RFC 6960 POST, RFC 5019 GET) for a CA from its ledger.",
        discussion: """
            Prints `listening on HOST:PORT`, then one line per request (method, serials and \
            statuses, HTTP status, latency). Answers good for certificates the CA issued, \
            revoked (time and reason) for those revoked with `tlsctl ca revoke` (at once, even \
            while running), unknown for serials it never issued, unauthorized for another \
            issuer's certificates, malformedRequest for anything else. Responses are signed by \
            the CA, or by a delegated responder (--responder-cert/--responder-key, issued with \
            `tlsctl ca issue --profile ocsp-responder`). The CA's current CRL (DER) is served at \
            /ca.crl. Runs until interrupted.
            """)

    @OptionGroup var signer: SigningCAOptions

    @Option(name: .customLong("responder-cert"), help: ArgumentHelp("A delegated responder certificate issued by the CA with the ocsp-responder profile.", valueName: "file"))
    var responderCert: String?

    @Option(name: .customLong("responder-key"), help: ArgumentHelp("The delegated responder's private key.", valueName: "file"))
    var responderKey: String?

    @Option(name: .customLong("passphrase-file"), help: ArgumentHelp("The passphrase of the responder key, on the first line of this file.", valueName: "file"))
    var passphraseFile: String?

    @Option(help: ArgumentHelp("The address to listen on.", valueName: "host"))
    var host = "127.0.0.1"

    @Option(help: ArgumentHelp("The port to listen on (0: any free port).", valueName: "port"))
    var port = 0

    @Option(name: .customLong("validity-hours"), help: ArgumentHelp("How long each response is valid (nextUpdate - thisUpdate).", valueName: "h"))
    var validityHours = 1

    func validate() throws {
        guard (responderCert == nil) == (responderKey == nil) else {
            throw ValidationError("give --responder-cert and --responder-key together")
        }
        guard (0...65_535).contains(port) else { throw ValidationError("--port must be 0…65535, not \(port)") }
        guard (1...24 * 7).contains(validityHours) else { throw ValidationError("--validity-hours must be 1…168, not \(validityHours)") }
    }

    func run() async throws {
        let authority = try signer.load()
        let validity = TimeInterval(validityHours) * 3600
        let responder: OCSPResponder
        if let responderCert, let responderKey {
            let certificate = try context("cannot load responder certificate \(responderCert)") { try Certificate.load(contentsOfFile: responderCert)[0] }
            let key = try Inputs.key(at: responderKey, passphraseFile: passphraseFile, passphraseOption: "--passphrase-file")
            guard let ledger = authority.ledger else { throw CLIError("CA \(signer.ca) has no ledger") }
            responder = try context("cannot use \(responderCert) as OCSP responder") {
                try OCSPResponder(issuer: authority.certificate, ledger: ledger, signer: certificate, key: key, validity: validity)
            }
        } else {
            responder = try OCSPResponder(authority: authority, validity: validity)
        }
        let crls = CRLPublisher(authority: authority)
        let server = try await OCSPServer.start(
            responder: responder, crl: { try crls.current() }, host: host, port: port,
            log: { record in TLSOutput.line(record.description) })
        TLSOutput.line("listening on \(host):\(server.port)")
        while true {
            try await Task.sleep(for: .seconds(3600))
        }
    }
}

/// Keeps one signed CRL and issues a new one when the ledger's revocations change or the
/// current one has passed half its lifetime.
final class CRLPublisher: @unchecked Sendable {
    private let authority: LocalAuthority
    private let lock = NSLock()
    private var cached: (crl: CertificateRevocationList, revocations: Int)?

    init(authority: LocalAuthority) { self.authority = authority }

    func current() throws -> [UInt8] {
        try lock.withLock {
            let count = try authority.ledger?.revocations().count ?? 0
            if let cached, cached.revocations == count,
               let next = cached.crl.nextUpdate, Date() < cached.crl.thisUpdate.addingTimeInterval(next.timeIntervalSince(cached.crl.thisUpdate) / 2) {
                return cached.crl.derEncoded
            }
            let crl = try authority.makeCRL(nextUpdateIn: 1)
            cached = (crl, count)
            return crl.derEncoded
        }
    }
}

/// Options naming the certificate asked about and its issuer.
struct OCSPSubjectOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The certificate to check (PEM or DER; the first of a bundle).", valueName: "file"))
    var cert: String

    @Option(help: ArgumentHelp("The certificate of its issuer (PEM or DER; the first of a bundle).", valueName: "file"))
    var issuer: String

    func load() throws -> (Certificate, Certificate) {
        let certificate = try context("cannot load certificate \(cert)") { try Certificate.load(contentsOfFile: cert)[0] }
        let issuerCertificate = try context("cannot load issuer certificate \(issuer)") { try Certificate.load(contentsOfFile: issuer)[0] }
        return (certificate, issuerCertificate)
    }
}

/// Prints a verified answer and turns it into the exit status: 0 good, 1 otherwise.
enum OCSPReport {
    static func print(_ single: OCSPResponse.SingleResponse, for certificate: Certificate) throws {
        Swift.print("\(certificate.subject) (serial \(Format.colonHex(certificate.serialNumber.bytes))): \(statusWord(single.status))")
        if case .revoked(let date, let reason) = single.status {
            Swift.print("  Revoked:     \(Format.date(date))")
            Swift.print("  Reason:      \(reason ?? .unspecified)")
        }
        Swift.print("  This update: \(Format.date(single.thisUpdate))")
        if let nextUpdate = single.nextUpdate { Swift.print("  Next update: \(Format.date(nextUpdate))") }
        switch single.status {
        case .good: return
        case .revoked(_, let reason): Console.error("tlsctl: refused (revoked): the certificate is revoked (\(reason ?? .unspecified))")
        case .unknown: Console.error("tlsctl: refused (ocspUnknown): the responder does not know the certificate")
        }
        throw ExitCode.failure
    }

    static func statusWord(_ status: OCSPResponse.CertificateStatus) -> String {
        switch status {
        case .good: return "good"
        case .revoked: return "revoked"
        case .unknown: return "unknown"
        }
    }

    static func refuse(_ error: VerificationError) -> ExitCode {
        for problem in error.problems {
            Console.error("tlsctl: refused (\(problem.reason)): \(problem.message)")
        }
        return ExitCode.failure
    }
}

/// `tlsctl ocsp request --cert C --issuer I [--url URL] [--nonce]`
struct OCSPRequestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "request",
        abstract: "Ask an OCSP responder about a certificate and print the verified status.",
        discussion: """
            POSTs an OCSP request to --url (default: the certificate's OCSP URL), verifies the \
            answer (signed by the issuer or a responder it authorised, about this certificate, \
            current, nonce echoed with --nonce) and prints the status. Exit status 0 when good; \
            1 when revoked, unknown or the answer is invalid (the reason on stderr).
            """)

    @OptionGroup var subject: OCSPSubjectOptions

    @Option(help: ArgumentHelp("The responder URL (http://…).", valueName: "url"))
    var url: String?

    @Flag(help: "Send a random nonce and require the responder to echo it.")
    var nonce = false

    @Flag(help: "Identify the certificate with SHA-256 hashes instead of SHA-1.")
    var sha256 = false

    @Option(name: .customLong("timeout"), help: ArgumentHelp("Seconds to wait for the answer.", valueName: "s"))
    var timeout = 10

    @Option(name: .customLong("response-out"), help: ArgumentHelp("Also write the response (DER) to this file.", valueName: "file"))
    var responseOut: String?

    func run() async throws {
        let (certificate, issuer) = try subject.load()
        guard let url = url ?? certificate.ocspURLs.first else {
            throw CLIError("\(subject.cert) names no OCSP responder: give --url")
        }
        let nonceBytes = nonce ? try OCSPRequest.randomNonce() : nil
        let request = try OCSPRequest(certificate: certificate, issuer: issuer, hashAlgorithm: sha256 ? .sha256 : .sha1, nonce: nonceBytes)
        let response: OCSPResponse
        do {
            response = try await OCSPClient.fetch(request, from: url, timeout: .seconds(Int64(max(1, timeout))))
        } catch let error as OCSPFetchError {
            throw CLIError("cannot ask \(url): \(error.message)")
        }
        if let responseOut { try Data(response.derEncoded).write(to: URL(fileURLWithPath: responseOut)) }
        do {
            let single = try response.validate(certificate: certificate, issuer: issuer, nonce: nonceBytes)
            try OCSPReport.print(single, for: certificate)
        } catch let error as VerificationError {
            throw OCSPReport.refuse(error)
        }
    }
}

/// `tlsctl ocsp verify --response R --cert C --issuer I [--time T]`
struct OCSPVerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Verify an OCSP response (DER or PEM) for a certificate and print its status.",
        discussion: "Exit status 0 when the response is valid and says good; 1 otherwise (the reason on stderr).")

    @OptionGroup var subject: OCSPSubjectOptions

    @Option(help: ArgumentHelp("The OCSP response (DER, or PEM 'OCSP RESPONSE').", valueName: "file"))
    var response: String

    @Option(help: ArgumentHelp("The moment to verify at: ISO 8601 (2026-01-31T12:00:00Z) or seconds since 1970; default now.", valueName: "time"))
    var time: String?

    func run() async throws {
        let (certificate, issuer) = try subject.load()
        var moment = Date()
        if let time {
            if let seconds = TimeInterval(time) {
                moment = Date(timeIntervalSince1970: seconds)
            } else if let date = ISO8601DateFormatter().date(from: time) {
                moment = date
            } else {
                throw ValidationError("--time \(time) is neither ISO 8601 nor seconds since 1970")
            }
        }
        let parsed: OCSPResponse
        do {
            parsed = try OCSPResponse.load(contentsOfFile: response)
        } catch let error as GnuTLSError where error.code == .malformedDER || error.code == .malformedPEM {
            Console.error("tlsctl: refused (\(VerificationError.Reason.ocspMalformed)): \(response) is not an OCSP response: \(error.message)")
            throw ExitCode.failure
        }
        do {
            let single = try parsed.validate(certificate: certificate, issuer: issuer, at: moment)
            try OCSPReport.print(single, for: certificate)
        } catch let error as VerificationError {
            throw OCSPReport.refuse(error)
        }
    }
}

/// `tlsctl serve --ocsp-staple FILE|auto [--ocsp-issuer FILE]`.
enum OCSPStapleOption {
    /// Sets the staple of the first identity. With `auto`, returns the refresher that keeps
    /// it fresh (refresh at half-life, stapling stops at expiry; each outcome logged on
    /// standard error): keep it for as long as the server runs.
    @discardableResult
    static func apply(_ value: String?, issuerFile: String?, to configuration: inout TLSConfiguration) async throws -> OCSPStapleRefresher? {
        guard let value, !configuration.identities.isEmpty else { return nil }
        var identity = configuration.identities[0]
        if let issuerFile {
            let issuer = try context("cannot load issuer certificate \(issuerFile) (--ocsp-issuer)") { try Certificate.load(contentsOfFile: issuerFile)[0] }
            if !identity.chain.contains(issuer) { identity.intermediates.append(issuer) }
        }
        let leaf = identity.leaf
        let response: OCSPResponse
        if value == "auto" {
            guard let url = leaf.ocspURLs.first else {
                throw CLIError("--ocsp-staple auto: certificate '\(leaf.subject)' names no OCSP responder URL")
            }
            guard let issuer = identity.chain.dropFirst().first(where: { $0.subject == leaf.issuer }) else {
                throw CLIError("--ocsp-staple auto: the issuer of '\(leaf.subject)' is not in --cert: give it with --ocsp-issuer")
            }
            do {
                response = try await OCSPClient.fetch(try OCSPRequest(certificate: leaf, issuer: issuer), from: url)
            } catch let error as OCSPFetchError {
                throw CLIError("--ocsp-staple auto: cannot fetch the OCSP response from \(url): \(error.message)")
            }
        } else {
            response = try context("cannot load OCSP response \(value) (--ocsp-staple)") { try OCSPResponse.load(contentsOfFile: value) }
            identity.ocspResponse = response
            configuration.identities[0] = identity
            return nil
        }
        let source = try context("--ocsp-staple auto: refusing the responder's answer") {
            try OCSPStapleSource(identity: identity, trustStore: configuration.trustStore, initial: response)
        }
        identity.ocspStapleSource = source
        configuration.identities[0] = identity
        let refresher = try OCSPStapleRefresher(source: source)
        Task {
            for await event in refresher.events { Console.error("tlsctl: \(event)") }
        }
        return refresher
    }
}

/// Read from a command-line argument by the mode's name.
extension RevocationCheckingMode: ExpressibleByArgument {
    public init?(argument: String) { self.init(name: argument) }
    public static var allValueStrings: [String] { ["off", "soft", "hard"] }
    public var defaultValueDescription: String { name }
}
