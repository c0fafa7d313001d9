import Foundation

/// A command that ran but did not succeed; its description holds the whole output.
public struct ToolFailure: Error, CustomStringConvertible {
    /// The failed run: command, exit code and output.
    public var result: ProcessResult
    public var description: String { "command failed: \(result)" }
}

extension Tool {
    /// Runs a command that must succeed (exit 0, no timeout); throws ``ToolFailure`` with
    /// its output otherwise, or ``MissingToolError`` when the program is not installed.
    @discardableResult
    public static func runChecked(
        _ arguments: [String], input: String? = nil, timeout: TimeInterval = 60, directory: String? = nil,
        package: String? = nil
    ) async throws -> ProcessResult {
        let result = try await run(arguments, input: input, timeout: timeout, directory: directory, package: package)
        guard result.succeeded else { throw ToolFailure(result: result) }
        return result
    }
}

/// Keys, requests and digests made by the `openssl` command, the independent source of
/// test material. Every file is written into the given directory.
public enum OpenSSL {
    /// `openssl genpkey` for `spec`: `rsa:BITS`, `ec:P-256|P-384|P-521`, `ed25519`, `ed448`.
    /// Returns the path of the PKCS#8 PEM file.
    @discardableResult
    public static func generateKey(_ spec: String, to path: String) async throws -> String {
        var arguments = ["openssl", "genpkey", "-out", path]
        let parts = spec.split(separator: ":", maxSplits: 1).map(String.init)
        switch parts[0] {
        case "rsa": arguments += ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:\(parts[1])"]
        case "ec": arguments += ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:\(parts[1])"]
        case "ed25519": arguments += ["-algorithm", "ED25519"]
        case "ed448": arguments += ["-algorithm", "ED448"]
        default: preconditionFailure("unknown key spec \(spec)")
        }
        try await Tool.runChecked(arguments, timeout: 120)
        return path
    }

    /// Lower-case hex SHA-256 of a file's bytes, computed by `openssl dgst`.
    public static func sha256Hex(ofFile path: String) async throws -> String {
        let output = try await Tool.runChecked(["openssl", "dgst", "-sha256", "-r", path]).standardOutput
        return String(output.prefix { !$0.isWhitespace }).lowercased()
    }

    /// The hex digits of `openssl x509 -noout -ext NAME` style output after a header line,
    /// colons removed, lower case (key identifiers).
    public static func hexAfterHeader(_ text: String) -> String {
        text.split(separator: "\n").dropFirst().joined()
            .filter { $0.isHexDigit }.lowercased()
    }
}

/// Lower-case hex of bytes, for comparing with tool output.
public func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

/// A minimal DER walker for tests that look at the encoding itself (the sign of a serial
/// number, the position of a signature); independent of the library's parser.
public enum TinyDER {
    /// One TLV element: its tag, contents and position in the input.
    public struct Element {
        /// The identifier octet (class, constructed bit and tag number).
        public var tag: UInt8
        /// The contents octets.
        public var content: ArraySlice<UInt8>
        /// Where the whole element (tag, length, contents) lies in the input.
        public var range: Range<Int>
    }

    /// The elements laid one after another in `bytes` (the children of a constructed element
    /// when given its contents).
    public static func elements(_ bytes: ArraySlice<UInt8>) -> [Element]? {
        var result: [Element] = []
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let start = index
            let tag = bytes[index]
            index += 1
            guard index < bytes.endIndex else { return nil }
            var length = Int(bytes[index])
            index += 1
            if length & 0x80 != 0 {
                let count = length & 0x7F
                guard count > 0, count <= 4, index + count <= bytes.endIndex else { return nil }
                length = bytes[index..<index + count].reduce(0) { $0 << 8 | Int($1) }
                index += count
            }
            guard index + length <= bytes.endIndex else { return nil }
            result.append(Element(tag: tag, content: bytes[index..<index + length], range: start..<index + length))
            index += length
        }
        return result
    }

    /// The children of the single constructed element `bytes`.
    public static func children(_ bytes: [UInt8]) -> [Element]? {
        guard let top = elements(bytes[...]), top.count == 1 else { return nil }
        return elements(top[0].content)
    }

    /// The contents of a certificate's serialNumber INTEGER (with any leading 0x00 kept).
    public static func certificateSerial(_ certificate: [UInt8]) -> ArraySlice<UInt8>? {
        guard let outer = children(certificate), let tbs = elements(outer[0].content) else { return nil }
        let serial = tbs[0].tag == 0xA0 ? tbs[1] : tbs[0]
        return serial.tag == 0x02 ? serial.content : nil
    }
}

/// Requests made by GnuTLS's own `certtool`, the second independent source.
public enum CertTool {
    /// `certtool --generate-request` for the key at `keyPath`, with `template` (certtool's
    /// template syntax) written beside it. Returns the path of the PEM request.
    public static func generateRequest(key keyPath: String, template: String, in directory: TemporaryDirectory,
                                       name: String = "certtool") async throws -> String {
        let templatePath = try directory.write(template, to: "\(name).cfg")
        let output = directory.file("\(name).csr")
        try await Tool.runChecked(["certtool", "--generate-request", "--load-privkey", keyPath, "--template", templatePath, "--outfile", output],
                            package: "gnutls-bin")
        return output
    }
}
