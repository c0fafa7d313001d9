import Foundation
import GnuTLS
import NIOCore
import NIOGnuTLS
import Testing
import TestSupport

// A raw TLS peer in Python (the `ssl` module over MemoryBIO, plus its own record writer)
// completes a handshake with our server or our client, then sends a damaged record and
// reports the alert it gets back, as OpenSSL decoded it from the wire, with the header of
// the record that carried it (issue 7, item 2).

/// The peer. `python3 peer.py client|server PORT VERSION DAMAGE CAFILE [CERT KEY]`;
/// prints `RECORD <hex header>` for the first record received after the damage and
/// `ALERT <OpenSSL reason>` (or `NOALERT <what happened>`).
let rawRecordPeer = #"""
import hashlib, hmac, os, socket, ssl, struct, sys

role, port, version, damage, cafile = sys.argv[1:6]
keylog = os.path.join(os.path.dirname(os.path.abspath(__file__)), "keylog-%d.txt" % os.getpid())
if role == "client":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
else:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[6], sys.argv[7])
    ctx.num_tickets = 0
ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
ctx.keylog_filename = keylog

if role == "client":
    sock = socket.create_connection(("127.0.0.1", int(port)), timeout=20)
else:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    print("PORT", listener.getsockname()[1], flush=True)
    listener.settimeout(30)
    sock, _ = listener.accept()
    sock.settimeout(20)
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(incoming, outgoing, server_side=(role == "server"),
                   server_hostname="localhost" if role == "client" else None)

def flush():
    data = outgoing.read()
    if data:
        sock.sendall(data)

while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        flush()
        data = sock.recv(65536)
        if not data:
            print("NOALERT closed during handshake", flush=True)
            sys.exit(0)
        incoming.write(data)
flush()
if role == "client" and version == "TLSv1_3":
    # Read the server's tickets so they are not mistaken for the answer.
    sock.settimeout(0.5)
    try:
        incoming.write(sock.recv(65536))
        tls.read(1)
    except (socket.timeout, ssl.SSLWantReadError):
        pass
    sock.settimeout(20)

def hkdf_label(secret, label, length, hash_name):
    full = b"tls13 " + label
    info = struct.pack(">HB", length, len(full)) + full + b"\x00"
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([counter]), hash_name).digest()
        out += block
        counter += 1
    return out[:length]

def encrypted_record(inner, content_type):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
    name = tls.cipher()[0]
    hash_name = "sha384" if name.endswith("SHA384") else "sha256"
    wanted = ("CLIENT" if role == "client" else "SERVER") + "_TRAFFIC_SECRET_0"
    secret = None
    for line in open(keylog):
        parts = line.split()
        if len(parts) == 3 and parts[0] == wanted:
            secret = bytes.fromhex(parts[2])
    key_length = 32 if ("256" in name or "CHACHA" in name) else 16
    key = hkdf_label(secret, b"key", key_length, hash_name)
    iv = hkdf_label(secret, b"iv", 12, hash_name)
    plaintext = inner + bytes([content_type])
    header = b"\x17\x03\x03" + struct.pack(">H", len(plaintext) + 16)
    aead = ChaCha20Poly1305(key) if "CHACHA" in name else AESGCM(key)
    # Sequence number 0: nothing was sent with the application keys yet.
    return header + aead.encrypt(iv, plaintext, header)

if damage == "flippedTag":
    tls.write(b"hello")
    record = bytearray(outgoing.read())
    record[-1] ^= 1
    sock.sendall(bytes(record))
elif damage == "oversizedRecord":
    length = 16384 + 2048 + 1
    sock.sendall(b"\x17\x03\x03" + struct.pack(">H", length) + os.urandom(length))
elif damage == "malformedKeyUpdate":
    # KeyUpdate (24) with a two-byte body where RFC 8446 §4.6.3 has one byte.
    sock.sendall(encrypted_record(b"\x18\x00\x00\x02\x00\x00", 22))
else:
    raise SystemExit("unknown damage " + damage)

received = b""
while True:
    try:
        data = sock.recv(65536)
    except (ConnectionResetError, socket.timeout) as error:
        print("TRANSPORT", type(error).__name__, flush=True)
        break
    if not data:
        break
    received += data
