import Foundation

/// Wall-clock and thread-CPU time of a block.
public struct Measurement: Sendable {
    public var wallSeconds: Double
    public var cpuSeconds: Double

    public static func of(_ body: () throws -> Void) rethrows -> Measurement {
        let wall0 = DispatchTime.now().uptimeNanoseconds
        let cpu0 = threadCPUSeconds()
        try body()
        let cpu1 = threadCPUSeconds()
        let wall1 = DispatchTime.now().uptimeNanoseconds
        return Measurement(wallSeconds: Double(wall1 - wall0) / 1e9, cpuSeconds: cpu1 - cpu0)
    }
}

/// CPU time of the calling thread.
public func threadCPUSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

/// The middle value (the mean of the two middle ones for an even count).
public func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return .nan }
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}
