import BulwarkTestSupport
import Foundation
import Testing

/// An origin that accepts a connection and never answers (a hung server, a proxy that swallows
/// the request): the connection is closed once nothing went either way on it for
/// `BULWARK_ORIGIN_IDLE_TIMEOUT` seconds, and the command fails saying so, over http, https and
/// ssh alike. Before, `plan` sat silent for as long as it was let (outside review: 400 s over
/// http, the same over ssh), and the first SIGTERM did not end it.
@Suite struct OriginTimeoutTests {
    @Test func anOriginThatNeverAnswersIsGivenUpAfterTheIdleTimeout() async throws {
        try await withTemporaryDirectory { dir in
            let listener = try SilentListener()
            defer { listener.close() }
            for url in ["http://127.0.0.1:\(listener.port)/policy.git", "https://127.0.0.1:\(listener.port)/policy.git",
                        "ssh://git@127.0.0.1:\(listener.port)/policy.git"] {
                let started = ContinuousClock.now
                let result = try run(try bulwarkExecutable(), ["plan", "--repo", url, "--state-dir", dir + "/state-\(UUID().uuidString)"],
                                     environment: ["BULWARK_ORIGIN_IDLE_TIMEOUT": "2"])
                let took = ContinuousClock.now - started
                #expect(result.status == 1, "\(url): \(result.stderr)")
                #expect(result.stderr.contains("sent and took nothing for 2 s"), "\(url): \(result.stderr)")
                #expect(result.stderr.contains("BULWARK_ORIGIN_IDLE_TIMEOUT"), "\(url): \(result.stderr)")
                #expect(took < .seconds(60), "\(url): gave up after \(took), not at once nor never")
            }
        }
    }
}

/// A loopback port that takes connections (the kernel completes them: `listen`) and never
/// reads or answers; closed by `close`.
final class SilentListener {
    let fd: Int32
    let port: UInt16

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard fd >= 0, bound == 0, listen(fd, 16) == 0 else { throw SupportError("cannot listen on loopback") }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        port = UInt16(bigEndian: address.sin_port)
    }

    func close() { _ = Glibc.close(fd) }
}
