@testable import BulwarkServer
import Foundation
import HTTPTypes
import Logging
import Testing

/// The replay memory in the state directory (`webhook-replays`), on real files: what one process
/// took, the next refuses; a file it cannot trust fails closed for exactly the window it could
/// have covered, then heals; the forges' deliveries are bounded by count.
@Suite struct WebhookReplayFileTests {
    static let secret = Array("webhook-secret-for-the-file-tests".utf8)

    func headers(_ body: [UInt8], at timestamp: Int64) -> HTTPFields {
        [HTTPField.Name("X-Bulwark-Signature-256")!: WebhookVerifier.signature(of: body, timestamp: timestamp, secret: Self.secret),
         HTTPField.Name(WebhookVerifier.timestampHeader)!: String(timestamp)]
    }

    /// A new folder for the test, removed after it.
    func withTemporaryFolder(_ body: (String) throws -> Void) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bulwark-replays-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try body(dir)
    }

    func write(_ path: String, _ text: String) throws { try Data(text.utf8).write(to: URL(fileURLWithPath: path)) }
    func read(_ path: String) throws -> String { try String(contentsOfFile: path, encoding: .utf8) }

    func verifier(_ folder: String, at now: Date) -> WebhookVerifier {
        WebhookVerifier(secret: Self.secret, replays: WebhookReplayGuard(stateDirectory: folder, logger: Logger(label: "test"), now: now))
    }

    @Test func aFileItCannotTrustRefusesSignedRequestsForTheWindowItCouldCoverThenHeals() throws {
        try withTemporaryFolder { dir in
            let start = Date(timeIntervalSince1970: 1_800_000_000)
            let body = Array(#"{"ref":"refs/heads/main"}"#.utf8)
            let file = dir + "/webhook-replays"
            let oversized = "bulwark-webhook-replays 1\n" + String(repeating: "s 1800000000 " + String(repeating: "a", count: 64) + "\n", count: 30_000)
            for hostile in ["garbage\n", "bulwark-webhook-replays 1\ns 1800000000 \(String(repeating: "a", count: 64))", oversized,
                            "bulwark-webhook-replays 2\n", "bulwark-webhook-replays 1\nx 1 \(String(repeating: "a", count: 64))\n"] {
                try write(file, hostile)
                let stamp = Int64(start.timeIntervalSince1970)
                let first = verifier(dir, at: start)
                guard case .unavailable(let why) = first.check(headers: headers(body, at: stamp), body: body, now: start) else {
                    Issue.record("taken despite an untrusted file: \(hostile.prefix(40))")
                    continue
                }
                #expect(why.contains("could not be read at a start"), "\(why)")
                // Stamped before start + 300 s: still refused at any time.
                let edge = start.addingTimeInterval(301)
                #expect(first.check(headers: headers(body, at: stamp + 299), body: body, now: edge) != .accepted)
                // Stamped after it: taken, and the file is whole again.
                #expect(first.check(headers: headers(body, at: stamp + 301), body: body, now: edge) == .accepted)
                let reread = verifier(dir, at: edge)
                guard case .replayed = reread.check(headers: headers(body, at: stamp + 301), body: body, now: edge) else {
                    Issue.record("the rewritten file did not remember what was taken")
                    continue
                }
                #expect(reread.check(headers: headers(body, at: stamp + 302), body: body, now: edge) == .accepted)
                // Started again with the rewritten file: what the lost one could have held is still refused.
                #expect(reread.check(headers: headers(body, at: stamp + 298), body: body, now: edge) != .accepted)
                // Once no such timestamp passes the time check, the bound is dropped from the file.
                let later = start.addingTimeInterval(700)
                #expect(verifier(dir, at: later).check(headers: headers(body, at: stamp + 700), body: body, now: later) == .accepted)
                #expect(try !read(file).contains("\nu "))
            }
        }
    }

    /// The forges' deliveries carry no time: the last 1,000 are kept, the oldest forgotten first,
    /// and the file never holds more; each one taken is refused once more only while it is kept.
    @Test func forgeDeliveriesAreKeptByCountAndTheFileStaysBounded() throws {
        try withTemporaryFolder { dir in
            let now = Date(timeIntervalSince1970: 1_800_000_000)
            let check = verifier(dir, at: now)
            func hub(_ n: Int) -> (HTTPFields, [UInt8]) {
                let body = Array(#"{"after":"\#(n)"}"#.utf8)
                return ([HTTPField.Name("X-Hub-Signature-256")!: WebhookVerifier.signature(of: body, secret: Self.secret)], body)
            }
            for n in 0...WebhookReplayGuard.forgeCapacity {
                let (fields, body) = hub(n)
                #expect(check.check(headers: fields, body: body, now: now) == .accepted)
            }
            let lines = try read(dir + "/webhook-replays").split(separator: "\n")
            #expect(lines.count == 1 + WebhookReplayGuard.forgeCapacity, "the header and the last 1,000")
            let reread = verifier(dir, at: now)
            let (newest, newestBody) = hub(WebhookReplayGuard.forgeCapacity)
            #expect(reread.check(headers: newest, body: newestBody, now: now).refusal?.contains("replayed") == true)
            let (oldest, oldestBody) = hub(0)
            #expect(reread.check(headers: oldest, body: oldestBody, now: now) == .accepted, "forgotten first")
        }
    }
}
