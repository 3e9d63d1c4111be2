import BulwarkCore
import BulwarkRuntime
import Foundation
import Testing

/// The daemon's MTTR history (`MTTRHistory`) holds bounded memory however many fixes a week
/// brings, and gives the MTTR `RemediationReport` computes over every record: exactly while the
/// week's fixes fit its exact part, within its duration bins (2.2%) and hourly buckets beyond.
@Suite struct MTTRHistoryTests {
    /// A deterministic generator, so a failure can be reproduced.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    let now = Date(timeIntervalSince1970: 1_795_860_000)

    func entry(_ resource: String, detected: Date, verifiedAfter seconds: Double?, decision: Decision = .applied) -> RemediationReport.Entry {
        RemediationReport.Entry(target: "web-1", resource: resource, controller: "c", severity: .high, decision: decision,
                                result: seconds == nil ? (decision == .applied ? .failed : nil) : .verified,
                                detectedAt: detected, verifiedAt: seconds.map { detected.addingTimeInterval($0) })
    }

    func report(_ entries: [RemediationReport.Entry], since: Date) -> MTTRSummary {
        RemediationReport(entries: entries, since: since, now: now, top: 0).mttr
    }

    @Test func withinTheExactLimitTheMTTRIsTheReportsToTheMillisecond() {
        var entries: [RemediationReport.Entry] = []
        var rng = SplitMix(state: 7)
        for index in 0..<600 {
            let detected = now.addingTimeInterval(-Double.random(in: 0..<(6 * 86400), using: &rng))
            let resource = "SSHDConfig/r\(index % 40)"
            switch index % 7 {
            case 0: entries.append(entry(resource, detected: detected, verifiedAfter: nil))  // a failed fix: the drift stays open
            case 1: entries.append(entry(resource, detected: detected, verifiedAfter: nil, decision: .waived))
            case 2: entries.append(entry(resource, detected: detected, verifiedAfter: nil, decision: .held))
            default: entries.append(entry(resource, detected: detected, verifiedAfter: Double.random(in: 0.001..<900, using: &rng)))
            }
        }
        let history = MTTRHistory(entries)
        for since in [now.addingTimeInterval(-86400), now.addingTimeInterval(-7 * 86400)] {
            let expected = report(entries, since: since)
            #expect(expected.fixes > 0)
            #expect(history.summary(since: since) == expected)
        }
        #expect(history.bucketCount == 0 && history.exactCount <= MTTRHistory.defaultExactLimit)
    }

    @Test func manyMoreFixesThanTheBoundKeepItsSizeBoundedAndTheMTTRRight() throws {
        var history = MTTRHistory(exactLimit: 512)
        var all: [RemediationReport.Entry] = []
        var rng = SplitMix(state: 42)
        // 100,000 fixes over nine days, in detection order, forgotten after a week as the daemon does after each cycle.
        let start = now.addingTimeInterval(-9 * 86400)
        var largest = 0
        for index in 0..<100_000 {
            let detected = start.addingTimeInterval(Double(index) * 9 * 86400 / 100_000)
            let fix = entry("SSHDConfig/r\(index % 50)", detected: detected, verifiedAfter: Double.random(in: 0.05..<3600, using: &rng))
            all.append(fix)
            history.add(fix)
            if index % 100 == 0 { history.forget(before: detected.addingTimeInterval(-7 * 86400)) }
            largest = max(largest, history.storedCount)
        }
        history.forget(before: now.addingTimeInterval(-7 * 86400))
        #expect(history.exactCount <= 512 && history.bucketCount <= 169)
        // Bounded by the exact part, 169 hours of bins and the resources, not by the number of fixes.
        #expect(largest <= 512 + 169 * MTTRHistory.durationBins + 50, "\(largest)")
        #expect(largest < 100_000 / 2, "\(largest)")

        for since in [now.addingTimeInterval(-86400), now.addingTimeInterval(-7 * 86400)] {
            let expected = report(all, since: since)
            let got = history.summary(since: since)
            // Folded hours count when they begin within the window: at most an hour of fixes (463 here) fewer.
            #expect(got.fixes <= expected.fixes && expected.fixes - got.fixes <= 463, "\(got.fixes) vs \(expected.fixes)")
            let p50 = try #require(got.p50Seconds), p90 = try #require(got.p90Seconds)
            let wantedP50 = try #require(expected.p50Seconds), wantedP90 = try #require(expected.p90Seconds)
            #expect(abs(p50 - wantedP50) / wantedP50 < 0.03, "p50 \(p50) vs \(wantedP50)")
            #expect(abs(p90 - wantedP90) / wantedP90 < 0.03, "p90 \(p90) vs \(wantedP90)")
            let maximum = try #require(got.maxSeconds), wantedMaximum = try #require(expected.maxSeconds)
            #expect(maximum <= wantedMaximum && maximum > wantedMaximum * 0.99)
        }
    }

    @Test func aFailedFixBeforeAVerifiedOneCountsFromTheFirstDetection() {
        let detected = now.addingTimeInterval(-3600)
        var history = MTTRHistory()
        history.add(entry("SSHDConfig/a", detected: detected, verifiedAfter: nil))
        history.add(entry("SSHDConfig/a", detected: detected.addingTimeInterval(600), verifiedAfter: 60))
        let summary = history.summary(since: now.addingTimeInterval(-86400))
        #expect(summary.fixes == 1 && summary.maxSeconds == 660)
        // Nothing detected in the window: no fixes, no times.
        #expect(history.summary(since: now).fixes == 0 && history.summary(since: now).p50Seconds == nil)
    }

    /// After the clock steps back, a fix dated ahead of now is not in the day's MTTR until its
    /// time comes, and one verified "before" its detection took no time, never less.
    @Test func aSteppedClockNeitherCountsFutureFixesNorMakesTheMTTRNegative() {
        var history = MTTRHistory()
        history.add(entry("SSHDConfig/a", detected: now.addingTimeInterval(-600), verifiedAfter: 60))
        history.add(entry("SSHDConfig/future", detected: now.addingTimeInterval(3600), verifiedAfter: 30))
        history.add(entry("SSHDConfig/stepped", detected: now.addingTimeInterval(-300), verifiedAfter: -120))
        let day = history.summary(since: now.addingTimeInterval(-86400), until: now)
        #expect(day.fixes == 2)
        #expect(day.p50Seconds == 0 && day.maxSeconds == 60, "\(day)")
        #expect(history.summary(since: now.addingTimeInterval(-86400), until: now.addingTimeInterval(7200)).fixes == 3)
    }
}
