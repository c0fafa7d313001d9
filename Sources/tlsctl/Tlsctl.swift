import ArgumentParser
import Foundation
import GnuTLS
import GnuTLSAuthority

/// `tlsctl`: keys, certificate requests and a small certificate authority on the command
/// line. Every action is a call into the `GnuTLS` library; this target never touches GnuTLS
/// itself.
///
/// Adding a command: write it in its own file (one file per command group) and list it in
/// ``subcommandList`` below, or, for a `ca` action, in `CACommand.subcommandList`.
@main
struct Tlsctl: AsyncParsableCommand {
    /// The top-level commands, in the order `--help` shows them. Add new groups here
    /// (`verify`, `connect`, `serve`, `ocsp`, `bench`, …).
    static let subcommandList: [any ParsableCommand.Type] = [
        KeyCommand.self,
        CSRCommand.self,
        CACommand.self,
        ShowCommand.self,
        VerifyCommand.self,
        ServeCommand.self,
        ConnectCommand.self,
        DemoCommand.self,
        OCSPCommand.self,
        BenchCommand.self,
    ]

    static let configuration = CommandConfiguration(
        commandName: "tlsctl",
        abstract: "Keys, certificate requests, a small certificate authority, and TLS servers and clients, on GnuTLS.",
        discussion: """
            Exit status: 0 on success; 1 when a request is refused by the authority's policy or \
            anything fails (the reason is printed on stderr); 64 for a usage error (an unknown \
            option or value, a missing required option).
            """,
        subcommands: subcommandList)

    /// Parses and runs the command like swift-argument-parser's own `main()`, but reports
    /// library errors (`GnuTLSError`, `IssuanceError`) as one line on stderr with exit
    /// code 1 instead of a Swift error dump.
    static func main() async {
        do {
            var command = try await asyncParseAsRoot(nil)
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            // `tlsctl verify` follows the x509-limbo verifier interface: an option it does
            // not understand is exit 2 ("cannot honour"), never swift-argument-parser's 64.
            if CommandLine.arguments.dropFirst().first == "verify", !(error is ExitCode), String(reflecting: type(of: error)).hasPrefix("ArgumentParser.") {
                let message = fullMessage(for: error)
                if !message.isEmpty { print(message) }
                Foundation.exit(exitCode(for: error) == .success ? 0 : 2)
            }
            exit(withError: Console.report(error))
        }
    }
}
