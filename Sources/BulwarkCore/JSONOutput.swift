package import Foundation

/// The one encoding of every JSON document Bulwark prints, writes or serves (`--output json`,
/// `plan --out`, the daemon's `/api/v1/status`): sorted keys, slashes as they are, times as
/// RFC 3339 (`Timestamp`).
package enum JSONOutput {
    package static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(Timestamp.format(date))
        }
        return encoder
    }
}

/// Time to remediate over a set of verified fixes: how many, and the 50th, 90th percentile and
/// longest, in seconds to the millisecond. Shared by `bulwark report` and the status page.
package struct MTTRSummary: Encodable, Sendable, Equatable {
    package var fixes: Int
    package var p50Seconds: Double?
    package var p90Seconds: Double?
    package var maxSeconds: Double?

    package init(_ durations: [Double]) {
        let sorted = durations.map(Self.seconds).sorted()
        fixes = sorted.count
        func rank(_ p: Double) -> Double? {
            sorted.isEmpty ? nil : sorted[min(sorted.count - 1, max(0, Int((p * Double(sorted.count)).rounded(.up)) - 1))]
        }
        p50Seconds = rank(0.5)
        p90Seconds = rank(0.9)
        maxSeconds = sorted.last
    }

    /// Seconds as JSON shows them: to the millisecond, so 2.216 and not 2.215999960899353 (times
    /// are stored to the millisecond; their difference in `Double` is not).
    package static func seconds(_ value: Double) -> Double { (value * 1000).rounded() / 1000 }

    /// A duration for people: `850 ms`, `2.5 s`, `3.0 min`, `1.5 h`, `2.0 d`; `-` for none.
    package static func duration(_ seconds: Double?) -> String {
        guard let seconds else { return "-" }
        switch seconds {
        case ..<1: return String(format: "%.0f ms", seconds * 1000)
        case ..<60: return String(format: "%.1f s", seconds)
        case ..<3600: return String(format: "%.1f min", seconds / 60)
        case ..<86400: return String(format: "%.1f h", seconds / 3600)
        default: return String(format: "%.1f d", seconds / 86400)
        }
    }
}
