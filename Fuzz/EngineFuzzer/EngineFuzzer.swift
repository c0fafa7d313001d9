import GnuTLS
import GnuTLSCore

// libFuzzer target for the sans-IO engine (issue 7, item 8). Built only on request (see
// Package.swift and scripts/fuzz-engine.sh); libFuzzer provides `main`.
//
// The first input byte picks where mutated bytes enter a server engine:
//   0: a fresh server (the bytes are its first input, split into records as they come);
//   1: after a real ClientHello, in place of the client's second flight;
//   2: after a complete handshake (TLS 1.3), as records to decrypt;
//   3: the same after a TLS 1.2 handshake.
// Every call must return: `.wantInput`, `.complete`, data, or a typed CoreTLSFailure.
// A crash, a hang (libFuzzer's -timeout) or a leak (ASan) is a finding.

struct Contexts {
    let server13: TLSContext
    let client13: TLSContext
    let server12: TLSContext
    let client12: TLSContext

    init() {
        do {
            let root = try LocalAuthority.createRoot(subject: try DistinguishedName("CN=Fuzz Root"))
            let key = try KeyPair.generate(.ecdsaP256)
            let request = try CertificateRequest.create(subject: try DistinguishedName("CN=localhost"), key: key,
                                                        alternativeNames: [.dnsName("localhost")])
            let identity = TLSIdentity(chain: try root.issueWithChain(request, profile: .tlsServer, options: IssuanceOptions(validityDays: 2)), key: key)
            let trust = TrustStore(certificates: [root.certificate])
            func pinned(_ configuration: TLSConfiguration, _ version: TLSVersion) throws -> TLSContext {
                var configuration = configuration
                configuration.minimumVersion = version
                configuration.maximumVersion = version
                return try TLSContext(configuration: configuration)
            }
            server13 = try pinned(.makeServerConfiguration(identity: identity), .tls13)
            client13 = try pinned(.makeClientConfiguration(trustStore: trust), .tls13)
            server12 = try pinned(.makeServerConfiguration(identity: identity), .tls12)
            client12 = try pinned(.makeClientConfiguration(trustStore: trust), .tls12)
        } catch {
            fatalError("cannot build the fuzzer's PKI: \(error)")
        }
    }
}

nonisolated(unsafe) let contexts = Contexts()

/// Feeds `input` to `engine` in pieces and drives it; returns whether it is still usable.
func feed(_ input: ArraySlice<UInt8>, to engine: TLSEngine, handshake: Bool) {
    var offset = input.startIndex
    var piece = 1
    while offset < input.endIndex {
        let end = min(input.endIndex, offset + piece)
        engine.receive(Array(input[offset..<end]))
        offset = end
        piece = piece * 3 + 1
        do {
            if handshake && !engine.handshakeComplete {
                _ = try engine.handshake()
            } else {
                var rounds = 0
                while rounds < 10_000, case .data = try engine.read({ _ in }) { rounds += 1 }
            }
        } catch {
            _ = engine.takeOutbound()
            return
        }
        _ = engine.takeOutbound()
    }
}

/// Handshakes `client` with `server` in memory.
func connect(_ client: TLSEngine, _ server: TLSEngine) -> Bool {
    for _ in 0..<16 {
        _ = try? client.handshake()
        server.receive(client.takeOutbound())
        _ = try? server.handshake()
        client.receive(server.takeOutbound())
        if client.handshakeComplete && server.handshakeComplete { return true }
    }
    return false
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEngine(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let mode = bytes[0] % 4
    let input = bytes[1...]
    do {
        switch mode {
        case 0:
            let server = try contexts.server13.makeEngine(host: nil)
            feed(input, to: server, handshake: true)
        case 1:
            let server = try contexts.server13.makeEngine(host: nil)
            let client = try contexts.client13.makeEngine(host: "localhost")
            _ = try? client.handshake()
            server.receive(client.takeOutbound())
            _ = try? server.handshake()
            _ = server.takeOutbound()
            feed(input, to: server, handshake: true)
        default:
            let tls13 = mode == 2
            let server = try (tls13 ? contexts.server13 : contexts.server12).makeEngine(host: nil)
            let client = try (tls13 ? contexts.client13 : contexts.client12).makeEngine(host: "localhost")
            guard connect(client, server) else { fatalError("the reference handshake failed") }
            feed(input, to: server, handshake: false)
        }
    } catch {
        // Making an engine failed: not the input's doing.
        fatalError("cannot make an engine: \(error)")
    }
    return 0
}
