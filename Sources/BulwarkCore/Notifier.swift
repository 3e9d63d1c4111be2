internal import Foundation

/// Where decisions are announced: an outgoing webhook (`kind: Notifier` under `controllers/`).
public struct NotifierConfig: Sendable, Hashable {
    /// A value that must not live in git: given inline, or read from the environment or a file
    /// when it is used.
    public enum Secret: Sendable, Hashable {
        case inline(String)
        case environment(String)
        case file(String)
    }

    public enum Format: String, Sendable, Hashable, CaseIterable {
        /// `{"text": ...}`, which Slack, Mattermost and most chat webhooks accept.
        case slack
        /// The audit record as JSON, signed with HMAC-SHA256 when a secret is set.
        case json
    }

    public var name: String
    public var url: Secret
    public var format: Format
    public var secret: Secret?
    /// Decisions to announce (`held`, `escalated`, ...) plus `failed` for fixes that did not verify.
    public var events: Set<String>
    public var location: SourceLocation

    public static let defaultEvents: Set<String> = ["held", "failed", "escalated"]
    /// Decisions, `failed`, and `sla-breach`: a finding still open past its priority's SLA (once per finding).
    public static let allEvents = Set(Decision.allCases.map(\.rawValue) + ["failed", "sla-breach"])

    public init(name: String, url: Secret, format: Format = .json, secret: Secret? = nil,
                events: Set<String> = defaultEvents, location: SourceLocation) {
        self.name = name
        self.url = url
        self.format = format
        self.secret = secret
        self.events = events
        self.location = location
    }

    /// Whether this record is announced: a failed fix as `failed`, anything else by its decision.
    public func announces(_ record: AuditRecord) -> Bool {
        events.contains(record.result == .failed ? "failed" : record.decision.rawValue)
    }

    /// The request body for a record (secrets are already redacted in records).
    public func body(for record: AuditRecord, commit: String?) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        switch format {
        case .slack:
            // Each value on its line without controls (`TerminalText.oneLine`): an observed value
            // is a target file's text, and a separator or a bidirectional control in it would
            // break or reorder the message people read.
            // Slack reads `<…>` as markup (`<!channel>` pings everyone, `<https://x|text>` hides
            // where a link goes) and `&` as the start of an entity: escaped as its docs say, so
            // whoever writes a managed file cannot ping the channel or disguise a link.
            let safe = { (text: String) in Self.slackEscaped(TerminalText.oneLine(text)) }
            let first = record.changes.first.map { "\(safe($0.property)) \(safe($0.observedBefore ?? "(unset)")) -> \(safe($0.desired))" } ?? ""
            var lines = ["*\(record.result == .failed ? "failed" : record.decision.rawValue)* \(safe(record.resource)) on \(safe(record.target)): \(first)"
                + (record.changes.count > 1 ? " (+\(record.changes.count - 1) more)" : "")]
            if let reason = record.reason { lines.append("Reason: \(safe(reason))") }
            if let error = record.error { lines.append("Error: \(safe(error))") }
            lines.append("Bulwark-Id: \(safe(record.id))" + (commit.map { ", audit commit \($0.prefix(12))" } ?? ""))
            return Array((try? encoder.encode(["text": lines.joined(separator: "\n")])) ?? Data())
        case .json:
            struct Event: Encodable {
                var event = "bulwark.decision"
                var record: AuditRecord
                var commit: String?
            }
            return Array((try? encoder.encode(Event(record: record, commit: commit))) ?? Data())
        }
    }
}

extension NotifierConfig {
    /// `text` with Slack's control characters escaped (`&` → `&amp;`, `<` → `&lt;`, `>` → `&gt;`).
    static func slackEscaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }

    /// Whether a notifier's URL may carry its secrets (a webhook's URL is its credential): https,
    /// or plain http to this machine only (`localhost`, 127.0.0.0/8, `::1`), as the AWS and
    /// PostgreSQL adapters allow cleartext only on loopback. Nil when it may; else why not,
    /// without the URL itself.
    public static func transportProblem(_ url: String) -> String? {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
              let host = components.host, !host.isEmpty else {
            return "expected an https:// URL"
        }
        switch scheme {
        case "https": return nil
        case "http":
            if Loopback.isHost(of: url) { return nil }
            return "plain http is accepted only to a loopback address (localhost, 127.0.0.1, ::1): a webhook's URL "
                + "is its credential, and the records it carries would cross the network in the clear; use https"
        default:
            return "expected an https:// URL"
        }
    }
}
