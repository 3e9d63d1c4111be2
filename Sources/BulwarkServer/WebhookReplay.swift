internal import BulwarkCore
internal import Crypto
internal import Glibc
internal import Synchronization
public import Foundation
public import Logging

/// Bulwark's own webhook signature is over a timestamp and the body, so that a captured one
/// cannot be replayed: `X-Bulwark-Timestamp: <Unix seconds>` and
/// `X-Bulwark-Signature-256: sha256=<hex HMAC-SHA256 of "<timestamp>." + body>`. A receiver takes
/// it only within `window` of its own wall clock, and only once (`WebhookReplayGuard`).
extension WebhookVerifier {
    public static let timestampHeader = "X-Bulwark-Timestamp"
    /// How far a signed timestamp may be from the receiver's wall clock, either way: 5 minutes.
    /// Relay and agents are NTP-synchronised hosts, normally within a second of each other, and a
    /// delivery gets 5 s; 5 minutes leaves room for a host whose clock has drifted without making
    /// the replay memory (everything accepted within twice the window) large.
    public static let window: Double = 300

    /// `sha256=<hex HMAC-SHA256 of "<timestamp>." + body>`, as `X-Bulwark-Signature-256` carries it
    /// with `X-Bulwark-Timestamp: <timestamp>`.
    public static func signature(of body: [UInt8], timestamp: Int64, secret: [UInt8]) -> String {
        signature(of: Array("\(timestamp).".utf8) + body, secret: secret)
    }

    /// `X-Bulwark-Timestamp` as Unix seconds: 1 to 12 digits, nothing else.
    static func seconds(_ timestamp: String) -> Int64? {
        guard (1...12).contains(timestamp.utf8.count), timestamp.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        return Int64(timestamp)
    }

    /// Whether a Bulwark-signed request (`X-Bulwark-Signature-256: value`) is authentic, fresh
    /// and not seen before. The signature is checked before the time, so a sender without the
    /// secret learns nothing of the receiver's clock or memory.
    func bulwarkCheck(_ value: String, timestamp: String?, body: [UInt8], now: Date) -> WebhookCheck {
        guard let timestamp else {
            return .refused("X-Bulwark-Signature-256 needs \(Self.timestampHeader) (Unix seconds), signed with the body: sha256=<hex HMAC-SHA256 of \"<timestamp>.\" + body>")
        }
        guard let seconds = Self.seconds(timestamp) else { return .refused("\(Self.timestampHeader): expected Unix seconds") }
        let expected = Self.signature(of: body, timestamp: seconds, secret: secret)
        guard Self.constantTimeEqual(Array(value.lowercased().utf8), Array(expected.utf8)) else {
            return .refused("X-Bulwark-Signature-256 does not match the timestamp and body")
        }
        let skew = Double(seconds) - now.timeIntervalSince1970
        guard abs(skew) <= Self.window else {
            return .refused("\(Self.timestampHeader) is \(Int(skew.rounded())) s from this host's clock, outside ±\(Int(Self.window)) s: a replay, or a clock to fix")
        }
        return replays.admitSigned(expected, timestamp: Double(seconds), now: now.timeIntervalSince1970)
    }
}

/// What checking a signed request found.
public enum WebhookCheck: Sendable, Equatable {
    /// Authentic, and (when it is remembered) not seen before: taken.
    case accepted
    /// Not authentic, stale or malformed, and why.
    case refused(String)
    /// Authentic, but a delivery already taken, and why; `logged` is false for every replay of
    /// the same delivery after the first, which alone is worth a line in the log.
    case replayed(String, logged: Bool)
    /// Authentic, but what remembers deliveries could not be saved: refused rather than risk
    /// taking it again after a restart, and why.
    case unavailable(String)

    /// The refusal, or nil when taken.
    public var refusal: String? {
        switch self {
        case .accepted: nil
        case .refused(let why), .replayed(let why, _), .unavailable(let why): why
        }
    }
}

