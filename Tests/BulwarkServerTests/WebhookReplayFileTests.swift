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
            for hostile in ["garbage\n", "bulwark-webhook-replays 1", oversized,
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
            // Appended one line each, rewritten whole once it holds twice what is kept (+ 256).
            let lines = try read(dir + "/webhook-replays").split(separator: "\n")
            #expect(lines.count <= 1 + 2 * WebhookReplayGuard.forgeCapacity + 256, "\(lines.count) lines")
            let reread = verifier(dir, at: now)
            let (newest, newestBody) = hub(WebhookReplayGuard.forgeCapacity)
            #expect(reread.check(headers: newest, body: newestBody, now: now).refusal?.contains("replayed") == true)
            let (oldest, oldestBody) = hub(0)
            #expect(reread.check(headers: oldest, body: oldestBody, now: now) == .accepted, "forgotten first")
        }
    }

    /// Each delivery taken is one line appended (the file is not rewritten per request), and it
    /// is rewritten whole once it holds twice what is remembered: a signed request is answered
    /// after one short synced append, and the file stays bounded however long the daemon runs.
    @Test func eachDeliveryIsOneLineAppendedAndTheFileIsRewrittenWhenHalfOfItIsStale() throws {
        try withTemporaryFolder { dir in
            let start = Date(timeIntervalSince1970: 1_800_000_000)
            let file = dir + "/webhook-replays"
            let check = verifier(dir, at: start)
            let body = Array(#"{"ref":"refs/heads/main"}"#.utf8)
            let stamp = Int64(start.timeIntervalSince1970)
            #expect(check.check(headers: headers(body, at: stamp), body: body, now: start) == .accepted)
            let inode = try FileManager.default.attributesOfItem(atPath: file)[.systemFileNumber] as? Int
            for n in 1...300 {
                #expect(check.check(headers: headers(body, at: stamp + Int64(n)), body: body, now: start) == .accepted)
            }
            // The same file, one line longer per request.
            #expect(try FileManager.default.attributesOfItem(atPath: file)[.systemFileNumber] as? Int == inode)
            #expect(try read(file).split(separator: "\n").count == 302)
            // Ten minutes on, all of those have left the window: the file holds more than twice
            // what is remembered (+ 256 lines), so the next request rewrites it, and the ones after
            // it are appended again.
            let later = start.addingTimeInterval(1_000)
            var inodes: [Int?] = []
            for n in 0..<3 {
                #expect(check.check(headers: headers(body, at: stamp + 1_000 + Int64(n)), body: body, now: later) == .accepted)
                inodes.append(try FileManager.default.attributesOfItem(atPath: file)[.systemFileNumber] as? Int)
            }
            #expect(inodes[0] != inode && inodes[1] == inodes[0] && inodes[2] == inodes[0], "\(inode as Any) \(inodes)")
            let lines = try read(file).split(separator: "\n")
            #expect(lines.count == 4, "the header and the three taken since: \(lines)")
            #expect(!lines.contains { $0.hasPrefix("s \(stamp) ") }, "a signature out of the window survived the rewrite")
            // Read back by the next process: everything taken since is still refused.
            let reread = verifier(dir, at: later)
            for n in [0, 1, 2] {
                let replay = reread.check(headers: headers(body, at: stamp + 1_000 + Int64(n)), body: body, now: later)
                #expect(replay.refusal?.contains("replayed") == true, "\(n): \(replay)")
            }
        }
    }

    /// A last line without its line feed is one a kill cut short while appending it, before its
    /// request was answered: dropped (and logged), the lines before it kept, and the file rewritten
    /// whole by the next save so that nothing is appended onto the torn line.
    @Test func aLastLineCutShortByAKillIsDroppedAndTheRestKept() throws {
        try withTemporaryFolder { dir in
            let start = Date(timeIntervalSince1970: 1_800_000_000)
            let stamp = Int64(start.timeIntervalSince1970)
            let file = dir + "/webhook-replays"
            let body = Array(#"{"ref":"refs/heads/main"}"#.utf8)
            let first = verifier(dir, at: start)
            #expect(first.check(headers: headers(body, at: stamp), body: body, now: start) == .accepted)
            #expect(first.check(headers: headers(body, at: stamp + 1), body: body, now: start) == .accepted)
            // Cut the last line in half, as a kill during its write leaves it.
            let whole = try read(file)
            #expect(whole.hasSuffix("\n"))
            try write(file, String(whole.dropLast(40)))
            let second = verifier(dir, at: start)
            #expect(second.check(headers: headers(body, at: stamp), body: body, now: start).refusal?.contains("replayed") == true)
            // The one cut short was never answered: taken now, and the file is whole again.
            #expect(second.check(headers: headers(body, at: stamp + 1), body: body, now: start) == .accepted)
            let rewritten = try read(file)
            #expect(rewritten.hasSuffix("\n") && rewritten.split(separator: "\n").count == 3, "\(rewritten)")
            let third = verifier(dir, at: start)
            for n in [Int64(0), 1] {
                #expect(third.check(headers: headers(body, at: stamp + n), body: body, now: start).refusal?.contains("replayed") == true)
            }
        }
    }

    /// Bulwark signs "<timestamp>." + body with the webhook secret; GitHub signs the body alone
    /// with it. A captured Bulwark-signed request sent again as a GitHub delivery of that text
    /// is refused (it would verify, and forge deliveries carry no time), and nothing of it is
    /// remembered, so the file is still one the next start trusts; GitHub's own still go through.
    @Test func aBulwarkSignedRequestSentAgainAsAForgeDeliveryIsRefused() throws {
        try withTemporaryFolder { dir throws in
            let start = Date(timeIntervalSince1970: 1_800_000_000)
            let stamp = Int64(start.timeIntervalSince1970)
            let body = Array(#"{"ref":"refs/heads/main"}"#.utf8)
            let check = verifier(dir, at: start)
            let captured = headers(body, at: stamp)
            #expect(check.check(headers: captured, body: body, now: start) == .accepted)
            let resent = Array("\(stamp).".utf8) + body
            let asHub: HTTPFields = [HTTPField.Name("X-Hub-Signature-256")!: captured[HTTPField.Name("X-Bulwark-Signature-256")!]!]
            let refused = check.check(headers: asHub, body: resent, now: start)
            #expect(refused.refusal?.contains("digits and a dot") == true, "\(refused)")
            // Not remembered: the file holds the one signature, and a new start trusts it.
            #expect(try read(dir + "/webhook-replays").split(separator: "\n").count == 2)
            let restarted = verifier(dir, at: start)
            #expect(restarted.check(headers: headers(body, at: stamp + 1), body: body, now: start) == .accepted)
            // GitHub's own delivery goes through.
            let hub: HTTPFields = [HTTPField.Name("X-Hub-Signature-256")!: WebhookVerifier.signature(of: body, secret: Self.secret)]
            #expect(restarted.check(headers: hub, body: body, now: start) == .accepted)
        }
    }

    /// A signature is kept a minute past the window: the time check runs before the memory's
    /// lock is taken, so a replay that passed it just inside the window may reach the memory
    /// after a later request has pruned; it must still be found there.
    @Test func aSignatureIsRememberedAMinutePastTheWindow() throws {
        let guardMemory = WebhookReplayGuard()
        let stamp = 1_800_000_000.0
        #expect(guardMemory.admitSigned("sha256=aa", timestamp: stamp, now: stamp) == .accepted)
        // Another request, 30 s past the first one's window, prunes first.
        #expect(guardMemory.admitSigned("sha256=bb", timestamp: stamp + 330, now: stamp + 330) == .accepted)
        guard case .replayed = guardMemory.admitSigned("sha256=aa", timestamp: stamp, now: stamp + 300) else {
            Issue.record("a replay that passed the time check was taken after a prune")
            return
        }
        // Past the margin it is gone (the time check refuses it by then).
        #expect(guardMemory.admitSigned("sha256=cc", timestamp: stamp + 400, now: stamp + 400) == .accepted)
        #expect(guardMemory.count == 2)
    }
}
