import Testing
import TestSupport

@Test func opensslIsInstalled() throws {
    let result = try Tool.run(["openssl", "version"], timeout: 30)
    #expect(result.succeeded, "\(result)")
}