/// The webhooks accepted, so that each is taken once, kept in the state directory
/// (`webhook-replays`) so that a restart does not forget them:
/// - Bulwark-signed ones within the window: a replayed one (same timestamp, same body, so the
///   same signature) is refused until its timestamp leaves the window, after which the time
///   check refuses it. At most `capacity`; when it is full of fresh ones, new webhooks are
///   refused rather than risk taking a replay (agents still poll).
/// - The forges' deliveries, which carry no time (GitHub signs the body alone, GitLab sends its
///   token as it is): the last `forgeCapacity` taken, by their body's HMAC. The same delivery
///   again is refused as replayed; one forgotten since costs a fetch.
/// Only what verified is remembered (a sender without the secret cannot fill it), and only a
/// digest of each signature. Each delivery taken is one line appended to the file and synced
/// before the request is answered; the file is rewritten whole (synced, renamed over the old
/// one) when it holds twice what is remembered, so it stays under `maxFileSize`. A last line a
/// kill cut short is dropped: its request was never answered, nor acted on. A file that cannot be
/// read or trusted at start (no header, edited, a link, too large) leaves the daemon refusing
/// every Bulwark-signed request stamped before start + `window`, which is everything the lost
/// file could have held: it fails closed for at most 5 minutes and says so in the log, and never
/// stops the daemon.
public final class WebhookReplayGuard: Sendable {
    public static let capacity = 10_000
    public static let forgeCapacity = 1_000
    /// How long past the window a signature is kept (`pruned`).
    static let pruneMargin: Double = 60
    /// The file's name in the state directory.
    public static let fileName = "webhook-replays"
    static let header = "bulwark-webhook-replays 1"
    /// Larger than any file this writes (about 100 bytes a line).
    static let maxFileSize = 2 << 20

    struct Memory {
        /// Digest of a Bulwark signature → its signed timestamp.
        var signed: [String: Double] = [:]
        /// Digest of a forge delivery → when it was taken, and its order (oldest first).
        var forge: [String: Double] = [:]
        var forgeOrder: [String] = []
        /// Deliveries whose replay has been logged (not kept across restarts).
        var replayLogged: Set<String> = []
        /// Bulwark-signed requests stamped before this are refused: the file could not be read.
        var untrustedBefore: Double?
        var untrustedWhy: String?
        /// Lines in the file below its header, remembered or not any more, and its size.
        var fileLines = 0
        var fileBytes = 0
        /// The file is rewritten whole by the next save (none yet, one not trusted, one whose
        /// last line was cut short).
        var rewrite = true
        /// The line a kill cut short, dropped when the file was read.
        var torn: Int?
        /// The file's first line bounds untrusted timestamps (`u`): rewritten once the bound is dropped.
        var fileBound = false
    }

    private let memory: Mutex<Memory>
    /// Where it is kept, or nil: in memory only.
    public let path: String?

    /// In memory only (tests of the HTTP surface).
    public init() {
        memory = Mutex(Memory())
        path = nil
    }

    /// Kept in `stateDirectory`; what a previous process remembered is read now.
    public init(stateDirectory: String, logger: Logger, now: Date = Date()) {
        let path = stateDirectory + "/" + Self.fileName
        self.path = path
        var loaded = Memory()
        do {
            loaded = try Self.load(path, now: now.timeIntervalSince1970)
            if let torn = loaded.torn {
                logger.warning("webhook replay memory: a last line cut short was dropped (its request was never answered)", metadata: [
                    "file": .string(path), "line": .stringConvertible(torn),
                ])
            }
        } catch {
            let until = now.timeIntervalSince1970 + WebhookVerifier.window
            loaded.untrustedBefore = until
            loaded.untrustedWhy = "\(error)"
            logger.error("webhook replay memory cannot be trusted; Bulwark-signed webhooks and findings stamped before then are refused", metadata: [
                "file": .string(path), "error": .string("\(error)"),
                "refused_until": .string(Timestamp.format(Date(timeIntervalSince1970: until))),
            ])
        }
        memory = Mutex(loaded)
    }

    /// A Bulwark signature that verified: taken when not seen before (and remembered), else why not.
    func admitSigned(_ signature: String, timestamp: Double, now: Double) -> WebhookCheck {
        let key = Self.digest(signature)
        return memory.withLock { memory in
            if memory.signed[key] != nil {
                let first = memory.replayLogged.insert(key).inserted
                return .replayed("replayed: this X-Bulwark-Signature-256 was already accepted within the last \(Int(2 * WebhookVerifier.window)) s",
                                 logged: first)
            }
            // Kept (and written) until no timestamp before it can pass the time check.
            if let before = memory.untrustedBefore, timestamp < before {
                return .unavailable("the webhook replay memory could not be read at a start (\(memory.untrustedWhy ?? "?")), so a request stamped "
                                    + "before \(Int(before)) could be a replay of one taken before it: refused; sign with the current time after then")
            }
            var next = Self.pruned(memory, now: now)
            next.replayLogged = next.replayLogged.filter { next.signed[$0] != nil || next.forge[$0] != nil }
            guard next.signed.count < Self.capacity else {
                return .unavailable("more than \(Self.capacity) signed webhooks within ±\(Int(WebhookVerifier.window)) s; refused until older ones expire")
            }
            next.signed[key] = timestamp
            if let failure = save(&next, adding: "s \(Int64(timestamp)) \(key)\n") {
                // A part of the line may have reached the file: the next save rewrites it whole.
                memory.rewrite = memory.rewrite || next.rewrite
                return .unavailable(failure)
            }
            memory = next
            return .accepted
        }
    }

