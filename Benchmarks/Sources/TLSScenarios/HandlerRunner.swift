@_spi(Benchmarks) import GnuTLS
@_spi(Benchmarks) import GnuTLSAuthority
import NIOCore
import NIOEmbedded
import NIOGnuTLS

/// `GnuTLSHandler` back to back on EmbeddedChannels.
final class HandlerRunner: ChannelRunner {
    let clientContext: TLSContext
    let serverContext: TLSContext
    private var completed: ConnectionInfo?

    init(_ scenario: Scenario, pki: BenchmarkPKI) throws {
        // GnuTLSHandler keeps the client's session in the context: a full-handshake scenario
        // runs without tickets, or every handshake after the first would resume.
        (clientContext, serverContext) = try pki.contexts(for: scenario, clientTickets: scenario.kind != .handshake(resumed: false))
        super.init(scenario)
        try prepare()
    }

    override func makeConnection() throws -> BackToBackEmbeddedChannel {
        let pair = BackToBackEmbeddedChannel()
        completed = nil
        try pair.client.pipeline.syncOperations.addHandler(GnuTLSHandler(context: clientContext, serverHostname: "localhost"))
        try pair.client.pipeline.syncOperations.addHandler(EventWatcher { [unowned self] event in
            if let event = event as? TLSHandshakeCompletedEvent { self.completed = event.info }
        })
        try pair.server.pipeline.syncOperations.addHandler(GnuTLSHandler(context: serverContext))
        return pair
    }

    override func checkHandshake(_ pair: BackToBackEmbeddedChannel, resumed: Bool) throws {
        guard let info = completed else { throw ScenarioError("GnuTLSHandler: the handshake did not finish") }
        if resumed && !info.isResumed { throw ScenarioError("GnuTLSHandler: the session was not resumed") }
    }
}
