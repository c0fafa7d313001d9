import ArgumentParser
import Foundation
import GnuTLS
import GnuTLSAuthority

// `tlsctl ca revoke` and `tlsctl ca crl`: revocation through the CA directory's ledger
// (`ledger.sqlite`, which `LocalAuthority.load(from:passphrase:)` opens).

/// Read from a command-line argument (`--reason`) by the reason's name.
extension RevocationReason: ExpressibleByArgument {
    public init?(argument: String) { self.init(name: argument) }
    public static var allValueStrings: [String] { allCases.map(\.name) }
    public static var allValueDescriptions: [String: String] { [:] }
    public var defaultValueDescription: String { name }
}

/// `tlsctl ca revoke`: records a revocation in the CA's ledger.
struct CARevoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke",
        abstract: "Revoke a certificate issued by the CA.",
        discussion: """
            Records the revocation in the CA directory's ledger (ledger.sqlite); the next \
            `tlsctl ca crl` lists it. Give the certificate by serial number (hex, colons allowed) \
            or as a file. Revoking a certificate twice, or one the CA did not issue, is an error \
            (exit status 1, the reason on stderr). Without --reason the CRL entry carries no \
            reason code (unspecified).
            """)

    @OptionGroup var signer: SigningCAOptions

    @Option(help: ArgumentHelp("The serial number of the certificate to revoke, in hex (colons allowed).", valueName: "hex"))
    var serial: String?

    @Option(help: ArgumentHelp("The certificate to revoke (PEM or DER; the first of a bundle).", valueName: "file"))
    var cert: String?

    @Option(help: ArgumentHelp("The RFC 5280 reason code.", valueName: "reason"))
    var reason: RevocationReason?

    func validate() throws {
        guard (serial == nil) != (cert == nil) else {
            throw ValidationError("give exactly one of --serial HEX or --cert FILE")
        }
    }

    func run() async throws {
        let authority = try signer.load()
        let revocation: Revocation
        if let serial {
            var digits = serial.trimmingCharacters(in: .whitespaces)
            if digits.lowercased().hasPrefix("0x") { digits.removeFirst(2) }
            guard !digits.isEmpty, let number = SerialNumber(hex: digits) else {
                throw CLIError("--serial \(serial) is not a hexadecimal serial number (for example 4f:1a:09 or 4f1a09)")
            }
            revocation = try authority.revoke(serial: number, reason: reason)
        } else if let cert {
            let certificates = try context("cannot load certificate \(cert)") { try Certificate.load(contentsOfFile: cert) }
            revocation = try authority.revoke(certificates[0], reason: reason)
        } else {
            throw ValidationError("give exactly one of --serial HEX or --cert FILE")
        }
        print("Revoked serial \(Format.colonHex(revocation.serialNumber.bytes)) on \(Format.date(revocation.date)) (reason: \(revocation.reason ?? .unspecified)) in CA \(authority.certificate.subject)")
    }
}

/// `tlsctl ca crl`: issues a CRL from the ledger.
struct CACRL: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crl",
        abstract: "Issue a certificate revocation list of every revocation in the CA's ledger.",
        discussion: """
            Writes a version 2 CRL (PEM) signed by the CA: this update now, next update in \
            --days days, the next CRL number from the ledger (strictly increasing), the \
            authority key identifier, and one entry per revoked certificate with its revocation \
            date and reason code.
            """)

    @OptionGroup var signer: SigningCAOptions

    @Option(help: ArgumentHelp("Where to write the CRL (PEM).", valueName: "file"))
    var out: String

    @Option(help: ArgumentHelp("Days until the next update.", valueName: "n"))
    var days: Int = 7

    func validate() throws {
        guard days > 0 else { throw ValidationError("--days must be at least 1, not \(days)") }
    }

    func run() async throws {
        let authority = try signer.load()
        let crl = try authority.makeCRL(nextUpdateIn: days)
        try Outputs.write(crl.pemEncoded, to: out)
        print("Wrote CRL number \(crl.number.map(String.init) ?? Format.colonHex(crl.crlNumber ?? [])) of \(authority.certificate.subject) to \(out)")
        print("  Entries:     \(crl.entries.count)")
        print("  This update: \(Format.date(crl.thisUpdate))")
        if let nextUpdate = crl.nextUpdate { print("  Next update: \(Format.date(nextUpdate))") }
    }
}
