import Foundation
import GnuTLS

/// What an authority issued and revoked, and the CRL numbers it handed out.
///
/// Every requirement is one atomic operation: a store either does all of it or nothing,
/// and what it has returned from is durable. Callers (``LocalAuthority``, `tlsctl`) only see
/// this protocol, so a server-grade store (PostgreSQL, say) can replace the default
/// ``SQLiteLedger`` without changing them. The requirements are synchronous, like
/// ``Authority/issue(_:profile:options:)``; a networked store blocks the calling thread
/// (never an event loop) until its database has answered.
public protocol CertificateLedger: Sendable {
    /// Claims `serial` for a certificate about to be signed. Returns `false` when the serial
    /// was claimed before (by an issued certificate, or by a signing that never finished), so
    /// the caller draws another: a serial is never used twice, even after a crash.
    func reserve(serial: SerialNumber) throws -> Bool

    /// Records an issued certificate.
    /// - Throws: ``LedgerError`` `.duplicateSerial` when a certificate with its serial is
    ///   already recorded.
    func record(_ certificate: Certificate) throws

    /// The certificate issued with `serial`, and its revocation if it was revoked.
    func certificate(serial: SerialNumber) throws -> LedgerEntry?

    /// Every issued certificate, oldest first. Loads every certificate: for a large CA,
    /// walk ``issuedCertificates(after:limit:)`` page by page instead.
    func issuedCertificates() throws -> [LedgerEntry]

    /// At most `limit` issued certificates, oldest first, starting after `cursor` (from the
    /// first when `nil`); the page's ``LedgerPage/next`` continues where it ended.
    func issuedCertificates(after cursor: LedgerPage.Cursor?, limit: Int) throws -> LedgerPage

    /// Revokes the certificate with `serial`.
    /// - Throws: ``LedgerError`` `.unknownSerial` when no certificate with that serial was
    ///   recorded, `.alreadyRevoked` when it was revoked before.
    @discardableResult
    func revoke(serial: SerialNumber, reason: RevocationReason?, date: Date) throws -> Revocation

    /// Every revocation, in the order they were made.
    func revocations() throws -> [Revocation]

    /// Hands out the next CRL number: 1, 2, 3, … — strictly increasing across every call
    /// and every reopening of the store.
    func nextCRLNumber() throws -> Int

    /// Hands out the next CRL number together with every revocation recorded at that
    /// moment, in one atomic step (one transaction that excludes every writer): a CRL with a
    /// higher number never lists fewer revocations than one with a lower number.
    ///
    /// Taking ``revocations()`` and then ``nextCRLNumber()`` separately is a race: a
    /// revocation committed in between is missing from a CRL whose number says it is newer.
    func nextCRLSnapshot() throws -> CRLSnapshot
}

/// One page of a ledger's issued certificates.
public struct LedgerPage: Hashable, Sendable {
    /// Where a page ends, for the next request; opaque to callers.
    public struct Cursor: Hashable, Sendable {
        package let position: Int
        package init(position: Int) { self.position = position }
    }

    /// The certificates of this page, oldest first.
    public var entries: [LedgerEntry]
    /// Where the next page starts; `nil` after the last one.
    public var next: Cursor?

    /// A page.
    public init(entries: [LedgerEntry], next: Cursor?) {
        self.entries = entries
        self.next = next
    }
}

extension CertificateLedger {
    /// A page cut from ``issuedCertificates()``, for stores that cannot page themselves
    /// (``SQLiteLedger`` pages in SQL).
    public func issuedCertificates(after cursor: LedgerPage.Cursor?, limit: Int) throws -> LedgerPage {
        let all = try issuedCertificates()
        let start = min(max(cursor?.position ?? 0, 0), all.count)
        let end = start + min(max(limit, 0), all.count - start)
        return LedgerPage(entries: Array(all[start..<end]), next: end < all.count && limit > 0 ? LedgerPage.Cursor(position: end) : nil)
    }
}

/// What one CRL is made of: its number and the revocations it lists, read together.
public struct CRLSnapshot: Hashable, Sendable {
    /// The CRL number handed out for it.
    public var number: Int
    /// Every revocation recorded when the number was handed out, in the order they were made.
    public var revocations: [Revocation]

    /// A snapshot.
    public init(number: Int, revocations: [Revocation]) {
        self.number = number
        self.revocations = revocations
    }
}

/// One revoked certificate in a ledger.
public struct Revocation: Hashable, Sendable, CustomStringConvertible {
    /// The revoked certificate's serial number.
    public var serialNumber: SerialNumber
    /// The revocation date (second precision, as CRLs carry it).
    public var date: Date
    /// The reason; `nil` for unspecified.
    public var reason: RevocationReason?

