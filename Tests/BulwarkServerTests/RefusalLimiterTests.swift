@testable import BulwarkServer
import Synchronization
import Testing

@Suite struct RefusalLimiterTests {
    /// Refusals from many addresses: at most `linesEvery` lines a minute over all of them; what
    /// was held back is counted in the next line, and each address's own next line still counts
    /// every refusal of its own.
    @Test func manyAddressesLogAtMostLinesEveryAndTheRestIsCounted() {
        let base = ContinuousClock.now
        let elapsed = Mutex(Duration.zero)
        let limiter = RefusalLimiter(settings: .init(burst: 10, perSecond: 1, logEvery: .seconds(60), linesEvery: 3),
                                     now: { base + elapsed.withLock { $0 } })
        var lines: [String: RefusalLimiter.LogLine] = [:]
        for index in 0..<10 {
            if let line = limiter.refused("198.51.100.\(index)", take: true) { lines["198.51.100.\(index)"] = line }
        }
        #expect(lines.count == 3, "\(lines)")
        #expect(lines.values.allSatisfy { $0.count == 1 && $0.heldBack == 0 })
        // One address held back refuses again within the minute: still held back.
        #expect(limiter.refused("198.51.100.9", take: true) == nil)
        elapsed.withLock { $0 += .seconds(61) }
        let next = limiter.refused("198.51.100.9", take: true)
        #expect(next == RefusalLimiter.LogLine(count: 3, heldBack: 8), "its own three, and eight held back")
        #expect(limiter.refused("198.51.100.5", take: true) == RefusalLimiter.LogLine(count: 2, heldBack: 0))
    }

    /// One address alone: one line a minute, standing for every refusal since its last line.
    @Test func oneAddressLogsOnceAMinute() {
        let base = ContinuousClock.now
        let elapsed = Mutex(Duration.zero)
        let limiter = RefusalLimiter(settings: .init(burst: 2, perSecond: 1, logEvery: .seconds(60)),
                                     now: { base + elapsed.withLock { $0 } })
        #expect(limiter.refused("192.0.2.1", take: true) == RefusalLimiter.LogLine(count: 1))
        #expect(limiter.refused("192.0.2.1", take: true) == nil)
        #expect(limiter.retryAfter("192.0.2.1") == 1)
        #expect(limiter.retryAfter("192.0.2.2") == nil)
        elapsed.withLock { $0 += .seconds(60) }
        #expect(limiter.retryAfter("192.0.2.1") == nil)
        #expect(limiter.refused("192.0.2.1", take: false) == RefusalLimiter.LogLine(count: 2))
    }
}
