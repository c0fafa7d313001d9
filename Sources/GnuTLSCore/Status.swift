import CGnuTLS

/// Turns a GnuTLS return code into a thrown ``GnuTLSError`` naming the C function.
///
/// `GNUTLS_E_AGAIN` and `GNUTLS_E_INTERRUPTED` are not errors; callers that can see them
/// (the TLS engine) handle them before calling this.
@inline(__always)
package func check(
    _ rc: Int32, _ function: StaticString, _ context: @autoclosure () -> String = "",
    code: GnuTLSError.Code = .library
) throws {
    if rc < 0 { throw GnuTLSError.from(rc, function: function, context: context(), code: code) }
}

extension GnuTLSError {
    /// Builds the error for a failed GnuTLS call, with GnuTLS's name and text for the code.
    package static func from(
        _ rc: Int32, function: StaticString, context: String = "", code: Code = .library
    ) -> GnuTLSError {
        let name = gnutls_strerror_name(rc).map { String(cString: $0) } ?? "GNUTLS_E_\(rc)"
        let text = gnutls_strerror(rc).map { String(cString: $0) } ?? "unknown error"
        let what = context.isEmpty ? "\(function) failed" : context
        return GnuTLSError(
            code, "\(what): \(text)", function: "\(function)", gnutlsCode: rc, gnutlsName: name,
            gnutlsDescription: text)
    }

    /// The symbolic name GnuTLS gives a return code.
    package static func name(of rc: Int32) -> String {
        gnutls_strerror_name(rc).map { String(cString: $0) } ?? "GNUTLS_E_\(rc)"
    }
}

/// Calls `body` with a `gnutls_datum_t` that points at `bytes` for the duration of the call.
/// GnuTLS only reads from it.
package func withDatum<R>(_ bytes: [UInt8], _ body: (UnsafePointer<gnutls_datum_t>) throws -> R) rethrows -> R {
    try bytes.withUnsafeBufferPointer { buffer in
        var datum = gnutls_datum_t(
            data: UnsafeMutablePointer(mutating: buffer.baseAddress), size: UInt32(buffer.count))
        return try body(&datum)
    }
}

/// Calls `body` with a `gnutls_datum_t` over the UTF-8 bytes of `string` (not NUL-terminated).
package func withDatum<R>(_ string: String, _ body: (UnsafePointer<gnutls_datum_t>) throws -> R) rethrows -> R {
    try withDatum(Array(string.utf8), body)
}

/// Runs a GnuTLS call that fills a datum GnuTLS allocates, copies the bytes out and frees the
/// datum with `gnutls_free`, as the manual requires for every `*_export2`/`*_get_*2` output.
package func exportDatum(
    _ function: StaticString, _ context: @autoclosure () -> String = "",
    _ body: (UnsafeMutablePointer<gnutls_datum_t>) -> Int32
) throws -> [UInt8] {
    var datum = gnutls_datum_t(data: nil, size: 0)
    let rc = body(&datum)
    defer { if datum.data != nil { cgnutls_free(datum.data) } }
    try check(rc, function, context())
    return takeBytes(datum)
}

/// Copies the bytes a datum points at (does not free it).
package func takeBytes(_ datum: gnutls_datum_t) -> [UInt8] {
    guard let data = datum.data, datum.size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: Int(datum.size)))
}

/// Runs a GnuTLS getter that writes into a caller-sized buffer, growing it when GnuTLS
/// answers `GNUTLS_E_SHORT_MEMORY_BUFFER`. Returns `nil` when GnuTLS says the data is absent.
package func sizedBuffer(
    _ function: StaticString, initial: Int = 256,
    _ body: (UnsafeMutableRawPointer, UnsafeMutablePointer<Int>) -> Int32
) throws -> [UInt8]? {
    var capacity = initial
    for _ in 0..<4 {
        var buffer = [UInt8](repeating: 0, count: capacity)
        var size = capacity
        let rc = buffer.withUnsafeMutableBytes { body($0.baseAddress!, &size) }
        if rc == GNUTLS_E_SHORT_MEMORY_BUFFER {
            capacity = max(size, capacity * 2)
            continue
        }
        if rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE { return nil }
        try check(rc, function)
        return Array(buffer.prefix(size))
    }
    throw GnuTLSError(.library, "\(function) kept asking for a larger buffer")
}