print("RECORD", received[:5].hex(), flush=True)
incoming.write(received)
try:
    tls.read(1024)
    print("NOALERT read data", flush=True)
except ssl.SSLError as error:
    print("ALERT", error.reason, flush=True)
except Exception as error:
    print("NOALERT", type(error).__name__, error, flush=True)
"""#

/// What each damage must be answered with, as OpenSSL names the received alert.
let expectedAlertReasons = [
    "flippedTag": "SSLV3_ALERT_BAD_RECORD_MAC",
    "oversizedRecord": "TLSV1_ALERT_RECORD_OVERFLOW",
    "malformedKeyUpdate": "TLSV1_ALERT_DECODE_ERROR",
]

/// The damage cases that apply to `version` (KeyUpdate exists only in TLS 1.3).
func recordDamages(_ version: TLSVersion) -> [String] {
    version == .tls13 ? ["flippedTag", "oversizedRecord", "malformedKeyUpdate"] : ["flippedTag", "oversizedRecord"]
}

/// Checks the peer's report: the exact alert, in a record whose type is visible (21) in
/// TLS 1.2 and hidden (23) in TLS 1.3.
func expectAlert(_ output: String, damage: String, version: TLSVersion, sourceLocation: SourceLocation = #_sourceLocation) {
    let lines = output.split(separator: "\n")
    let record = lines.first { $0.hasPrefix("RECORD ") }.map { String($0.dropFirst(7)) } ?? ""
    let alert = lines.first { $0.hasPrefix("ALERT ") }.map { String($0.dropFirst(6)) }
    #expect(alert == expectedAlertReasons[damage], "\(damage), \(version): \(output)", sourceLocation: sourceLocation)
    #expect(record.hasPrefix(version == .tls13 ? "170303" : "150303"), "\(damage), \(version): \(output)", sourceLocation: sourceLocation)
}

@Suite(.serialized) struct TLSRecordAlertInteropTests {
    @Test(arguments: tlsVersions)
    func ourServerAnswersDamagedRecordsWithTheExactAlert(version: TLSVersion) async throws {
        let pki = try TLSTestPKI()
        let script = try pki.directory.write(rawRecordPeer, to: "peer.py")
        let server = try await RunningServer.start(pki.serverConfiguration(version), behaviour: .echo)
        for damage in recordDamages(version) {
            let result = try await runTool(["python3", script, "client", "\(server.port)", version.pythonName, damage, pki.path("root.pem")],
                                           timeout: 60)
            #expect(!result.timedOut)
            expectAlert(result.standardOutput + result.standardError, damage: damage, version: version)
        }
        await server.stop()
    }

    @Test(arguments: tlsVersions)
    func ourClientAnswersDamagedRecordsWithTheExactAlert(version: TLSVersion) async throws {
        let pki = try TLSTestPKI()
        let script = try pki.directory.write(rawRecordPeer, to: "peer.py")
        let context = try TLSContext(configuration: pki.clientConfiguration(version))
        for damage in recordDamages(version) {
            let peer = try await PeerProcess(["python3", script, "server", "0", version.pythonName, damage, pki.path("root.pem"),
                                        pki.path("server-chain.pem"), pki.path("server.key.pem")], in: pki.directory)
            defer { peer.stop() }
            let text = try await peer.waitForOutput("PORT ")
            guard let port = text.split(separator: "\n").first(where: { $0.hasPrefix("PORT ") }).flatMap({ Int($0.dropFirst(5)) }) else {
                Issue.record("no port: \(peer.transcript)")
                continue
            }
            let channel = try await SecureChannel.connect(host: "localhost", port: port, context: context)
            let failure: (any Error)? = try await withDeadline(60, "reading after \(damage)") {
                do {
                    try await channel.executeThenClose { inbound, _ in
                        for try await _ in inbound {}
                    }
                    return nil
                } catch {
                    return error
                }
            }
            #expect((failure as? TLSError)?.code == .protocolError, "\(damage): \(String(describing: failure))")
            try await peer.waitForOutput("ALERT", timeout: 30)
            expectAlert(peer.output, damage: damage, version: version)
        }
    }
}
