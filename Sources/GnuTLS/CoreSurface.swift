import GnuTLSCore

// The parts of GnuTLSCore that the targets above GnuTLS use, re-exposed at `package`
// access: only GnuTLS imports GnuTLSCore (DESIGN.md, "Layers"); NIOGnuTLS and
// GnuTLSAuthority reach the engine and the signing handles through these names.

/// The sans-IO TLS engine that `GnuTLSHandler` drives on the event loop.
package typealias TLSEngine = GnuTLSCore.TLSEngine
/// A failure of the TLS engine (alert, protocol error, closed), translated by `GnuTLSHandler`.
package typealias CoreTLSFailure = GnuTLSCore.CoreTLSFailure
/// A parsed certificate handle: the authority issues through it, the OCSP signer checks issuers with it.
package typealias CertificateHandle = GnuTLSCore.CertificateHandle
/// What the authority asks GnuTLS to sign into a certificate.
package typealias CoreCertificateSpec = GnuTLSCore.CoreCertificateSpec
/// Random bytes and digests (serial numbers, OCSP key hashes).
package typealias CoreCrypto = GnuTLSCore.CoreCrypto
