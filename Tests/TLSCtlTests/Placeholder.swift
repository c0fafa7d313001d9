import Testing
import TestSupport

@Test func tlsctlIsBuilt() throws {
    let result = try Tool.run([BuiltProducts.tlsctl], timeout: 30)
    #expect(result.exitCode == 0, "\(result)")
}