    /// A forge's delivery that verified (`signature`: its body's HMAC): taken when not seen
    /// among the last `forgeCapacity`, else why not.
    func admitForge(_ signature: String, now: Double) -> WebhookCheck {
        let key = Self.digest(signature)
        return memory.withLock { memory in
            if memory.forge[key] != nil {
                let first = memory.replayLogged.insert(key).inserted
                return .replayed("replayed: this delivery (the same body, signed the same) was already accepted; the forges' signatures carry no time, "
                                 + "so each delivery is taken once (the source is polled anyway; push again to have it checked now)", logged: first)
            }
            var next = Self.pruned(memory, now: now)
            next.forge[key] = now
            next.forgeOrder.append(key)
            while next.forgeOrder.count > Self.forgeCapacity {
                let oldest = next.forgeOrder.removeFirst()
                next.forge[oldest] = nil
                next.replayLogged.remove(oldest)
            }
            if let failure = save(&next, adding: "f \(Int64(now)) \(key)\n") {
                // A part of the line may have reached the file: the next save rewrites it whole.
                memory.rewrite = memory.rewrite || next.rewrite
                return .unavailable(failure)
            }
            memory = next
            return .accepted
        }
    }

    /// Without the Bulwark signatures that have left the window, and without a bound for
    /// untrusted timestamps that no request can pass the time check with any more.
    static func pruned(_ memory: Memory, now: Double) -> Memory {
        var next = memory
        // Kept `pruneMargin` past the window: `now` is read before the lock is taken, and a
        // replay that passed its time check just inside the window may wait for the lock behind
        // a synced write while a later request prunes.
        next.signed = next.signed.filter { $0.value >= now - WebhookVerifier.window - pruneMargin }
        if let before = next.untrustedBefore, before + WebhookVerifier.window + pruneMargin < now {
            next.untrustedBefore = nil
            next.untrustedWhy = nil
        }
        return next
    }

    /// How many accepted Bulwark signatures are remembered (for tests).
    public var count: Int { memory.withLock { $0.signed.count } }

