import Foundation
import GnuTLS
import GRDB

/// The default ``CertificateLedger``: an SQLite database (through GRDB) in the CA
/// directory, `ledger.sqlite`.
///
/// The database runs in WAL mode with `synchronous = FULL`; every write is one
/// `BEGIN IMMEDIATE … COMMIT` transaction, so a process killed mid-write leaves the last
/// committed state and nothing half-written, and several processes (two `tlsctl` runs) take
/// turns instead of failing.
///
/// Serials live in two tables: `serials` holds every serial ever claimed (before signing),
/// `certificates` the certificates recorded after signing. A serial claimed by a signing
/// that crashed stays claimed, so it is never issued again.
public final class SQLiteLedger: CertificateLedger {
    private let database: DatabaseQueue
    /// The database file, or `nil` for an in-memory ledger.
    public let path: String?
    /// Whether the ledger was opened read-only: every write throws `.readOnly`.
    public let isReadOnly: Bool

    private init(database: DatabaseQueue, path: String?, readOnly: Bool) {
        self.database = database
        self.path = path
        self.isReadOnly = readOnly
    }

    /// Creates the ledger of a new CA at `path`, bound to `authority` (its key identifier is
    /// stored in the ledger and checked on every later open).
    ///
    /// Only creating a CA creates a ledger: ``LocalAuthority/save(to:passphrase:)`` calls this
    /// when the directory has none; loading never does.
    /// - Throws: ``LedgerError`` `.storage` when the file exists already or cannot be created.
    public static func create(path: String, authority: Certificate) throws -> SQLiteLedger {
        guard !FileManager.default.fileExists(atPath: path) else {
            throw LedgerError(.storage, "cannot create the CA ledger \(path): the file exists already (a CA's ledger is never replaced)")
        }
        var configuration = Self.configuration(readOnly: false)
        configuration.journalMode = .wal
        let database: DatabaseQueue
        do {
            database = try DatabaseQueue(path: path, configuration: configuration)
        } catch {
            throw LedgerError(.storage, "cannot create the CA ledger \(path): \(Self.describe(error))")
        }
        let ledger = SQLiteLedger(database: database, path: path, readOnly: false)
        try ledger.migrate()
        try ledger.transaction("bind the ledger to its CA") { db in
            try db.execute(sql: "INSERT INTO authority (id, key_identifier, subject) VALUES (1, ?, ?)",
                           arguments: [Data(authority.publicKey.keyIdentifier), authority.subject.description])
        }
        return ledger
    }

