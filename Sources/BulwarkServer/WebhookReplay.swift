internal import Crypto
internal import Synchronization
internal import Foundation

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

    /// nil when a Bulwark-signed request (`X-Bulwark-Signature-256: value`) is authentic, fresh
    /// and not seen before; else why not. The signature is checked before the time, so a sender
    /// without the secret learns nothing of the receiver's clock or memory.
    /// `X-Bulwark-Timestamp` as Unix seconds: 1 to 12 digits, nothing else.
    static func seconds(_ timestamp: String) -> Int64? {
        guard (1...12).contains(timestamp.utf8.count), timestamp.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        return Int64(timestamp)
    }

    func bulwarkRefusal(_ value: String, timestamp: String?, body: [UInt8], now: Date) -> String? {
        guard let timestamp else {
            return "X-Bulwark-Signature-256 needs \(Self.timestampHeader) (Unix seconds), signed with the body: sha256=<hex HMAC-SHA256 of \"<timestamp>.\" + body>"
        }
        guard let seconds = Self.seconds(timestamp) else { return "\(Self.timestampHeader): expected Unix seconds" }
        let expected = Self.signature(of: body, timestamp: seconds, secret: secret)
        guard Self.constantTimeEqual(Array(value.lowercased().utf8), Array(expected.utf8)) else {
            return "X-Bulwark-Signature-256 does not match the timestamp and body"
        }
        let skew = Double(seconds) - now.timeIntervalSince1970
        guard abs(skew) <= Self.window else {
            return "\(Self.timestampHeader) is \(Int(skew.rounded())) s from this host's clock, outside ±\(Int(Self.window)) s: a replay, or a clock to fix"
        }
        return replays.admit(expected, timestamp: Double(seconds), now: now.timeIntervalSince1970)
    }
}

/// The Bulwark-signed webhooks accepted within the window, so that each is taken once: a
/// replayed one (same timestamp, same body, so the same signature) is refused until its
/// timestamp leaves the window, after which the time check refuses it. Holds only signatures
/// that verified (a sender without the secret cannot fill it), at most `capacity`; when it is
/// full of fresh ones, new webhooks are refused rather than risk taking a replay (agents still poll).
public final class WebhookReplayGuard: Sendable {
    public static let capacity = 10_000
    private let seen = Mutex([String: Double]())

    public init() {}

    /// nil when `signature` was not seen and is now remembered, else why it is refused.
    func admit(_ signature: String, timestamp: Double, now: Double) -> String? {
        seen.withLock { seen in
            if seen[signature] != nil {
                return "replayed: this X-Bulwark-Signature-256 was already accepted within the last \(Int(2 * WebhookVerifier.window)) s"
            }
            if seen.count >= Self.capacity {
                seen = seen.filter { $0.value >= now - WebhookVerifier.window }
            }
            guard seen.count < Self.capacity else {
                return "more than \(Self.capacity) signed webhooks within ±\(Int(WebhookVerifier.window)) s; refused until older ones expire"
            }
            seen[signature] = timestamp
            return nil
        }
    }

    /// How many accepted signatures are remembered (for tests).
    public var count: Int { seen.withLock { $0.count } }
}
