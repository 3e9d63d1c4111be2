import BulwarkCore
internal import BulwarkHTTP
internal import BulwarkServer
import Foundation
package import Logging
internal import Synchronization

/// Push webhooks fanned out to a fleet's agents: a forge sends its webhook to one Bulwark
/// process (`run --webhook-relay-file FILE`), which verifies it as always, fetches, and, when
/// its fetch put a new revision in force, posts the same body to every agent URL listed in FILE,
/// signed with the same secret over a timestamp and the body (`X-Bulwark-Timestamp`,
/// `X-Bulwark-Signature-256`, which every agent's `POST /hooks/git` verifies, within ±5 minutes
/// and once) and marked `X-Bulwark-Relayed: 1`. An agent fetches at once, as for the forge's own webhook.
///
/// - Only a move is relayed: a webhook after which the relay's policy branch is where it was at
///   the last fan-out (a push to another branch, an agent's audit ref, a forge webhook replayed)
///   costs the relay one `ls-remote` and the agents nothing.
/// - A captured relayed webhook cannot be replayed: its timestamp is signed, an agent takes it
///   only within ±5 minutes of its own clock and only once.
/// - A relayed webhook is never relayed again, so a list that names the relay itself, or two
///   relays that name each other, cannot loop.
/// - One fan-out at a time: webhooks that arrive meanwhile are merged into one more fan-out after
///   it (the newest body), so a burst of pushes, or someone replaying a signed webhook, costs at
///   most one request per agent in flight, never one per webhook per agent.
/// - Each delivery has a short timeout and no retry: an agent that misses one still polls
///   (`--poll`, jittered); the relay only makes the common case fast.
/// - The list is read again for each fan-out (configuration management can rewrite it without a
///   restart), bounded to 100,000 URLs; a line that is not an http(s) URL is skipped and logged.
package final class WebhookRelay: Sendable {
    package static let relayedHeader = "X-Bulwark-Relayed"
    package static let maxAgents = 100_000
    static let maxFileSize = 16 << 20

    let file: String
    let secret: [UInt8]
    let concurrency: Int
    let timeout: Duration

    private struct State {
        var running = false
        var pending: [UInt8]?
        /// A verified webhook waiting for the relay's next fetch to start.
        var waiting: [UInt8]?
        /// The webhook that arrived before the running fetch started: that fetch says whether it moved the branch.
        var covered: [UInt8]?
        /// The revision the last fan-out announced (at start, the first one in force).
        var announced: String?
        /// The last timestamp signed: each fan-out signs a later one, so no two share a signature.
        var lastTimestamp: Int64 = 0
        /// The fan-outs in flight (`finish` waits for them).
        var drain: Task<Void, Never>?
    }
    private let state = Mutex(State())

    /// Checks the list once (it must be readable and name at least one valid URL), so that a wrong
    /// path fails at start rather than at the first push.
    /// How long a relay waits for each agent's answer unless told otherwise.
    package static let defaultTimeout: Duration = .seconds(5)

    package init(file: String, secret: [UInt8], concurrency: Int = 32, timeout: Duration = defaultTimeout) throws {
        self.file = file
        self.secret = secret
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        let (urls, skipped) = try agents()
        if let first = skipped.first { throw CommandError("\(file): \(first)") }
        guard !urls.isEmpty else { throw CommandError("\(file) names no agent URL (one http(s)://HOST:PORT/hooks/git a line)") }
    }

    /// The agent URLs of the list, and the lines skipped with why.
    package func agents() throws -> (urls: [String], skipped: [String]) {
        let size: Int
        do {
            size = (try FileManager.default.attributesOfItem(atPath: file)[.size] as? NSNumber)?.intValue ?? Int.max
        } catch {
            throw CommandError("cannot read the webhook relay list \(file): \(error.localizedDescription)")
        }
        guard size <= Self.maxFileSize else { throw CommandError("the webhook relay list \(file) is over \(Self.maxFileSize >> 20) MiB") }
        guard let data = FileManager.default.contents(atPath: file) else { throw CommandError("cannot read the webhook relay list \(file)") }
        var urls: [String] = []
        var skipped: [String] = []
        for (index, raw) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let url = URL(string: line), url.scheme == "http" || url.scheme == "https", url.host?.isEmpty == false,
                  !line.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                skipped.append("line \(index + 1) is not an http(s) URL")
                continue
            }
            guard urls.count < Self.maxAgents else {
                skipped.append("more than \(Self.maxAgents) URLs; the rest are not relayed to")
                break
            }
            urls.append(line)
        }
        return (urls, skipped)
    }

    /// A verified webhook (not itself relayed) arrived: it is relayed after the relay's own fetch,
    /// if that fetch moved the revision (`sourceChecked`).
    package func webhookArrived(_ body: [UInt8]) {
        state.withLock { $0.waiting = body }
    }

    /// The relay's fetch starts: it answers for the webhooks that arrived before it (one that
    /// arrives during it waits for the next fetch, which its arrival asked for).
    package func fetchStarting() {
        state.withLock { state in
            guard let waiting = state.waiting else { return }
            state.covered = waiting
            state.waiting = nil
        }
    }

    /// The relay's fetch is done and `head` is the revision in force: relays the webhook it
    /// answers for if the revision is not the one the last fan-out announced; else drops it.
    package func sourceChecked(head: String?, logger: Logger) {
        let (body, dropped) = state.withLock { state -> ([UInt8]?, Bool) in
            guard let covered = state.covered else {
                if state.announced == nil { state.announced = head }
                return (nil, false)
            }
            state.covered = nil
            guard let head, head != state.announced else { return (nil, true) }
            state.announced = head
            return (covered, false)
        }
        if let body {
            relay(body, logger: logger)
        } else if dropped {
            logger.info("webhook not relayed: the revision in force is the one the last fan-out announced",
                        metadata: ["revision": .string(head.map { String($0.prefix(12)) } ?? "none")])
        }
    }

    /// Relays a verified webhook's body (not itself relayed) in the background; see the type.
    package func relay(_ body: [UInt8], logger: Logger) {
        let start = state.withLock { state in
            if state.running {
                state.pending = body
                return false
            }
            state.running = true
            return true
        }
        guard start else { return }
        let drain = Task.detached { await self.drain(body, logger: logger) }
        state.withLock { $0.drain = drain }
    }

    /// Waits for the fan-out in flight, if any (SIGTERM): the agents still hear of the push the
    /// relay took before it stopped. Each delivery has its timeout, and the process's shutdown
    /// watchdog bounds the whole.
    package func finish() async {
        await state.withLock { $0.drain }?.value
    }

    private func drain(_ first: [UInt8], logger: Logger) async {
        var body = first
        while true {
            let outcome = await fanOut(body)
            var metadata: Logger.Metadata = ["delivered": .stringConvertible(outcome.delivered), "failed": .stringConvertible(outcome.failed.count)]
            if !outcome.failed.isEmpty { metadata["failures"] = .string(outcome.failed.prefix(5).joined(separator: "; ")) }
            if outcome.failed.isEmpty { logger.info("webhook relayed", metadata: metadata) } else { logger.warning("webhook relayed", metadata: metadata) }
            let next = state.withLock { state -> [UInt8]? in
                guard let pending = state.pending else {
                    state.running = false
                    return nil
                }
                state.pending = nil
                return pending
            }
            guard let next else { return }
            body = next
        }
    }

    /// Posts `body` to every agent of the list, at most `concurrency` at once. Returns how many
    /// answered 2xx, and the others with why (URLs redacted).
    package func fanOut(_ body: [UInt8]) async -> (delivered: Int, failed: [String]) {
        let urls: [String]
        var failed: [String]
        do {
            let list = try agents()
            urls = list.urls
            failed = list.skipped
        } catch {
            return (0, ["\(error)"])
        }
        let timestamp = state.withLock { state -> Int64 in
            state.lastTimestamp = max(Int64(Date().timeIntervalSince1970), state.lastTimestamp + 1)
            return state.lastTimestamp
        }
        let headers = [("Content-Type", "application/json"), ("User-Agent", "bulwark/0.1"),
                       (WebhookVerifier.timestampHeader, String(timestamp)),
                       ("X-Bulwark-Signature-256", WebhookVerifier.signature(of: body, timestamp: timestamp, secret: secret)),
                       (Self.relayedHeader, "1")]
        let timeout = timeout
        var delivered = 0
        await withTaskGroup(of: String?.self) { group in
            var queue = urls[...]
            func startNext() {
                guard let url = queue.popFirst() else { return }
                group.addTask {
                    do {
                        let response = try await HTTP.send("POST", url, headers: headers, body: body, timeout: timeout, maxBody: 64 << 10)
                        return (200..<300).contains(response.status) ? nil : Redaction.urls(in: "\(url): HTTP \(response.status)")
                    } catch {
                        return Redaction.urls(in: "\(url): \(error)")
                    }
                }
            }
            for _ in 0..<concurrency { startNext() }
            while let result = await group.next() {
                if let result { failed.append(result) } else { delivered += 1 }
                startNext()
            }
        }
        return (delivered, failed)
    }
}