    /// Opens the existing ledger at `path`; never creates one.
    ///
    /// Before anything is written, the file must exist, hold a ledger, pass SQLite's
    /// integrity check and, when `authority` is given, belong to that CA (a ledger made
    /// before ledgers were bound is bound on this open when every certificate it holds
    /// names the CA's key as its issuer's). Read-only opening writes nothing and leaves no
    /// `-wal`/`-shm` files behind.
    ///
    /// - Throws: ``LedgerError`` `.ledgerMissing`, `.notALedger`, `.corrupted`,
    ///   `.foreignLedger`, `.storage`.
    public init(path: String, authority: Certificate? = nil, readOnly: Bool = false) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw LedgerError(.ledgerMissing, "the CA ledger \(path) is missing: the CA cannot know what it issued and revoked without it; restore it from a backup (a new ledger is made only when a CA is created)")
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
        guard size > 0 else {
            throw LedgerError(.notALedger, "the CA ledger \(path) is an empty file: restore the ledger from a backup")
        }
        let database: DatabaseQueue
        do {
            database = try DatabaseQueue(path: readOnly ? Self.readOnlyURI(path) : path, configuration: Self.configuration(readOnly: readOnly))
        } catch {
            throw Self.openError(error, path: path)
        }
        self.database = database
        self.path = path
        self.isReadOnly = readOnly
        try checkOnOpen(authority: authority)
        if !readOnly {
            try migrate()
            if let authority { try bind(to: authority) }
        }
    }

    /// A ledger in memory, gone when the object is: for tests and throw-away authorities.
    public init() throws {
        do {
            database = try DatabaseQueue()
        } catch {
            throw LedgerError(.storage, "cannot create an in-memory ledger: \(Self.describe(error))")
        }
        path = nil
        isReadOnly = false
        try migrate()
    }

    private static func configuration(readOnly: Bool) -> Configuration {
        var configuration = Configuration()
        configuration.readonly = readOnly
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            if !db.configuration.readonly { try db.execute(sql: "PRAGMA synchronous = FULL") }
        }
        return configuration
    }

    /// A read-only connection to a WAL database creates `-wal` and `-shm` files that it
    /// cannot remove when it closes. When no writer has the database open (no `-wal` file),
    /// open it immutable: SQLite then creates no file at all. Otherwise the files exist
    /// already and a plain read-only open adds none.
    private static func readOnlyURI(_ path: String) -> String {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "?#%")
        let escaped = absolute.addingPercentEncoding(withAllowedCharacters: allowed) ?? absolute
        let walExists = FileManager.default.fileExists(atPath: path + "-wal")
        return "file:\(escaped)?mode=ro" + (walExists ? "" : "&immutable=1")
    }

    private static func openError(_ error: any Error, path: String) -> LedgerError {
        if let error = error as? LedgerError { return error }
        if let error = error as? DatabaseError {
            switch error.resultCode.primaryResultCode {
            case .SQLITE_NOTADB:
                return LedgerError(.notALedger, "the CA ledger \(path) is not an SQLite database: restore the ledger from a backup")
            case .SQLITE_CORRUPT:
                return LedgerError(.corrupted, "the CA ledger \(path) is damaged (\(describe(error))): restore it from a backup; nothing was written to it")
            default:
                break
            }
        }
        return LedgerError(.storage, "cannot open the CA ledger \(path): \(describe(error))")
    }

    /// Everything checked before the first write: the tables are there, SQLite finds the
    /// file sound, and the ledger belongs to `authority`.
    private func checkOnOpen(authority: Certificate?) throws {
        let where_ = path ?? "in memory"
        do {
            try database.read { db in
                let tables = Set(try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'"))
                guard tables.isSuperset(of: ["serials", "certificates", "revocations", "counters"]) else {
                    throw LedgerError(.notALedger, "\(where_) holds no CA ledger (its tables are missing): restore the ledger from a backup")
                }
                let problems = try Self.integrityProblems(db)
                guard problems.isEmpty else {
                    throw LedgerError(.corrupted, "the CA ledger \(where_) fails SQLite's integrity check (\(problems.prefix(3).joined(separator: "; "))): restore it from a backup; nothing was written to it")
                }
                guard let authority else { return }
                if tables.contains("authority") {
                    let bound = try Data.fetchOne(db, sql: "SELECT key_identifier FROM authority WHERE id = 1")
                    guard let bound else {
                        throw LedgerError(.notALedger, "the CA ledger \(where_) does not say which CA it belongs to: restore it from a backup")
                    }
                    guard [UInt8](bound) == authority.publicKey.keyIdentifier else {
                        throw LedgerError(.foreignLedger, "the CA ledger \(where_) belongs to another CA (key identifier \([UInt8](bound).colonHex), not \(authority.publicKey.keyIdentifier.colonHex) of '\(authority.subject)'): put the CA's own ledger back")
                    }
                } else {
                    // A ledger from before binding: it is this CA's when everything in it was
                    // issued by this CA's key.
                    let issuerKey = authority.subjectKeyIdentifier ?? authority.publicKey.keyIdentifier
                    for der in try Data.fetchAll(db, sql: "SELECT der FROM certificates") {
                        let certificate = try Certificate(derEncoded: [UInt8](der))
                        guard certificate.authorityKeyIdentifier == issuerKey else {
                            throw LedgerError(.foreignLedger, "the CA ledger \(where_) holds certificate \(certificate.serialNumber) issued by another CA: put the CA's own ledger back", serialNumber: certificate.serialNumber)
                        }
                    }
                }
            }
        } catch let error as LedgerError {
            throw error
        } catch {
            throw Self.openError(error, path: where_)
        }
    }

    /// Records which CA the ledger belongs to, for a ledger made before ledgers were bound.
    private func bind(to authority: Certificate) throws {
        try transaction("bind the ledger to its CA") { db in
            try db.execute(sql: "INSERT OR IGNORE INTO authority (id, key_identifier, subject) VALUES (1, ?, ?)",
                           arguments: [Data(authority.publicKey.keyIdentifier), authority.subject.description])
        }
    }

    private func migrate() throws {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE serials (
                    serial TEXT PRIMARY KEY NOT NULL,      -- lower-case hex, no leading zero octets
                    reserved_at INTEGER NOT NULL
                );
                CREATE TABLE certificates (
                    serial TEXT PRIMARY KEY NOT NULL REFERENCES serials(serial),
                    der BLOB NOT NULL,
                    subject TEXT NOT NULL,
                    not_after INTEGER NOT NULL,
                    recorded_at INTEGER NOT NULL,
                    seq INTEGER NOT NULL UNIQUE
                );
                CREATE TABLE revocations (
                    serial TEXT PRIMARY KEY NOT NULL REFERENCES certificates(serial),
                    revoked_at INTEGER NOT NULL,
                    reason INTEGER,                         -- NULL: unspecified
                    seq INTEGER NOT NULL UNIQUE
                );
                CREATE TABLE counters (
                    name TEXT PRIMARY KEY NOT NULL,
                    value INTEGER NOT NULL
                );
                INSERT INTO counters (name, value) VALUES ('crl_number', 0);
                """)
        }
        // v2: the CA the ledger belongs to (the SHA-1 key identifier of its public key).
        migrator.registerMigration("v2") { db in
            try db.execute(sql: """
                CREATE TABLE authority (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    key_identifier BLOB NOT NULL,
                    subject TEXT NOT NULL
                );
                """)
        }
        do {
            try migrator.migrate(database)
        } catch {
            throw LedgerError(.storage, "cannot prepare the CA ledger \(path ?? "in memory"): \(Self.describe(error))")
        }
    }

    /// One `BEGIN IMMEDIATE` transaction; `commitPoint` runs after the writes, before COMMIT.
    private func transaction<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        guard !isReadOnly else {
            throw LedgerError(.readOnly, "cannot \(what): the CA ledger \(path ?? "in memory") was opened read-only")
        }
        do {
            return try database.writeWithoutTransaction { db in
                var result: T?
                try db.inTransaction(.immediate) {
                    result = try body(db)
                    return .commit
                }
                return result!
            }
        } catch let error as LedgerError {
            throw error
        } catch let error as DatabaseError where error.resultCode.primaryResultCode == .SQLITE_CORRUPT {
            throw LedgerError(.corrupted, "cannot \(what): the CA ledger \(path ?? "in memory") is damaged (\(Self.describe(error))): restore it from a backup")
        } catch {
            throw LedgerError(.storage, "cannot \(what) in the CA ledger \(path ?? "in memory"): \(Self.describe(error))")
        }
    }

    private func read<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        do {
            return try database.read(body)
        } catch let error as LedgerError {
            throw error
        } catch let error as DatabaseError where error.resultCode.primaryResultCode == .SQLITE_CORRUPT {
            throw LedgerError(.corrupted, "cannot \(what): the CA ledger \(path ?? "in memory") is damaged (\(Self.describe(error))): restore it from a backup")
        } catch {
            throw LedgerError(.storage, "cannot \(what) from the CA ledger \(path ?? "in memory"): \(Self.describe(error))")
        }
    }

    /// Claims `serial` in the `serials` table (see ``CertificateLedger/reserve(serial:)``).
    public func reserve(serial: SerialNumber) throws -> Bool {
        try transaction("claim serial \(serial)") { db in
            try db.execute(sql: "INSERT OR IGNORE INTO serials (serial, reserved_at) VALUES (?, ?)",
                           arguments: [serial.hexString, Self.now()])
            return db.changesCount == 1
        }
    }

    /// Records an issued certificate (see ``CertificateLedger/record(_:)``).
    public func record(_ certificate: Certificate) throws {
        let serial = certificate.serialNumber
        let crash = CrashPoint.handler
        try transaction("record certificate \(serial)") { db in
            if try Int.fetchOne(db, sql: "SELECT 1 FROM certificates WHERE serial = ?", arguments: [serial.hexString]) != nil {
                throw LedgerError(.duplicateSerial, "a certificate with serial \(serial) is already recorded: serial numbers are unique per CA", serialNumber: serial)
            }
            try db.execute(sql: "INSERT OR IGNORE INTO serials (serial, reserved_at) VALUES (?, ?)", arguments: [serial.hexString, Self.now()])
            try db.execute(
                sql: """
                    INSERT INTO certificates (serial, der, subject, not_after, recorded_at, seq)
                    VALUES (?, ?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM certificates))
                    """,
                arguments: [serial.hexString, Data(certificate.derEncoded), certificate.subject.description,
                            Int64(certificate.notValidAfter.timeIntervalSince1970), Self.now()])
            try crash?(.beforeCommit)
        }
    }

    /// The certificate issued with `serial` and its revocation, if any (see ``CertificateLedger/certificate(serial:)``).
    public func certificate(serial: SerialNumber) throws -> LedgerEntry? {
        try read("read certificate \(serial)") { db in
            try Row.fetchOne(db, sql: Self.entryQuery + " WHERE c.serial = ?", arguments: [serial.hexString]).map(Self.entry)
        }
    }

    /// Every issued certificate, oldest first (see ``CertificateLedger/issuedCertificates()``).
    public func issuedCertificates() throws -> [LedgerEntry] {
        try read("list issued certificates") { db in
            try Row.fetchAll(db, sql: Self.entryQuery + " ORDER BY c.seq").map(Self.entry)
        }
    }

    /// Pages by the recording sequence (`WHERE seq > cursor ORDER BY seq LIMIT n`, on its
    /// unique index), so each page costs its own rows, not the whole table.
    public func issuedCertificates(after cursor: LedgerPage.Cursor?, limit: Int) throws -> LedgerPage {
        guard limit > 0 else { return LedgerPage(entries: [], next: nil) }
        return try read("list issued certificates") { db in
            let rows = try Row.fetchAll(db, sql: Self.pageQuery, arguments: [cursor?.position ?? 0, limit + 1])
            let page = rows.prefix(limit)
            let entries = try page.map(Self.entry)
            let next = rows.count > limit ? page.last.map { LedgerPage.Cursor(position: $0["seq"] as Int) } : nil
            return LedgerPage(entries: entries, next: next)
        }
    }

    /// Records a revocation in one transaction (see ``CertificateLedger/revoke(serial:reason:date:)``).
    @discardableResult
    public func revoke(serial: SerialNumber, reason: RevocationReason?, date: Date) throws -> Revocation {
        guard date.timeIntervalSince1970.isFinite, (0...Policy.latestDate.timeIntervalSince1970).contains(date.timeIntervalSince1970) else {
            throw LedgerError(.invalidDate, "cannot revoke \(serial) on \(date): a revocation date lies between 1970 and 9999-12-31 23:59:59 UTC", serialNumber: serial)
        }
        let seconds = Int64(date.timeIntervalSince1970.rounded(.down))
        let crash = CrashPoint.handler
        return try transaction("revoke certificate \(serial)") { db in
            guard try Int.fetchOne(db, sql: "SELECT 1 FROM certificates WHERE serial = ?", arguments: [serial.hexString]) != nil else {
                throw LedgerError(.unknownSerial, "no certificate with serial \(serial) was issued by this CA", serialNumber: serial)
            }
            if let row = try Row.fetchOne(db, sql: "SELECT revoked_at, reason FROM revocations WHERE serial = ?", arguments: [serial.hexString]) {
                let earlier = Self.revocation(serial: serial, row: row)
                throw LedgerError(.alreadyRevoked, "certificate \(serial) is already revoked (since \(earlier.date), reason \(earlier.reason ?? .unspecified))", serialNumber: serial)
            }
            try db.execute(
                sql: """
                    INSERT INTO revocations (serial, revoked_at, reason, seq)
                    VALUES (?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM revocations))
                    """,
                arguments: [serial.hexString, seconds, reason.map(\.rawValue)])
            try crash?(.beforeCommit)
            return Revocation(serialNumber: serial, date: Date(timeIntervalSince1970: TimeInterval(seconds)), reason: reason)
        }
    }

    /// Every revocation, in the order they were made (see ``CertificateLedger/revocations()``).
    public func revocations() throws -> [Revocation] {
        try read("list revocations", Self.revocations)
    }

    private static func revocations(_ db: Database) throws -> [Revocation] {
        try Row.fetchAll(db, sql: "SELECT serial, revoked_at, reason FROM revocations ORDER BY seq").map { row in
            revocation(serial: SerialNumber(hex: row["serial"]) ?? SerialNumber(bytes: []), row: row)
        }
    }

    /// Hands out the next CRL number (see ``CertificateLedger/nextCRLNumber()``).
    public func nextCRLNumber() throws -> Int {
        try transaction("hand out a CRL number", allocateCRLNumber)
    }

    /// The revocations and the next CRL number, read in one transaction (see ``CertificateLedger/nextCRLSnapshot()``).
    public func nextCRLSnapshot() throws -> CRLSnapshot {
        // One BEGIN IMMEDIATE transaction: no revocation can commit between the read of the
        // revocations and the allocation of the number.
        try transaction("hand out a CRL number") { db in
            let number = try allocateCRLNumber(db)
            return CRLSnapshot(number: number, revocations: try Self.revocations(db))
        }
    }

    private func allocateCRLNumber(_ db: Database) throws -> Int {
        try db.execute(sql: "UPDATE counters SET value = value + 1 WHERE name = 'crl_number'")
        guard let value = try Int.fetchOne(db, sql: "SELECT value FROM counters WHERE name = 'crl_number'") else {
            throw LedgerError(.storage, "the CA ledger \(path ?? "in memory") has no CRL number counter")
        }
        return value
    }

    /// Serials claimed for signing whose certificate was never recorded (a crash between
    /// claiming and recording): they stay claimed and are never issued.
    public func unusedReservedSerials() throws -> [SerialNumber] {
        try read("list claimed serials") { db in
            try String.fetchAll(db, sql: """
                SELECT s.serial FROM serials s LEFT JOIN certificates c ON c.serial = s.serial
                WHERE c.serial IS NULL ORDER BY s.reserved_at, s.serial
                """).compactMap { SerialNumber(hex: $0) }
        }
    }

    /// SQLite's own consistency check (`PRAGMA integrity_check` and `foreign_key_check`):
    /// the problems found, empty when the database is sound.
    public func integrityProblems() throws -> [String] {
        try read("check", Self.integrityProblems)
    }

    private static func integrityProblems(_ db: Database) throws -> [String] {
        let integrity = try String.fetchAll(db, sql: "PRAGMA integrity_check").filter { $0 != "ok" }
        let foreignKeys = try Row.fetchAll(db, sql: "PRAGMA foreign_key_check").map { "foreign key violation: \($0)" }
        return integrity + foreignKeys
    }

    private static let entryQuery = """
        SELECT c.serial, c.der, c.recorded_at, r.revoked_at, r.reason
        FROM certificates c LEFT JOIN revocations r ON r.serial = c.serial
        """

    private static let pageQuery = """
        SELECT c.seq, c.serial, c.der, c.recorded_at, r.revoked_at, r.reason
        FROM certificates c LEFT JOIN revocations r ON r.serial = c.serial
        WHERE c.seq > ? ORDER BY c.seq LIMIT ?
        """

    private static func entry(_ row: Row) throws -> LedgerEntry {
        let der: Data = row["der"]
        let certificate = try Certificate(derEncoded: [UInt8](der))
        let revokedAt: Int64? = row["revoked_at"]
        return LedgerEntry(
            certificate: certificate, recordedAt: Date(timeIntervalSince1970: TimeInterval(row["recorded_at"] as Int64)),
            revocation: revokedAt == nil ? nil : revocation(serial: certificate.serialNumber, row: row))
    }

    private static func revocation(serial: SerialNumber, row: Row) -> Revocation {
        let seconds: Int64 = row["revoked_at"]
        let reason: Int? = row["reason"]
        return Revocation(serialNumber: serial, date: Date(timeIntervalSince1970: TimeInterval(seconds)),
                          reason: reason.flatMap(RevocationReason.init(rawValue:)))
    }

    private static func now() -> Int64 { Int64(Date().timeIntervalSince1970) }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? DatabaseError { return error.message ?? "\(error)" }
        return "\(error)"
    }
}
