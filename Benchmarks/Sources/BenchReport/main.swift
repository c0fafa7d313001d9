import Foundation
import TLSScenarios

// Side by side: every scenario run by our engine pair, GnuTLSHandler, raw GnuTLS in C and
// swift-nio-ssl, interleaved repetition by repetition (the order rotating) so a noisy
// machine slows all alike. Rates are per CPU-second of the one thread that runs both peers.
//
//   swift run -c release BenchReport [--repetitions N] [--seconds S] [--filter TEXT] [--json]

var repetitions = 7
var secondsPerRun = 0.2
var filter: String?
var json = false
// `--only IMPLEMENTATION --count N`: run one implementation N times untimed, for profilers
// (valgrind --tool=callgrind counts instructions; wall time means nothing there).
var only: Implementation?
var profileCount = 20
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--repetitions": repetitions = arguments.next().flatMap(Int.init) ?? repetitions
    case "--seconds": secondsPerRun = arguments.next().flatMap(Double.init) ?? secondsPerRun
    case "--filter": filter = arguments.next()
    case "--json": json = true
    case "--only": only = arguments.next().flatMap(Implementation.init(rawValue:))
    case "--count": profileCount = arguments.next().flatMap(Int.init) ?? profileCount
    default:
        FileHandle.standardError.write(Data("usage: BenchReport [--repetitions N] [--seconds S] [--filter TEXT] [--json] [--only ours|handler|raw|nio-ssl --count N]\n".utf8))
        exit(2)
    }
}

struct Row: Codable {
    var scenario: String
    var unit: String
    /// Median rate per implementation (handshakes or MB per CPU-second).
    var rates: [String: Double]
    /// Median wall-clock rate per implementation.
    var wallRates: [String: Double]
    var oursOverRaw: Double?
    var handlerOverRaw: Double?
    var oursOverNIOSSL: Double?
    var handlerOverNIOSSL: Double?
}

func log(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }

if let only {
    for scenario in Scenario.all where filter.map({ scenario.name.contains($0) }) ?? true {
        do {
            guard let runner = try makeRunner(only, scenario) else { continue }
            try runner.run()
            for _ in 0..<profileCount { try runner.run() }
            log("\(scenario.name) \(only.rawValue): \(profileCount) runs")
        } catch {
            log("\(scenario.name) \(only.rawValue): \(error)")
            exit(1)
        }
    }
    exit(0)
}

var rows: [Row] = []
for scenario in Scenario.all where filter.map({ scenario.name.contains($0) }) ?? true {
    var runners: [(Implementation, any ScenarioRunner)] = []
    for implementation in Implementation.allCases {
        do {
            if let runner = try makeRunner(implementation, scenario) { runners.append((implementation, runner)) }
        } catch {
            log("\(scenario.name) \(implementation.rawValue): \(error)")
        }
    }
    // Warm up and calibrate: how many runs fill `secondsPerRun`.
    var iterations: [Implementation: Int] = [:]
    for (implementation, runner) in runners {
        do {
            try runner.run()
            let once = try Measurement.of { for _ in 0..<3 { try runner.run() } }
            iterations[implementation] = max(1, Int(secondsPerRun / max(once.cpuSeconds / 3, 1e-7)))
        } catch {
            log("\(scenario.name) \(implementation.rawValue): \(error)")
        }
    }
    runners.removeAll { iterations[$0.0] == nil }
    var cpuRates: [Implementation: [Double]] = [:]
    var wallRates: [Implementation: [Double]] = [:]
    let scale = scenario.unitsPerRun > 1 ? scenario.unitsPerRun / 1e6 : 1
    for repetition in 0..<repetitions {
        let order = runners.indices.map { runners[($0 + repetition) % runners.count] }
        for (implementation, runner) in order {
            let count = iterations[implementation] ?? 1
            do {
                let measured = try Measurement.of { for _ in 0..<count { try runner.run() } }
                cpuRates[implementation, default: []].append(Double(count) * scale / measured.cpuSeconds)
                wallRates[implementation, default: []].append(Double(count) * scale / measured.wallSeconds)
            } catch {
                log("\(scenario.name) \(implementation.rawValue): \(error)")
            }
        }
    }
    var row = Row(scenario: scenario.name, unit: scale == 1 ? "handshakes/s" : "MB/s", rates: [:], wallRates: [:])
    for (implementation, values) in cpuRates { row.rates[implementation.rawValue] = median(values) }
    for (implementation, values) in wallRates { row.wallRates[implementation.rawValue] = median(values) }
    func ratio(_ a: Implementation, _ b: Implementation) -> Double? {
        guard let x = row.rates[a.rawValue], let y = row.rates[b.rawValue] else { return nil }
        return x / y
    }
    row.oursOverRaw = ratio(.ours, .raw)
    row.handlerOverRaw = ratio(.handler, .raw)
    row.oursOverNIOSSL = ratio(.ours, .nioSSL)
    row.handlerOverNIOSSL = ratio(.handler, .nioSSL)
    rows.append(row)
    if !json { log("done: \(scenario.name)") }
}

if json {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(rows), as: UTF8.self))
} else {
    func format(_ value: Double?, ratio: Bool = false) -> String {
        guard let value, value.isFinite else { return "n/a" }
        return ratio ? String(format: "%.2fx", value) : String(format: value >= 100 ? "%.0f" : "%.1f", value)
    }
    print("Rates per CPU-second (medians of \(repetitions) interleaved repetitions); both peers in one thread.")
    print("")
    print("| Scenario | unit | ours (engine) | GnuTLSHandler | raw GnuTLS (C) | swift-nio-ssl | ours/raw | handler/raw | ours/nio-ssl | handler/nio-ssl |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows {
        let cells = [row.scenario, row.unit,
                     format(row.rates["ours"]), format(row.rates["handler"]), format(row.rates["raw"]), format(row.rates["nio-ssl"]),
                     format(row.oursOverRaw, ratio: true), format(row.handlerOverRaw, ratio: true),
                     format(row.oursOverNIOSSL, ratio: true), format(row.handlerOverNIOSSL, ratio: true)]
        print("| " + cells.joined(separator: " | ") + " |")
    }
}