    static func digest(_ signature: String) -> String {
        SHA256.hash(data: Array(signature.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    // MARK: - The file

    /// Why the file is not taken, naming it and the line.
    struct FileError: Error, CustomStringConvertible {
        let description: String
    }

    static func encode(_ memory: Memory) -> [UInt8] {
        var text = header + "\n"
        // Timestamps before it are refused: a file lost at an earlier start could have held them.
        if let before = memory.untrustedBefore { text += "u \(Int64(before.rounded(.up))) \(String(repeating: "0", count: 64))\n" }
        for (key, at) in memory.signed.sorted(by: { $0.value < $1.value }) { text += "s \(Int64(at)) \(key)\n" }
        for key in memory.forgeOrder { text += "f \(Int64(memory.forge[key] ?? 0)) \(key)\n" }
        return Array(text.utf8)
    }

    /// What `path` holds, without the Bulwark signatures that have left the window; an empty
    /// memory when there is no file. Throws when there is one it cannot take whole.
    static func load(_ path: String, now: Double) throws -> Memory {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return Memory() }
            throw FileError(description: "\(path): cannot open it: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        // Read up to one byte past the bound: a file (or a FIFO, a device linked here) that
        // holds more is refused, never read whole. A folder fails the read.
        guard let bytes = Descriptor.read(fd, upTo: Self.maxFileSize + 1) else {
            throw FileError(description: "\(path): cannot read it: \(String(cString: strerror(errno)))")
        }
        guard bytes.count <= Self.maxFileSize else { throw FileError(description: "\(path): larger than \(Self.maxFileSize) bytes") }
        return try parse(bytes, path: path, now: now)
    }

    static func parse(_ bytes: [UInt8], path: String, now: Double) throws -> Memory {
        guard let text = String(validating: bytes, as: UTF8.self) else { throw FileError(description: "\(path): not UTF-8") }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.first.map(String.init) == header, lines.count > 1 else {
            throw FileError(description: "\(path) line 1: expected \(quotedForMessage(header))")
        }
        var memory = Memory()
        memory.rewrite = false
        // Lines are appended, each synced before its request is answered: a last one without its
        // line feed was being written when the process stopped, and its request was not answered.
        if lines.last != "" {
            memory.torn = lines.count
            memory.rewrite = true
        }
        lines.removeLast()
        let hex = Set("0123456789abcdef".utf8)
        for (index, line) in lines.enumerated().dropFirst() {
            let words = line.split(separator: " ", omittingEmptySubsequences: false)
            guard words.count == 3, ["s", "f", "u"].contains(words[0]),
                  let at = WebhookVerifier.seconds(String(words[1])),
                  words[2].utf8.count == 64, words[2].utf8.allSatisfy(hex.contains) else {
                throw FileError(description: "\(path) line \(index + 1): expected `s|f|u SECONDS SHA256`")
            }
            let key = String(words[2])
            if words[0] == "u" {
                guard index == 1, key == String(repeating: "0", count: 64) else {
                    throw FileError(description: "\(path) line \(index + 1): a `u` line comes first, with a zero digest")
                }
                memory.untrustedBefore = Double(at)
                memory.untrustedWhy = "one that could not be read at an earlier start"
                memory.fileBound = true
                continue
            }
            if words[0] == "s" {
                // A signature leaves the memory only once its time check refuses it: never taken twice.
                guard memory.signed[key] == nil, memory.forge[key] == nil else {
                    throw FileError(description: "\(path) line \(index + 1): a digest already listed")
                }
                memory.signed[key] = Double(at)
            } else {
                guard memory.signed[key] == nil else { throw FileError(description: "\(path) line \(index + 1): a digest already listed") }
                // A delivery forgotten (the oldest of more than `forgeCapacity`) and taken again
                // is appended again: the later line is the one that counts.
                if memory.forge[key] != nil { memory.forgeOrder.removeAll { $0 == key } }
                memory.forge[key] = Double(at)
                memory.forgeOrder.append(key)
            }
        }
        memory.fileLines = lines.count - 1
        memory.fileBytes = bytes.count
        while memory.forgeOrder.count > forgeCapacity { memory.forge[memory.forgeOrder.removeFirst()] = nil }
        memory = pruned(memory, now: now)
        guard memory.signed.count <= capacity else {
            throw FileError(description: "\(path): more fresh signatures than this ever keeps (\(capacity))")
        }
        return memory
    }

    /// Saves `memory`, which takes `line` (taken by this call): appended to the file and synced,
    /// or the file rewritten whole (synced, renamed over the old one, the folder synced) when
    /// it has none yet, cannot be appended to as it is, or holds twice what is remembered. nil
    /// when written (or when kept in memory only), else why not.
    private func save(_ memory: inout Memory, adding line: String) -> String? {
        guard let path else { return nil }
        let remembered = memory.signed.count + memory.forge.count + (memory.untrustedBefore == nil ? 0 : 1)
        if memory.rewrite || (memory.fileBound && memory.untrustedBefore == nil) || memory.fileLines + 1 > 2 * remembered + 256
            || memory.fileBytes + line.utf8.count > Self.maxFileSize / 2 {
            let bytes = Self.encode(memory)
            do {
                try StateFile.replace(path, with: bytes, durability: .syncedWithFolder)
            } catch {
                return "the webhook replay memory \(path) could not be written (\(error)); refused rather than risk taking it again after a restart"
            }
            memory.fileLines = remembered
            memory.fileBytes = bytes.count
            memory.fileBound = memory.untrustedBefore != nil
            memory.rewrite = false
            return nil
        }
        let bytes = Array(line.utf8)
        let fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            memory.rewrite = true
            return "the webhook replay memory \(path) could not be opened (\(String(cString: strerror(errno)))); refused rather than risk taking it again after a restart"
        }
        defer { close(fd) }
        guard Descriptor.writeAll(fd, bytes), fdatasync(fd) == 0 else {
            // What reached the file may be a part of the line: the next save rewrites it whole.
            memory.rewrite = true
            return "the webhook replay memory \(path) could not be written (\(String(cString: strerror(errno)))); refused rather than risk taking it again after a restart"
        }
        memory.fileLines += 1
        memory.fileBytes += bytes.count
        return nil
    }
}
