// A `ServiceGroup` running one `TLSServer`, for the test that sends SIGTERM to a process of
// its own (a signal to the test runner would stop every test).
//
//   TLSServiceFixture CHAIN.pem KEY.pem DRAIN_SECONDS
//
// Prints `listening on 127.0.0.1:PORT`, then for every connection `request received` when a line
// arrives; the handler answers `done` only after graceful shutdown has begun, so the
// request is in flight while the group shuts down. Prints `listener closed` when the
// listener is gone and `stopped` when the group returned; exits 0 then, 1 on an error.
import Foundation
import GnuTLS
import Logging
import NIOCore
import NIOGnuTLS
import ServiceLifecycle

func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

let arguments = CommandLine.arguments
guard arguments.count == 4, let drain = Double(arguments[3]) else {
    FileHandle.standardError.write(Data("usage: TLSServiceFixture CHAIN.pem KEY.pem DRAIN_SECONDS\n".utf8))
    exit(64)
}

do {
    let identity = try TLSIdentity(chainContentsOfFile: arguments[1], keyContentsOfFile: arguments[2])
    let context = try TLSContext(configuration: .makeServerConfiguration(identity: identity))
    let server = try await TLSServer.bind(
        host: "127.0.0.1", port: 0, contextProvider: context, drainTimeout: .milliseconds(Int64(drain * 1000)),
        onFailure: { error in say("failed: \(error)") }
    ) { channel in
        try await channel.executeThenClose { inbound, outbound in
            for try await _ in inbound {
                say("request received")
                // Handlers run inside the service's task, so they see its graceful shutdown.
                try? await gracefulShutdown()
                try await outbound.write(ByteBuffer(string: "done\n"))
                break
            }
        }
        say("connection finished")
    }
    server.listenerClosed.whenComplete { _ in say("listener closed") }
    say("listening on 127.0.0.1:\(server.port)")
    let group = ServiceGroup(services: [server], gracefulShutdownSignals: [.sigterm], logger: Logger(label: "fixture"))
    try await group.run()
    say("stopped")
    exit(0)
} catch {
    FileHandle.standardError.write(Data("TLSServiceFixture: \(error)\n".utf8))
    exit(1)
}
