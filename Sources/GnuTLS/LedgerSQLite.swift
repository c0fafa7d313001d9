import Foundation
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

    /// Opens the ledger at `path`, creating the file and its tables when missing.
    /// - Throws: ``LedgerError`` `.storage`.
    public init(path: String) throws {
        var configuration = Configuration()
        configuration.journalMode = .wal
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        do {
            database = try DatabaseQueue(path: path, configuration: configuration)
        } catch {
            throw LedgerError(.storage, "cannot open the CA ledger \(path): \(Self.describe(error))")
        }
        self.path = path
        try migrate()
    }

    /// A ledger in memory, gone when the object is: for tests and throw-away authorities.
    public init() throws {
        do {
            database = try DatabaseQueue()
        } catch {
            throw LedgerError(.storage, "cannot create an in-memory ledger: \(Self.describe(error))")
        }
        path = nil
        try migrate()
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
        do {
            try migrator.migrate(database)
        } catch {
            throw LedgerError(.storage, "cannot prepare the CA ledger \(path ?? "in memory"): \(Self.describe(error))")
        }
    }

    /// One `BEGIN IMMEDIATE` transaction; `commitPoint` runs after the writes, before COMMIT.
    private func transaction<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
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
        } catch {
            throw LedgerError(.storage, "cannot \(what) in the CA ledger \(path ?? "in memory"): \(Self.describe(error))")
        }
    }

    private func read<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        do {
            return try database.read(body)
        } catch let error as LedgerError {
            throw error
        } catch {
            throw LedgerError(.storage, "cannot \(what) from the CA ledger \(path ?? "in memory"): \(Self.describe(error))")
        }
    }

    public func reserve(serial: SerialNumber) throws -> Bool {
        try transaction("claim serial \(serial)") { db in
            try db.execute(sql: "INSERT OR IGNORE INTO serials (serial, reserved_at) VALUES (?, ?)",
                           arguments: [serial.hexString, Self.now()])
            return db.changesCount == 1
        }
    }

    public func record(_ certificate: Certificate) throws {
        let serial = certificate.serialNumber
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
            CrashPoint.beforeCommit.abortIfRequested()
        }
    }

    public func certificate(serial: SerialNumber) throws -> LedgerEntry? {
        try read("read certificate \(serial)") { db in
            try Row.fetchOne(db, sql: Self.entryQuery + " WHERE c.serial = ?", arguments: [serial.hexString]).map(Self.entry)
        }
    }

    public func issuedCertificates() throws -> [LedgerEntry] {
        try read("list issued certificates") { db in
            try Row.fetchAll(db, sql: Self.entryQuery + " ORDER BY c.seq").map(Self.entry)
        }
    }

    @discardableResult
    public func revoke(serial: SerialNumber, reason: RevocationReason?, date: Date) throws -> Revocation {
        let seconds = Int64(date.timeIntervalSince1970.rounded(.down))
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
            CrashPoint.beforeCommit.abortIfRequested()
            return Revocation(serialNumber: serial, date: Date(timeIntervalSince1970: TimeInterval(seconds)), reason: reason)
        }
    }

    public func revocations() throws -> [Revocation] {
        try read("list revocations") { db in
            try Row.fetchAll(db, sql: "SELECT serial, revoked_at, reason FROM revocations ORDER BY seq").map { row in
                Self.revocation(serial: SerialNumber(hex: row["serial"]) ?? SerialNumber(bytes: []), row: row)
            }
        }
    }

    public func nextCRLNumber() throws -> Int {
        try transaction("hand out a CRL number") { db in
            try db.execute(sql: "UPDATE counters SET value = value + 1 WHERE name = 'crl_number'")
            guard let value = try Int.fetchOne(db, sql: "SELECT value FROM counters WHERE name = 'crl_number'") else {
                throw LedgerError(.storage, "the CA ledger \(path ?? "in memory") has no CRL number counter")
            }
            return value
        }
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
        try read("check") { db in
            let integrity = try String.fetchAll(db, sql: "PRAGMA integrity_check").filter { $0 != "ok" }
            let foreignKeys = try Row.fetchAll(db, sql: "PRAGMA foreign_key_check").map { "foreign key violation: \($0)" }
            return integrity + foreignKeys
        }
    }

    private static let entryQuery = """
        SELECT c.serial, c.der, c.recorded_at, r.revoked_at, r.reason
        FROM certificates c LEFT JOIN revocations r ON r.serial = c.serial
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
