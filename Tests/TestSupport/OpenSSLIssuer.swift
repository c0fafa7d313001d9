import Foundation

/// Certificates and CRLs made by the `openssl` command: for chains the library's own
/// authority refuses to build on purpose (CA:FALSE issuers, exhausted path lengths, weak
/// keys, SHA-1) and for CRLs from an independent issuer. Every file is written into the
/// given directory; paths in, paths out.
public enum OpenSSLIssuer {
    /// A random positive serial of 64 bits, as `openssl -set_serial` takes it.
    public static func randomSerial() -> String {
        "0x" + String(UInt64.random(in: 0x1000_0000_0000_0000...0x7FFF_FFFF_FFFF_FFFF), radix: 16)
    }

    /// Writes `[ext]` followed by `extensions` (one `name = value` per line) and returns its path.
    static func extensionFile(_ extensions: [String], in directory: TemporaryDirectory) throws -> String {
        try directory.write("[ext]\n" + extensions.joined(separator: "\n") + "\n", to: "ext-\(UUID().uuidString).cnf")
    }

    /// A self-signed certificate for the key at `key` (`openssl req -x509`).
    @discardableResult
    public static func selfSigned(
        key: String, subject: String, extensions: [String], days: Int = 30, digest: String = "sha256",
        out: String, in directory: TemporaryDirectory
    ) async throws -> String {
        let config = try directory.write(
            "[req]\ndistinguished_name = dn\nx509_extensions = ext\n[dn]\n[ext]\n" + extensions.joined(separator: "\n") + "\n",
            to: "req-\(UUID().uuidString).cnf")
        try await Tool.runChecked(["openssl", "req", "-x509", "-new", "-config", config, "-key", key, "-subj", subject,
                             "-days", "\(days)", "-\(digest)", "-set_serial", randomSerial(), "-out", out])
        return out
    }

    /// A certificate for the key at `key`, signed by `issuerKey` in the name of
    /// `issuerCertificate` (`openssl req -new` then `openssl x509 -req`), with exactly
    /// `extensions`.
    @discardableResult
    public static func issue(
        key: String, subject: String, issuerCertificate: String, issuerKey: String, extensions: [String],
        days: Int = 30, digest: String = "sha256", out: String, in directory: TemporaryDirectory
    ) async throws -> String {
        let request = directory.file("req-\(UUID().uuidString).pem")
        try await Tool.runChecked(["openssl", "req", "-new", "-key", key, "-subj", subject, "-out", request])
        try await Tool.runChecked(["openssl", "x509", "-req", "-in", request, "-CA", issuerCertificate, "-CAkey", issuerKey,
                             "-set_serial", randomSerial(), "-days", "\(days)", "-\(digest)",
                             "-extfile", try extensionFile(extensions, in: directory), "-extensions", "ext", "-out", out])
        return out
    }

    /// Extensions of a CA certificate: critical CA:TRUE (with `pathLength`), keyCertSign
    /// and cRLSign, key identifiers.
    public static func caExtensions(pathLength: Int? = nil) -> [String] {
        ["basicConstraints = critical, CA:TRUE" + (pathLength.map { ", pathlen:\($0)" } ?? ""),
         "keyUsage = critical, keyCertSign, cRLSign",
         "subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid:always"]
    }

    /// Extensions of a TLS server certificate for `names` (`DNS:a.example.com`, `IP:192.0.2.1`).
    public static func serverExtensions(names: [String]) -> [String] {
        var extensions = ["basicConstraints = critical, CA:FALSE", "keyUsage = critical, digitalSignature, keyEncipherment",
                          "extendedKeyUsage = serverAuth", "subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid:always"]
        if !names.isEmpty { extensions.append("subjectAltName = " + names.joined(separator: ", ")) }
        return extensions
    }

    /// A minimal `openssl ca` directory for the CA at `certificate`/`key`: an index, a CRL
    /// number, a config whose CRLs are version 2 with an authority key identifier and a CRL
    /// number. Revoke with ``revoke(_:reason:)``, then ``generateCRL(days:out:)``.
    public struct CADirectory {
        /// The `openssl ca` configuration file (`-config`).
        public let config: String
        let directory: TemporaryDirectory

        /// Creates the CA directory `name` in `directory` for the CA certificate and key files.
        public init(certificate: String, key: String, name: String = "openssl-ca", in directory: TemporaryDirectory) throws {
            self.directory = directory
            let base = directory.file(name)
            try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
            try "".write(toFile: base + "/index.txt", atomically: true, encoding: .utf8)
            try "01\n".write(toFile: base + "/crlnumber", atomically: true, encoding: .utf8)
            config = try directory.write("""
                [ca]
                default_ca = CA_default
                [CA_default]
                dir = \(base)
                database = $dir/index.txt
                crlnumber = $dir/crlnumber
                certificate = \(certificate)
                private_key = \(key)
                default_md = sha256
                default_crl_days = 7
                crl_extensions = crl_ext
                [crl_ext]
                authorityKeyIdentifier = keyid:always

                """, to: "\(name).cnf")
        }

        /// `openssl ca -revoke CERT -crl_reason REASON`.
        public func revoke(_ certificate: String, reason: String) async throws {
            try await Tool.runChecked(["openssl", "ca", "-config", config, "-revoke", certificate, "-crl_reason", reason])
        }

        /// `openssl ca -gencrl`, valid for `days`.
        @discardableResult
        public func generateCRL(days: Int = 7, out: String) async throws -> String {
            try await Tool.runChecked(["openssl", "ca", "-config", config, "-gencrl", "-crldays", "\(days)", "-out", out])
            return out
        }
    }

    /// The revocation dates `openssl crl -text` reports, by upper-case hex serial.
    public static func revocationDates(ofCRL path: String) async throws -> [String: Date] {
        let text = try await Tool.runChecked(["openssl", "crl", "-in", path, "-noout", "-text"]).standardOutput
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "MMM d HH:mm:ss yyyy zzz"
        var result: [String: Date] = [:]
        var serial: String?
        for line in text.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            if line.hasPrefix("Serial Number:") {
                serial = line.dropFirst("Serial Number:".count).trimmingCharacters(in: .whitespaces).uppercased()
            } else if line.hasPrefix("Revocation Date:"), let current = serial {
                let text = line.dropFirst("Revocation Date:".count).split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
                if let date = formatter.date(from: text) { result[current] = date }
                serial = nil
            }
        }
        return result
    }
}
