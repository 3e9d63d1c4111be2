import BulwarkCore
@testable import BulwarkServer
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// OpenSCAP results posted to `POST /api/v1/findings` go through the same parser as `bulwark
/// ingest`: read as XCCDF by their XML content type or shape, and refused (nothing reaches the
/// daemon) when they declare a DTD.
@Suite(.serialized) struct XCCDFEndpointTests {
    static let results = """
        <?xml version="1.0" encoding="UTF-8"?>
        <TestResult xmlns="http://checklists.nist.gov/xccdf/1.2" id="xccdf_t_testresult_1" start-time="2026-11-30T10:00:00+00:00">
          <benchmark href="b.xml" id="xccdf_t_benchmark_B"/>
          <target>web-1</target>
          <rule-result idref="xccdf_org.ssgproject.content_rule_sshd_disable_root_login" severity="medium"><result>fail</result></rule-result>
          <rule-result idref="xccdf_org.ssgproject.content_rule_sshd_disable_empty_passwords" severity="high"><result>pass</result></rule-result>
        </TestResult>
        """

    func headers(_ type: String) -> HTTPFields { [.authorization: "Bearer \(StatusServerTests.token)", .contentType: type] }

    @Test func resultsAreReadAsXCCDFByContentTypeOrShape() async throws {
        let daemon = RecordingDaemon(bindings: [StatusServerTests.sshd])
        try await StatusServerTests().app(daemon).test(.router) { client in
            for type in ["application/xml", "text/xml; charset=utf-8", "application/octet-stream"] {
                try await client.execute(uri: "/api/v1/findings", method: .post, headers: headers(type),
                                         body: ByteBuffer(string: Self.results)) { response in
                    #expect(response.status == .accepted, "\(type)")
                    let answer = try StatusServerTests().json(response)
                    #expect(answer["format"] as? String == "xccdf" && answer["findings"] as? Int == 2, "\(type)")
                    // A rule result names a host, not a resource: no resource annotated with the rule here, nothing matched.
                    #expect(answer["matched"] as? Int == 0)
                }
            }
        }
        #expect(await daemon.received.count == 3)
    }

    @Test func aDocumentWithADTDIsRefusedAndNothingReachesTheDaemon() async throws {
        let daemon = RecordingDaemon(bindings: [StatusServerTests.sshd])
        let hostile = Self.results.replacingOccurrences(of: "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
                                                        with: "<?xml version=\"1.0\"?>\n<!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n")
            .replacingOccurrences(of: "<target>web-1</target>", with: "<target>&xxe;</target>")
        try await StatusServerTests().app(daemon).test(.router) { client in
            try await client.execute(uri: "/api/v1/findings", method: .post, headers: headers("application/xml"),
                                     body: ByteBuffer(string: hostile)) { response in
                #expect(response.status == .badRequest)
                let text = String(buffer: response.body)
                #expect(text.contains("declares a DTD") && !text.contains("root:"))
            }
        }
        #expect(await daemon.received.isEmpty)
    }

    /// A scan's results run to several MiB: a request that says XML and carries the bearer token
    /// may send up to 32 MiB. One signed as the webhook (checked only once the body is read), or
    /// one that says JSON, stays at 1 MiB: nothing reaches the daemon.
    @Test func largeResultsNeedTheBearerTokenAndAnXMLContentType() async throws {
        let padding = "<!-- " + String(repeating: "scan output ", count: 3 << 18) + "-->\n"
        let large = Self.results.replacingOccurrences(of: "  <target>web-1</target>\n", with: "  <target>web-1</target>\n" + padding)
        #expect(large.utf8.count > 3 << 20)
        let daemon = RecordingDaemon(bindings: [StatusServerTests.sshd])
        try await StatusServerTests().app(daemon).test(.router) { client in
            var signed = StatusServerTests().bulwarkSigned(Array(large.utf8), at: Int64(StatusServerTests.clockNow.timeIntervalSince1970),
                                                            secret: StatusServerTests.findingsSecret)
            signed[.contentType] = "application/xml"
            let hub = WebhookVerifier.signature(of: Array(large.utf8), secret: StatusServerTests.secret)
            // A wrong token, or a forge's signature, is refused on the headers, before the body is read.
            for (refused, status): (HTTPFields, HTTPResponse.Status) in [
                (signed, .contentTooLarge),
                ([HTTPField.Name("X-Hub-Signature-256")!: hub, .contentType: "application/xml"], .unauthorized),
                (headers("application/json"), .contentTooLarge),
                ([.authorization: "Bearer not-the-token", .contentType: "application/xml"], .unauthorized),
            ] {
                try await client.execute(uri: "/api/v1/findings", method: .post, headers: refused, body: ByteBuffer(string: large)) { response in
                    #expect(response.status == status, "\(refused)")
                }
            }
            try await client.execute(uri: "/api/v1/findings", method: .post, headers: headers("application/xml"),
                                     body: ByteBuffer(string: large)) { response in
                #expect(response.status == .accepted)
                let answer = try StatusServerTests().json(response)
                #expect(answer["findings"] as? Int == 2)
            }
        }
        #expect(await daemon.received.count == 1)
    }

    /// Large bodies are read a few at a time: while two are held, a third is turned away with
    /// 503 and Retry-After (nothing reaches the daemon); once they are done it goes through, and
    /// small documents are never held back.
    @Test func largeResultsAreReadAFewAtATime() async throws {
        let daemon = RecordingDaemon(bindings: [StatusServerTests.sshd])
        #expect(StatusServer.largeBodies.enter() && StatusServer.largeBodies.enter())
        try await StatusServerTests().app(daemon).test(.router) { client in
            try await client.execute(uri: "/api/v1/findings", method: .post, headers: headers("application/xml"),
                                     body: ByteBuffer(string: Self.results)) { response in
                #expect(response.status == .serviceUnavailable && response.headers[.retryAfter] == "5")
            }
            try await client.execute(uri: "/api/v1/findings", method: .post, headers: StatusServerTests().bearer(),
                                     body: ByteBuffer(string: StatusServerTests().finding)) { response in
                #expect(response.status == .accepted)
            }
            StatusServer.largeBodies.leave()
            StatusServer.largeBodies.leave()
            try await client.execute(uri: "/api/v1/findings", method: .post, headers: headers("application/xml"),
                                     body: ByteBuffer(string: Self.results)) { response in
                #expect(response.status == .accepted)
            }
        }
        #expect(await daemon.received.count == 2)
    }
}