    /// A revocation.
    public init(serialNumber: SerialNumber, date: Date, reason: RevocationReason?) {
        self.serialNumber = serialNumber
        self.date = date
        self.reason = reason
    }

    /// The CRL entry for this revocation.
    public var crlEntry: CertificateRevocationList.Entry {
        CertificateRevocationList.Entry(serialNumber: serialNumber, revocationDate: date, reason: reason)
    }

    /// A readable form, for logs and messages.
    public var description: String { "\(serialNumber) revoked \(date) (\(reason ?? .unspecified))" }
}

/// One issued certificate in a ledger.
public struct LedgerEntry: Hashable, Sendable {
    /// The certificate as issued.
    public var certificate: Certificate
    /// When the ledger recorded it.
    public var recordedAt: Date
    /// Its revocation, if it was revoked.
    public var revocation: Revocation?

    /// A ledger entry.
    public init(certificate: Certificate, recordedAt: Date, revocation: Revocation?) {
        self.certificate = certificate
        self.recordedAt = recordedAt
        self.revocation = revocation
    }

    /// The certificate's serial number.
    public var serialNumber: SerialNumber { certificate.serialNumber }
    /// Whether it was revoked.
    public var isRevoked: Bool { revocation != nil }
}

/// Why a ledger operation failed.
public struct LedgerError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of failure this is.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        /// The code's name, stable across releases.
        public var rawValue: String
        /// A code by name; prefer the static members.
        public init(rawValue: String) { self.rawValue = rawValue }
        /// A readable form, for logs and messages.
        public var description: String { rawValue }

        /// No certificate with the serial was issued by this authority.
        public static let unknownSerial = Code(rawValue: "unknownSerial")
        /// The certificate was revoked before.
        public static let alreadyRevoked = Code(rawValue: "alreadyRevoked")
        /// A certificate with the serial is already recorded.
        public static let duplicateSerial = Code(rawValue: "duplicateSerial")
        /// The authority has no ledger (it was neither loaded from nor saved to a directory).
        public static let noLedger = Code(rawValue: "noLedger")
        /// The store failed: the database cannot be opened, read or written.
        public static let storage = Code(rawValue: "storage")
        /// The CA directory has no ledger file: it was deleted or never created. Only creating
        /// a CA creates a ledger; loading one never does, or a CA would forget what it issued
        /// and revoked.
        public static let ledgerMissing = Code(rawValue: "ledgerMissing")
        /// The ledger file exists but holds no ledger (an empty file, or another database).
        public static let notALedger = Code(rawValue: "notALedger")
        /// The ledger belongs to another CA: its recorded CA key identifier differs.
        public static let foreignLedger = Code(rawValue: "foreignLedger")
        /// The ledger fails SQLite's integrity check (a damaged file): it is not written to.
        public static let corrupted = Code(rawValue: "corrupted")
        /// A date cannot be recorded (before 1970, after 9999, or not finite).
        public static let invalidDate = Code(rawValue: "invalidDate")
        /// The ledger was opened read-only and a write was attempted.
        public static let readOnly = Code(rawValue: "readOnly")
    }

    /// What kind of failure this is.
    public var code: Code
    /// What was attempted, on what, and why it failed.
    public var message: String
    /// The serial number concerned, when there is one.
    public var serialNumber: SerialNumber?

    /// Creates an error.
    public init(_ code: Code, _ message: String, serialNumber: SerialNumber? = nil) {
        self.code = code
        self.message = message
        self.serialNumber = serialNumber
    }

    /// A readable form, for logs and messages.
    public var description: String { message }
}

/// Points of issuing and revoking where a crash would hurt most, for tests of crash
/// consistency.
///
/// - `afterReserve`: issuing: the serial is claimed in the ledger, nothing is signed yet.
/// - `afterSign`: issuing: the certificate is signed but not yet recorded.
/// - `beforeCommit`: inside the ledger transaction that records a certificate or a
///   revocation, after its writes and before COMMIT.
///
/// A `package`-level test seam, not part of the shipping behaviour: nothing reads the
/// environment, and with no handler installed (always, outside this package's tests)
/// reaching a point does nothing. A test installs a handler that throws, which leaves the
/// ledger exactly as a crash at that point would: a throw inside the transaction rolls it
/// back, as a killed process's uncommitted transaction is.
package enum CrashPoint: String, Sendable {
    case afterReserve = "after-reserve"
    case afterSign = "after-sign"
    case beforeCommit = "before-commit"

    /// What runs at a crash point, for the current task only (so tests running in parallel
    /// do not see each other's handlers); `nil` outside tests.
    @TaskLocal package static var handler: (@Sendable (CrashPoint) throws -> Void)?

    /// Runs the current task's handler, if any.
    func reached() throws {
        try Self.handler?(self)
    }
}
