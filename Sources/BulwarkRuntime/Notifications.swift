package import BulwarkCore
internal import BulwarkHTTP
import BulwarkServer
package import Foundation
internal import Glibc
internal import CDispatch

/// Announcements of decisions, delivered from an outbox in the state directory.
///
/// A notification is written to the outbox when its record is committed, so each decision is
/// announced once and none is lost when the receiver is down: delivery retries with backoff
/// while the pass runs, never blocking it, and whatever is left is retried by the next run.
package actor Outbox {
    package struct Entry: Codable, Sendable {
        package var notifier: String
        package var recordID: String
        package var body: Data
        package var createdAt: Date
        package var attempts: Int
    }

    package struct Delivery: Sendable {
        package var delivered = 0
        /// Left in the outbox after the latest round.
        package var pending = 0
        package var errors: [String] = []

        package init() {}

        package mutating func add(_ round: Delivery) {
            delivered += round.delivered
            pending = round.pending
            errors += round.errors
        }
    }

    /// Between delivery rounds: 250 ms doubling up to 8 s, until the caller's deadline.
    static let retry = RetryPolicy(base: .milliseconds(250), cap: .seconds(8))

    package nonisolated let folder: String
    private let notifiers: [String: NotifierConfig]
    private let environment: [String: String]

    package init(stateDirectory: String, notifiers: [NotifierConfig],
         environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        folder = stateDirectory + "/outbox"
        // Private, as the state directory is: an entry holds a record's summary and its notifier's body.
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        // One an earlier version made 0755 is closed too (through the folder itself, no link followed).
        let fd = open(folder, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd >= 0 {
            var info = stat()
            if fstat(fd, &info) == 0, info.st_uid == geteuid(), info.st_mode & 0o077 != 0 { _ = fchmod(fd, 0o700) }
            close(fd)
        }
        self.notifiers = Dictionary(notifiers.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        self.environment = environment
    }

    /// Writes the notifications a committed record calls for; returns how many.
    package nonisolated static func enqueue(_ record: AuditRecord, commit: String?, notifiers: [NotifierConfig], folder: String) -> Int {
        var count = 0
        for notifier in notifiers where notifier.announces(record) {
            let entry = Entry(notifier: notifier.name, recordID: record.id,
                              body: Data(notifier.body(for: record, commit: commit)), createdAt: Date(), attempts: 0)
            if enqueue(entry, folder: folder) { count += 1 }
        }
        return count
    }

    /// Writes one entry into the outbox as `<recordID>.<notifier>.json`, durably and once: the
    /// bytes go to a temporary file that is synced, then linked under the entry's name (which
    /// fails when an entry of that name is there already: it is never replaced), and the folder
    /// is synced, so that an entry reported written survives a crash. Returns whether it was written.
    package nonisolated static func enqueue(_ entry: Entry, folder: String) -> Bool {
        let path = "\(folder)/\(entry.recordID).\(entry.notifier).json"
        guard !FileManager.default.fileExists(atPath: path), let data = try? JSONEncoder().encode(entry) else { return false }
        let temporary = path + ".tmp-\(getpid())-\(UInt32.random(in: .min ... .max))"
        guard writeSynced(temporary, Array(data)) else { return false }
        defer { unlink(temporary) }
        guard link(temporary, path) == 0 else { return false }
        syncFolder(folder)
        return true
    }

    /// Creates `path` (mode 0600, never through a link) holding `bytes`, synced; false when it cannot.
    nonisolated static func writeSynced(_ path: String, _ bytes: [UInt8], exclusive: Bool = false) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | (exclusive ? O_EXCL : O_TRUNC) | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { return false }
        guard Descriptor.writeAll(fd, bytes) else {
            close(fd)
            unlink(path)
            return false
        }
        let synced = fsync(fd) == 0
        close(fd)
        if !synced { unlink(path) }
        return synced
    }

    /// Syncs a folder, so that the names created in it survive a crash.
    nonisolated static func syncFolder(_ folder: String) {
        let fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }

    /// Delivers everything in the outbox, retrying each failed delivery with exponential
    /// backoff until `deadline`. Delivered entries are removed; the rest stay for the next run.
    package func deliver(until deadline: ContinuousClock.Instant) async -> Delivery {
        var result = Delivery()
        var round = 0
        while true {
            round += 1
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
                .filter { $0.hasSuffix(".json") }.sorted()
            var failed = false
            // A receiver that cannot be reached is not tried again in this round: the client keeps
            // trying to connect for seconds, and every other entry for it would wait as long.
            var unreachable: Set<String> = []
            for name in names {
                let path = folder + "/" + name
                guard let data = FileManager.default.contents(atPath: path),
                      var entry = try? JSONDecoder().decode(Entry.self, from: data) else { continue }
                guard let notifier = notifiers[entry.notifier] else {
                    // The notifier was removed from the policy: nothing to deliver to.
                    try? FileManager.default.removeItem(atPath: path)
                    continue
                }
                guard !unreachable.contains(notifier.name) else { continue }
                do {
                    try await send(entry, with: notifier)
                    try? FileManager.default.removeItem(atPath: path)
                    result.delivered += 1
                } catch {
                    if !(error is CommandError) { unreachable.insert(notifier.name) }
                    entry.attempts += 1
                    // Rewritten as it was written: 0600, synced, never through a link (never 0644).
                    if let data = try? JSONEncoder().encode(entry) { try? StateFile.replace(path, with: Array(data), durability: .synced) }
                    // A failed request's error names its URL, token and all: redacted here, once.
                    result.errors.append(Redaction.urls(in: "\(entry.notifier) \(entry.recordID): \(error)"))
                    failed = true
                }
            }
            guard failed, let delay = Self.retry.nextDelay(afterFailure: round, at: .now, deadline: deadline) else { break }
            try? await Task.sleep(for: delay)
        }
        result.pending = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".json") }.count
        return result
    }

    private func send(_ entry: Entry, with notifier: NotifierConfig) async throws {
        let text = try notifier.url.value(environment: environment)
        // Checked when the policy loads for an inline URL; here for one from urlEnv or urlFile.
        // The message names where the notifier is, never the URL (which is its credential).
        if let problem = NotifierConfig.transportProblem(text) {
            throw CommandError("notifier \(notifier.name) (\(notifier.location)): \(problem); nothing was sent")
        }
        guard let url = URL(string: text), url.host?.isEmpty == false else {
            throw CommandError("notifier \(notifier.name) has no valid http(s) URL")
        }
        var headers = [("Content-Type", "application/json"), ("User-Agent", "bulwark/0.1"), ("X-Bulwark-Delivery", entry.recordID)]
        if let secret = notifier.secret {
            let signature = WebhookVerifier.signature(of: Array(entry.body), secret: Array(try secret.value(environment: environment).utf8))
            headers.append(("X-Bulwark-Signature-256", signature))
        }
        // The shared client (one for the process); the receiver's answer body is not needed.
        let response = try await HTTP.send("POST", url.absoluteString, headers: headers, body: Array(entry.body),
                                           timeout: .seconds(5), maxBody: 64 << 10)
        guard (200..<300).contains(response.status) else {
            throw CommandError("HTTP \(response.status)")
        }
    }
}
