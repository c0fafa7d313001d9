import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One PEM block: a label (`CERTIFICATE`, `PRIVATE KEY`, …) and the DER bytes it carries.
public struct PEMBlock: Hashable, Sendable {
    /// The label between `-----BEGIN ` and `-----`.
    public var label: String
    /// The decoded bytes.
    public var derBytes: [UInt8]

    /// Creates a block from a label and DER bytes.
    public init(label: String, derBytes: [UInt8]) {
        self.label = label
        self.derBytes = derBytes
    }

    /// The block as PEM text, base64 in 64-character lines, ending with a newline.
    public var pemString: String {
        let base64 = Data(derBytes).base64EncodedString()
        var lines = ["-----BEGIN \(label)-----"]
        var index = base64.startIndex
        while index < base64.endIndex {
            let end = base64.index(index, offsetBy: 64, limitedBy: base64.endIndex) ?? base64.endIndex
            lines.append(String(base64[index..<end]))
            index = end
        }
        lines.append("-----END \(label)-----")
        return lines.joined(separator: "\n") + "\n"
    }

    /// Parses every PEM block in `text`, in order. Text between blocks is ignored (as
    /// OpenSSL writes explanatory text before certificates); a block that is opened and not
    /// closed, closed with another label, or whose body is not base64 is an error.
    ///
    /// - Throws: ``GnuTLSError`` with code `.malformedPEM`.
    public static func parseAll(_ text: String) throws -> [PEMBlock] {
        // A UTF-8 byte order mark (files saved by some Windows editors) is not text.
        let text = text.hasPrefix("\u{FEFF}") ? String(text.dropFirst()) : text
        var documents: [PEMBlock] = []
        var currentLabel: String?
        var body = ""
        var lineNumber = 0
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if let label = currentLabel {
                if line.hasPrefix("-----END ") {
                    guard line == "-----END \(label)-----" else {
                        throw GnuTLSError(.malformedPEM, "PEM block \(label) is closed by '\(line)' on line \(lineNumber)")
                    }
                    guard let data = Data(base64Encoded: body), !data.isEmpty else {
                        throw GnuTLSError(.malformedPEM, "PEM block \(label) ending on line \(lineNumber) does not hold valid base64")
                    }
                    documents.append(PEMBlock(label: label, derBytes: [UInt8](data)))
                    currentLabel = nil
                    body = ""
                } else if line.hasPrefix("-----BEGIN ") {
                    throw GnuTLSError(.malformedPEM, "PEM block \(label) is not closed before line \(lineNumber)")
                } else if line.contains(":") {
                    // RFC 1421 headers (Proc-Type, DEK-Info) of legacy encrypted keys.
                    throw GnuTLSError(.malformedPEM, "PEM block \(label) has RFC 1421 headers (legacy OpenSSL encryption), which are not supported: convert the key to encrypted PKCS#8")
                } else {
                    body += line
                }
            } else if line.hasPrefix("-----BEGIN ") {
                guard line.hasSuffix("-----"), line.count > 16 else {
                    throw GnuTLSError(.malformedPEM, "line \(lineNumber) is not a valid PEM header: '\(line)'")
                }
                currentLabel = String(line.dropFirst(11).dropLast(5))
            }
        }
        if let label = currentLabel {
            throw GnuTLSError(.malformedPEM, "PEM block \(label) is not closed: the text ends after line \(lineNumber) (truncated?)")
        }
        if documents.isEmpty {
            throw GnuTLSError(.malformedPEM, "no PEM block ('-----BEGIN …-----') was found")
        }
        return documents
    }

    /// Whether `bytes` look like PEM text rather than DER (DER starts with a SEQUENCE tag).
    static func looksLikePEM(_ bytes: [UInt8]) -> Bool {
        bytes.first != 0x30 && bytes.contains(0x2D)  // '-'
    }

    /// Whether `bytes` look like PEM text rather than DER.
    public static func looksLikePEMText(_ bytes: [UInt8]) -> Bool { looksLikePEM(bytes) }
}

/// File helpers shared by the types that load from disk.
package enum FileIO {
    static func read(_ path: String) throws -> [UInt8] {
        // Not `FileManager.contents(atPath:)`: swift-foundation 6.3 leaks its 4 KiB read
        // buffer for an empty file (LeakSanitizer reports it); `FileHandle` does not.
        let handle = FileHandle(forReadingAtPath: path)
        defer { try? handle?.close() }
        var data: Data?
        if let handle {
            do { data = try handle.readToEnd() ?? Data() } catch { data = nil }  // readToEnd is nil for an empty file
        }
        guard let data else {
            let exists = FileManager.default.fileExists(atPath: path)
            throw GnuTLSError(.fileAccess, exists ? "cannot read \(path): permission denied or not a file" : "cannot read \(path): no such file")
        }
        return [UInt8](data)
    }

    package static func readText(_ path: String) throws -> String {
        String(decoding: try read(path), as: UTF8.self)
    }

    /// Writes `text` to `path` atomically: a temporary file in the same directory, created
    /// with `O_EXCL` and its final mode from the start (0600 for `secret` files such as
    /// private keys, so a key is never readable by others, not even for a moment; 0644
    /// otherwise), written, `fsync`ed, renamed over the target, and the directory synced.
    ///
    /// The one file writer of the package: the library (CA keys) and `tlsctl` use it.
    /// - Throws: ``GnuTLSError`` `.fileAccess` naming the file and the system's reason.
    package static func write(_ text: String, to path: String, secret: Bool = false) throws {
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        let temporary = (directory as NSString).appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        let mode: mode_t = secret ? 0o600 : 0o644
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else {
            throw GnuTLSError(.fileAccess, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
        var failure: String?
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count, failure == nil {
            let count = bytes[written...].withUnsafeBytes { systemWrite(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno != EINTR { failure = String(cString: strerror(errno)) }
            } else {
                written += count
            }
        }
        // umask may have narrowed a public file's mode at creation; secret files stay 0600.
        if failure == nil, fchmod(fd, mode) != 0 { failure = String(cString: strerror(errno)) }
        if failure == nil, fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        if close(fd) != 0, failure == nil { failure = String(cString: strerror(errno)) }
        if failure == nil, rename(temporary, path) != 0 { failure = String(cString: strerror(errno)) }
        if let failure {
            unlink(temporary)
            throw GnuTLSError(.fileAccess, "cannot write \(path): \(failure)")
        }
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 {
            _ = fsync(directoryFD)
            close(directoryFD)
        }
    }
}

extension Array where Element == UInt8 {
    /// Lower-case hex, no separators.
    var hexString: String { map { String(format: "%02x", $0) }.joined() }
    /// Upper-case hex pairs joined by colons (fingerprints).
    package var colonHex: String { map { String(format: "%02X", $0) }.joined(separator: ":") }

    init?(hex: String) {
        let digits = Array(hex.utf8).filter { $0 != UInt8(ascii: ":") }
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = hexValue(digits[index]), let low = hexValue(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        self = bytes
    }
}

func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
    default: return nil
    }
}

/// write(2), named apart from `FileIO.write`.
private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int {
    write(fd, buffer, count)
}
