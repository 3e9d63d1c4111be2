package import BulwarkCore
package import Foundation

/// The daemon's remediations of the last week, for the MTTR over the last day and week on the
/// status page, in bounded memory.
///
/// Each verified fix is reduced, as it arrives, to its detection time and its time to repair
/// (from the first detection of the drift it ended, as `RemediationReport` counts it). The
/// newest `exactLimit` fixes are kept exactly, so that up to that many fixes in a week the MTTR
/// is the same, to the millisecond, as `RemediationReport` over every record. Older ones are
/// folded into one bucket per hour of detection, each a histogram of durations in bins of
/// 1/32 of an octave (values within 2.2% of each other share a bin; the count and the maximum
/// stay exact). So memory is at most `exactLimit` fixes, 169 hourly buckets of at most
/// `durationBins` bins, and one open-drift start per managed resource, however many fixes a
/// week brings. A folded hour counts for a window when it began at or after the window's start
/// (a day window over folded fixes is short by less than an hour).
package struct MTTRHistory: Sendable {
    /// A verified fix: when its drift was detected, and the seconds from detection to the verified fix.
    struct Fix: Sendable, Equatable {
        var detectedAt: Date
        var seconds: Double
    }

    /// The fixes of one hour of detection, folded.
    struct Bucket: Sendable, Equatable {
        var count = 0
        var maxSeconds = -Double.infinity
        var bins: [UInt16: Int] = [:]
    }

    package static let defaultExactLimit = 4096
    /// Durations from 1 ms to 2^32 ms (49 days; longer ones share the last bin), 32 bins an octave.
    static let binsPerOctave = 32.0
    package static let durationBins = 32 * 32 + 2
    static let bucketSeconds = 3600.0
    static let week: TimeInterval = 7 * 86400

    /// The newest fixes, in the order they were recorded.
    private(set) var exact: [Fix] = []
    /// Older fixes, by hour of detection (hours since 1970).
    private(set) var buckets: [Int64: Bucket] = [:]
    /// When each resource's open drift was first detected (target NUL resource), until a verified fix ends it.
    private var openSince: [String: Date] = [:]
    /// When each resource's last verified fix was verified: a late `interrupted` record of a
    /// drift detected before it opens nothing (`Entry.opensDrift(lastVerified:)`).
    private var lastVerified: [String: Date] = [:]
    private var added = 0
    let exactLimit: Int

    package init(exactLimit: Int = MTTRHistory.defaultExactLimit) {
        self.exactLimit = max(2, exactLimit)
    }

    /// The history of these entries, oldest first (what `loadHistory` reads from the audit branch).
    package init(_ entries: [RemediationReport.Entry], exactLimit: Int = MTTRHistory.defaultExactLimit) {
        self.init(exactLimit: exactLimit)
        for entry in entries { add(entry) }
    }

    /// Whether nothing was added since the history began.
    package var isEmpty: Bool { added == 0 }

    /// How many fixes are kept exactly (at most `exactLimit`), and how many hourly buckets hold older ones.
    package var exactCount: Int { exact.count }
    package var bucketCount: Int { buckets.count }

    /// How many values are held: exact fixes, histogram bins and open-drift starts (bounded;
    /// what the tests check).
    package var storedCount: Int {
        exact.count + buckets.values.reduce(0) { $0 + $1.bins.count } + openSince.count + lastVerified.count
    }

    /// Adds a record in the order records are made: a verified fix ends its resource's open drift
    /// and is counted from that drift's first detection; a recovery's record found as desired
    /// (`Entry.closesDrift`) ends it uncounted; anything else but a waiver or a failed
    /// observation (which finds no drift) opens or keeps it open.
    package mutating func add(_ entry: RemediationReport.Entry) {
        added += 1
        guard !entry.isRevert else { return }
        let key = entry.target + "\u{0}" + entry.resource
        if entry.result == .verified, let verified = entry.verifiedAt {
            let start = min(openSince[key] ?? entry.detectedAt, entry.detectedAt)
            openSince[key] = nil
            lastVerified[key] = verified
            // A fix verified "before" its detection (a clock stepped back) took no time, not less.
            exact.append(Fix(detectedAt: entry.detectedAt, seconds: max(0, verified.timeIntervalSince(start))))
            if exact.count > exactLimit { fold(exact.count - exactLimit / 2) }
        } else if entry.closesDrift {
            // Found as desired by a recovery: closed, and no fix of Bulwark's to count.
            openSince[key] = nil
        } else if entry.opensDrift(lastVerified: lastVerified[key]) {
            openSince[key] = openSince[key] ?? entry.detectedAt
        }
    }

    /// Forgets what was detected before `start` (a week before the cycle).
    package mutating func forget(before start: Date) {
        exact.removeAll { $0.detectedAt < start }
        let firstHour = Self.hour(of: start)
        buckets = buckets.filter { $0.key >= firstHour }
        openSince = openSince.filter { $0.value >= start }
        lastVerified = lastVerified.filter { $0.value >= start }
    }

    /// The MTTR of the fixes detected at or after `since` and not after `until` (a record dated
    /// ahead of the clock, after the clock stepped back, waits until its time has come).
    package func summary(since: Date, until: Date = .distantFuture) -> MTTRSummary {
        var values: [(seconds: Double, count: Int)] = exact.filter { $0.detectedAt >= since && $0.detectedAt <= until }
            .map { (MTTRSummary.seconds($0.seconds), 1) }
        var maximum = values.map(\.seconds).max()
        for (hour, bucket) in buckets where Double(hour) * Self.bucketSeconds >= since.timeIntervalSince1970
            && Double(hour) * Self.bucketSeconds <= until.timeIntervalSince1970 {
            for (bin, count) in bucket.bins { values.append((Self.value(ofBin: bin), count)) }
            maximum = max(maximum ?? MTTRSummary.seconds(bucket.maxSeconds), MTTRSummary.seconds(bucket.maxSeconds))
        }
        values.sort { $0.seconds < $1.seconds }
        let total = values.reduce(0) { $0 + $1.count }
        var summary = MTTRSummary([])
        guard total > 0 else { return summary }
        func rank(_ p: Double) -> Double {
            // The same rank as `MTTRSummary`: the ceil(p·n)-th smallest value.
            let wanted = min(total, max(1, Int((p * Double(total)).rounded(.up))))
            var seen = 0
            for value in values {
                seen += value.count
                if seen >= wanted { return value.seconds }
            }
            return values[values.count - 1].seconds
        }
        summary.fixes = total
        summary.p50Seconds = rank(0.5)
        summary.p90Seconds = rank(0.9)
        summary.maxSeconds = maximum
        return summary
    }

    // MARK: - Folding

    /// Moves the `count` oldest exact fixes into their hourly buckets.
    private mutating func fold(_ count: Int) {
        for fix in exact.prefix(count) {
            var bucket = buckets[Self.hour(of: fix.detectedAt)] ?? Bucket()
            bucket.count += 1
            bucket.maxSeconds = max(bucket.maxSeconds, fix.seconds)
            bucket.bins[Self.bin(of: fix.seconds), default: 0] += 1
            buckets[Self.hour(of: fix.detectedAt)] = bucket
        }
        exact.removeFirst(min(count, exact.count))
    }

    static func hour(of date: Date) -> Int64 {
        let hours = (date.timeIntervalSince1970 / bucketSeconds).rounded(.down)
        return hours.isFinite ? Int64(max(min(hours, 1e15), -1e15)) : 0
    }

    /// 0 for durations under a millisecond, else 1 + 32·log2(milliseconds), capped.
    static func bin(of seconds: Double) -> UInt16 {
        let millis = MTTRSummary.seconds(seconds) * 1000
        guard millis.isFinite else { return millis > 0 ? UInt16(durationBins - 1) : 0 }
        guard millis >= 1 else { return 0 }
        let index = 1 + (log2(millis) * binsPerOctave).rounded(.down)
        return UInt16(min(index, Double(durationBins - 1)))
    }

    /// A bin's value: the geometric middle of its range, to the millisecond.
    static func value(ofBin bin: UInt16) -> Double {
        guard bin > 0 else { return 0 }
        let millis = pow(2, (Double(bin) - 1 + 0.5) / binsPerOctave)
        return MTTRSummary.seconds(millis / 1000)
    }
}
