import Foundation
import GnuTLS

/// The ledger a ``LocalAuthority`` records into; set once more when the authority is saved
/// to a directory. A lock guards the reference (the ledger itself is `Sendable`).
final class LedgerBox: @unchecked Sendable {
    private let lock = NSLock()
    private var ledger: (any CertificateLedger)?

    init(_ ledger: (any CertificateLedger)?) { self.ledger = ledger }

    var value: (any CertificateLedger)? {
        get { lock.withLock { ledger } }
        set { lock.withLock { ledger = newValue } }
    }
}

extension LocalAuthority {
    private func requireLedger(_ what: String) throws -> any CertificateLedger {
        guard let ledger else {
            throw LedgerError(.noLedger, "cannot \(what): CA '\(certificate.subject)' has no ledger (load it from or save it to a CA directory, or give one to init)")
        }
        return ledger
    }

    /// Revokes the certificate this authority issued with `serial`.
    ///
    /// - Parameters:
    ///   - serial: the serial number of the certificate to revoke.
    ///   - reason: the reason code for CRLs; `nil` (or `.unspecified`) writes none.
    ///   - date: the revocation date (second precision); now by default.
    /// - Throws: ``LedgerError`` `.unknownSerial`, `.alreadyRevoked`, `.noLedger`, `.storage`.
    @discardableResult
    public func revoke(serial: SerialNumber, reason: RevocationReason? = nil, date: Date = Date()) throws -> Revocation {
        try requireLedger("revoke \(serial)").revoke(serial: serial, reason: reason, date: date)
    }

    /// Revokes `certificate`, which this authority must have issued (the ledger holds exactly it).
    ///
    /// - Throws: ``LedgerError`` `.unknownSerial` when the ledger has no such certificate,
    ///   `.alreadyRevoked`, `.noLedger`, `.storage`.
    @discardableResult
    public func revoke(_ certificate: Certificate, reason: RevocationReason? = nil, date: Date = Date()) throws -> Revocation {
        let ledger = try requireLedger("revoke \(certificate.serialNumber)")
        guard let recorded = try ledger.certificate(serial: certificate.serialNumber),
              recorded.certificate == certificate else {
            throw LedgerError(.unknownSerial, "certificate '\(certificate.subject)' (serial \(certificate.serialNumber)) was not issued by CA '\(self.certificate.subject)': its ledger does not hold it", serialNumber: certificate.serialNumber)
        }
        return try ledger.revoke(serial: certificate.serialNumber, reason: reason, date: date)
    }

    /// Issues a CRL of every revocation in the ledger, numbered with the ledger's next CRL
    /// number, valid from now until `days` days from now.
    ///
    /// - Throws: ``LedgerError`` `.noLedger`/`.storage`; ``IssuanceError``
    ///   `.authorityMisconfigured` when the CA certificate does not allow CRL signing;
    ///   `GnuTLSError` for signing failures.
    public func makeCRL(nextUpdateIn days: Int = 7) throws -> CertificateRevocationList {
        guard days > 0 else {
            throw GnuTLSError(.invalidArgument, "a CRL must be valid for at least one day, not \(days)")
        }
        if let usage = certificate.keyUsage, !usage.contains(.cRLSign) {
            throw IssuanceError(.authorityMisconfigured, "CA certificate '\(certificate.subject)' does not allow CRL signing (key usage lacks cRLSign)")
        }
        // Every check comes before the CRL number is handed out: a refused CRL burns none.
        let maximumDays = Int((Policy.latestDate.timeIntervalSince1970 - Date().timeIntervalSince1970) / 86_400)
        guard days <= maximumDays else {
            throw GnuTLSError(.invalidArgument, "a CRL valid for \(days) days would have its next update after 9999-12-31 23:59:59 UTC: at most \(maximumDays) days are possible")
        }
        let ledger = try requireLedger("issue a CRL")
        // The revocations and the number are read in one transaction (see `nextCRLSnapshot`).
        let snapshot = try ledger.nextCRLSnapshot()
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let nextUpdate = now.addingTimeInterval(TimeInterval(days) * 86_400)
        return try CertificateRevocationList.create(
            issuer: certificate, key: key, number: SerialNumber(bytes: Self.bigEndian(snapshot.number)), thisUpdate: now,
            nextUpdate: nextUpdate, entries: snapshot.revocations.map(\.crlEntry))
    }

    private static func bigEndian(_ value: Int) -> [UInt8] {
        withUnsafeBytes(of: UInt64(value).bigEndian, Array.init)
    }
}
