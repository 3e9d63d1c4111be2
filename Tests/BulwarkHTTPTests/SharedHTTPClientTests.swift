import BulwarkHTTP
import BulwarkTestSupport
import Foundation
import Testing

/// One shared HTTP client against a real server on the loopback: requests go out with their
/// headers and body, answers come back with their status, redirects are not followed, and a
/// shut-down client is replaced by a new one on the next use. Each test has its own client
/// (`HTTP.shared` is the process's, used by other suites at the same time).
@Suite struct SharedHTTPClientTests {
    /// Runs `body` with a new client and shuts it down whatever happens.
    func withClient(_ body: (SharedHTTPClient) async throws -> Void) async throws {
        let http = SharedHTTPClient()
        do {
            try await body(http)
        } catch {
            try await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    @Test func aPostReachesTheServerWithItsHeadersAndBodyAndItsStatusComesBack() async throws {
        let server = try TestHTTPServer(statuses: [503])
        defer { server.stop() }
        try await withClient { http in
            let refused = try await http.send("POST", server.url, headers: [("X-Bulwark-Delivery", "r-1")], body: Array("{}".utf8),
                                              timeout: .seconds(5))
            #expect(refused.status == 503)
            let taken = try await http.send("POST", server.url, headers: [("X-Bulwark-Delivery", "r-1")], body: Array("{}".utf8),
                                            timeout: .seconds(5))
            #expect(taken.status == 200)
        }
        let requests = server.requests
        #expect(requests.count == 2)
        #expect(requests.allSatisfy { $0.method == "POST" && $0.headers["x-bulwark-delivery"] == "r-1" && $0.body == Data("{}".utf8) })
    }

    @Test func aRedirectIsReturnedNotFollowed() async throws {
        let server = try TestHTTPServer(statuses: [307])
        defer { server.stop() }
        try await withClient { http in
            let answer = try await http.send("POST", server.url, body: Array("signed".utf8), timeout: .seconds(5))
            #expect(answer.status == 307)
        }
        #expect(server.requests.count == 1, "nothing followed the redirect")
    }

    @Test func aShutDownClientIsReplacedOnTheNextUseAndShutdownTwiceIsHarmless() async throws {
        let server = try TestHTTPServer()
        defer { server.stop() }
        try await withClient { http in
            #expect(!http.isRunning)
            _ = try await http.send("POST", server.url, timeout: .seconds(5))
            #expect(http.isRunning)
            try await http.shutdown()
            #expect(!http.isRunning)
            try await http.shutdown()
            let again = try await http.send("POST", server.url, timeout: .seconds(5))
            #expect(again.status == 200)
        }
        #expect(server.requests.count == 2)
    }

    @Test func anUnreachableEndpointFailsInsteadOfHanging() async throws {
        // Bound and not listening: connections are refused, and no other test's server takes the port.
        let refusing = try TestHTTPServer(listening: false)
        defer { refusing.stop() }
        try await withClient { http in
            await #expect(throws: (any Error).self) {
                _ = try await http.send("POST", refusing.url, timeout: .seconds(5))
            }
        }
    }
}
