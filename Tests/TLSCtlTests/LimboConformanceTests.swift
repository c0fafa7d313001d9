import Foundation
import Testing
import TestSupport

/// The x509-limbo conformance suite (`shared/conformance/limbo/`, a sibling of the package
/// checkout both on development machines and in CI) run against the built `tlsctl verify`,
/// so that CI keeps the verifier's conformance numbers.
enum LimboSuite {
    /// Where the driver is expected: `<package root>/../shared/conformance/limbo/limbo_run.py`,
    /// the package root found from this file's path (`Tests/TLSCtlTests/<file>`).
    static func driverPath(_ filePath: String = #filePath) -> String {
        let packageRoot = URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return packageRoot.deletingLastPathComponent()
            .appendingPathComponent("shared/conformance/limbo/limbo_run.py").standardizedFileURL.path
    }

    struct Missing: Error, CustomStringConvertible {
        var path: String
        var description: String {
            "the x509-limbo driver was not found at \(path): the shared/ directory must sit beside the package checkout (shared/conformance/limbo/limbo_run.py and limbo.json)"
        }
    }

    struct DriverFailed: Error, CustomStringConvertible {
        var result: ProcessResult
        var description: String { "the x509-limbo driver failed or wrote no results: \(result)" }
    }

    struct Run {
        var summary: [String: Int]
        /// `(id, outcome, last context line)` of every case.
        var cases: [(id: String, outcome: String, context: String)]
        var output: ProcessResult

        func ids(_ outcome: String) -> [String] { cases.filter { $0.outcome == outcome }.map(\.id) }
        func count(_ outcome: String) -> Int { summary[outcome] ?? -1 }
    }

    /// Runs the driver against `tlsctl verify` (plus `verifierOptions`) with `extra` driver
    /// options and reads its JSON results.
    static func run(_ extra: [String], verifierOptions: String = "") async throws -> Run {
        let driver = driverPath()
        guard FileManager.default.fileExists(atPath: driver) else { throw Missing(path: driver) }
        let tlsctl = BuiltProducts.tlsctl
        guard FileManager.default.isExecutableFile(atPath: tlsctl) else { throw TLSCtlNotBuilt(path: tlsctl) }
        let directory = try TemporaryDirectory(prefix: "limbo")
        defer { directory.remove() }
        let resultsPath = directory.file("r.json")
        // The driver splits --verifier with shlex: quote the binary's path. Its per-case
        // timeout is a hang detector: its default of 30 s was hit by the pathological cases
        // (0.6 s of CPU each under AddressSanitizer) on a machine whose CPU was saturated.
        let result = try await Tool.run(["python3", driver, "--verifier", "'\(tlsctl)' verify \(verifierOptions)", "--jobs", "2", "--timeout", "120",
                                         "--results", resultsPath] + extra,
                                  timeout: 900, environment: ChildLeakSuppressions.conformanceRunEnvironment, package: "python3")
        guard result.succeeded, let data = FileManager.default.contents(atPath: resultsPath),
              let document = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let summary = document["summary"] as? [String: Int], let results = document["results"] as? [[String: Any]] else {
            throw DriverFailed(result: result)
        }
        let cases = results.map { entry in
            (id: entry["id"] as? String ?? "?", outcome: entry["outcome"] as? String ?? "?",
             context: ((entry["context"] as? String) ?? "").split(separator: "\n").last.map(String.init) ?? "")
        }
        return Run(summary: summary, cases: cases, output: result)
    }
}

/// Issue 9: two profiles, each judged on its own namespace of all 208 cases (x509-limbo's
/// `rfc5280::` and `webpki::` cases conflict in places: ee-without-eku, ca-as-leaf,
/// non-critical name constraints).
@Suite("x509-limbo conformance of tlsctl verify", .serialized)
struct LimboConformanceTests {
    static func report(_ label: String, _ run: LimboSuite.Run) {
        print("limbo \(label): \(run.summary.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        for entry in run.cases where entry.outcome == "false-reject" || entry.outcome == "false-accept" {
            print("  \(entry.outcome): \(entry.id)  \(entry.context)")
        }
    }

    @Test("default profile (RFC 5280 + RFC 9525) on every case outside webpki::: no false accept, at most 2 false rejects, no harness error")
    func defaultProfile() async throws {
        let run = try await LimboSuite.run(["--exclude", "webpki::*"])
        Self.report("default --exclude 'webpki::*'", run)
        #expect(run.cases.count == run.summary.values.reduce(0, +), "\(run.summary)")
        #expect(run.cases.count > 100 && !run.cases.contains { $0.id.hasPrefix("webpki::") }, "\(run.summary)")
        #expect(run.count("agree-success") > 0 && run.count("agree-failure") > 0, "\(run.output)")
        #expect(run.count("false-accept") == 0, "false accepts: \(run.ids("false-accept"))\n\(run.output.standardOutput)")
        #expect(run.count("false-reject") <= 2, "false rejects: \(run.ids("false-reject"))")
        #expect(run.count("error") == 0, "errors: \(run.ids("error"))\n\(run.output.standardOutput)")
    }

    @Test("--web-pki on the webpki:: cases: no false accept, at most 2 false rejects, no harness error")
    func webPKIProfile() async throws {
        let run = try await LimboSuite.run(["--include", "webpki::*"], verifierOptions: "--web-pki")
        Self.report("--web-pki --include 'webpki::*'", run)
        #expect(run.cases.count == run.summary.values.reduce(0, +), "\(run.summary)")
        #expect(run.cases.count > 40 && run.cases.allSatisfy { $0.id.hasPrefix("webpki::") }, "\(run.summary)")
        #expect(run.count("agree-success") > 0 && run.count("agree-failure") > 0, "\(run.output)")
        #expect(run.count("false-accept") == 0, "false accepts: \(run.ids("false-accept"))\n\(run.output.standardOutput)")
        #expect(run.count("false-reject") <= 2, "false rejects: \(run.ids("false-reject"))")
        #expect(run.count("error") == 0, "errors: \(run.ids("error"))\n\(run.output.standardOutput)")
    }
}
