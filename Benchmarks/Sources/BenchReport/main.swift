import Foundation
import TLSScenarios

// Side by side: every scenario run by our engine pair, GnuTLSHandler, raw GnuTLS in C and
// swift-nio-ssl, interleaved repetition by repetition (the order rotating) so a noisy
// machine slows all alike. Rates are per CPU-second of the one thread that runs both peers.
//
//   swift run -c release BenchReport [--repetitions N] [--seconds S] [--filter TEXT] [--json]
//                                    [--loopback-connections N]
//
// Then the loopback scenarios: our TLSServer, swift-nio-ssl's server and a raw GnuTLS C server
// (one epoll thread) on 127.0.0.1, 1 and 8 connections in flight: connections/s and server
// CPU µs per connection (Loopback.swift). `--loopback-only IMPLEMENTATION` runs one server
// alone (for perf).

var repetitions = 7
var secondsPerRun = 0.2
var filter: String?
/// `--scenario NAME`: exactly that scenario (`--filter` matches a part of the name).
var exactScenario: String?
var json = false
// `--only IMPLEMENTATION --count N`: run one implementation N times untimed, for profilers
// (valgrind --tool=callgrind counts instructions; wall time means nothing there).
var only: Implementation?
var profileCount = 20
var loopbackConnections = 300
var loopbackOnly: LoopbackImplementation?
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--repetitions": repetitions = arguments.next().flatMap(Int.init) ?? repetitions
    case "--seconds": secondsPerRun = arguments.next().flatMap(Double.init) ?? secondsPerRun
    case "--filter": filter = arguments.next()
    case "--scenario": exactScenario = arguments.next()
    case "--json": json = true
    case "--only": only = arguments.next().flatMap(Implementation.init(rawValue:))
    case "--count": profileCount = arguments.next().flatMap(Int.init) ?? profileCount
    case "--loopback-connections": loopbackConnections = arguments.next().flatMap(Int.init) ?? loopbackConnections
    case "--loopback-only": loopbackOnly = arguments.next().flatMap(LoopbackImplementation.init(rawValue:))
    default:
        FileHandle.standardError.write(Data("usage: BenchReport [--repetitions N] [--seconds S] [--filter TEXT | --scenario NAME] [--json] [--loopback-connections N] [--loopback-only ours|nio-ssl|raw|handler] [--only ours|handler|raw|nio-ssl --count N]\n".utf8))
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

@MainActor func selected(_ name: String) -> Bool {
    (exactScenario.map { name == $0 } ?? true) && (filter.map { name.contains($0) } ?? true)
}

func log(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }

if let only {
    for scenario in Scenario.all where selected(scenario.name) {
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
for scenario in Scenario.all where selected(scenario.name) {
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

struct LoopbackRow: Codable {
    var scenario: String
    var inFlight: Int
    /// Median connections per wall-clock second, per implementation.
    var connectionsPerSecond: [String: Double]
    /// Median server CPU microseconds per connection, per implementation.
    var serverCPUMicrosecondsPerConnection: [String: Double]
    /// Median server context switches per connection, per implementation.
    var serverContextSwitchesPerConnection: [String: Double] = [:]
}

var loopbackRows: [LoopbackRow] = []
let loopbackScenarios = [1, 8].map { (name: "Loopback.TLS13.ECDSA-P256.InFlight\($0)", inFlight: $0) }
    .filter { scenario in loopbackConnections > 0 && selected(scenario.name) }
if !loopbackScenarios.isEmpty {
    var benches: [LoopbackBench] = []
    for implementation in LoopbackImplementation.allCases where loopbackOnly.map({ $0 == implementation }) ?? true {
        do {
            let bench = try LoopbackBench(implementation)
            _ = try bench.measure(connections: 20, inFlight: 2)  // warm up
            benches.append(bench)
        } catch {
            log("loopback \(implementation.rawValue): \(error)")
        }
    }
    for scenario in loopbackScenarios {
        var rates: [LoopbackImplementation: [Double]] = [:]
        var cpu: [LoopbackImplementation: [Double]] = [:]
        var switches: [LoopbackImplementation: [Double]] = [:]
        for repetition in 0..<repetitions {
            let order = benches.indices.map { benches[($0 + repetition) % benches.count] }
            for bench in order {
                do {
                    let measured = try bench.measure(connections: loopbackConnections, inFlight: scenario.inFlight)
                    rates[bench.implementation, default: []].append(measured.connectionsPerSecond)
                    cpu[bench.implementation, default: []].append(measured.serverCPUMicrosecondsPerConnection)
                    switches[bench.implementation, default: []].append(measured.serverContextSwitchesPerConnection)
                } catch {
                    log("\(scenario.name) \(bench.implementation.rawValue): \(error)")
                }
            }
        }
        var row = LoopbackRow(scenario: scenario.name, inFlight: scenario.inFlight, connectionsPerSecond: [:], serverCPUMicrosecondsPerConnection: [:])
        for (implementation, values) in rates { row.connectionsPerSecond[implementation.rawValue] = median(values) }
        for (implementation, values) in cpu { row.serverCPUMicrosecondsPerConnection[implementation.rawValue] = median(values) }
        for (implementation, values) in switches { row.serverContextSwitchesPerConnection[implementation.rawValue] = median(values) }
        loopbackRows.append(row)
        if !json { log("done: \(scenario.name)") }
    }
    for bench in benches {
        do { try bench.shutdown() } catch { log("loopback \(bench.implementation.rawValue): shutdown: \(error)") }
    }
}

struct Report: Codable {
    var inMemory: [Row]
    var loopback: [LoopbackRow]
}

if json {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(Report(inMemory: rows, loopback: loopbackRows)), as: UTF8.self))
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
    if !loopbackRows.isEmpty {
        print("")
        print("Loopback on 127.0.0.1 (TLS 1.3, ECDSA P-256, handshake + 4-byte echo + close per connection; medians of \(repetitions) interleaved runs of \(loopbackConnections) connections).")
        print("Server CPU (and context switches) are the process's minus the client event loops'. handler-only: GnuTLSHandler and an echo handler in a plain NIO pipeline, no async layer.")
        print("")
        print("| Scenario | ours conn/s | nio-ssl conn/s | raw GnuTLS (C) conn/s | ours/nio-ssl | ours/raw | ours server CPU µs/conn | nio-ssl server CPU µs/conn | raw server CPU µs/conn | ours/nio-ssl CPU | ours/raw CPU | handler-only server CPU µs/conn | server context switches/conn ours / nio-ssl / raw / handler-only |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for row in loopbackRows {
            func ratio(_ values: [String: Double], _ a: LoopbackImplementation, _ b: LoopbackImplementation) -> Double? {
                guard let x = values[a.rawValue], let y = values[b.rawValue] else { return nil }
                return x / y
            }
            let rates = row.connectionsPerSecond, cpu = row.serverCPUMicrosecondsPerConnection
            let cells = [row.scenario, format(rates["ours"]), format(rates["nio-ssl"]), format(rates["raw"]),
                         format(ratio(rates, .ours, .nioSSL), ratio: true), format(ratio(rates, .ours, .raw), ratio: true),
                         format(cpu["ours"]), format(cpu["nio-ssl"]), format(cpu["raw"]),
                         format(ratio(cpu, .ours, .nioSSL), ratio: true), format(ratio(cpu, .ours, .raw), ratio: true),
                         format(cpu["handler"]),
                         LoopbackImplementation.allCases.map { format(row.serverContextSwitchesPerConnection[$0.rawValue]) }.joined(separator: " / ")]
            print("| " + cells.joined(separator: " | ") + " |")
        }
    }
}
