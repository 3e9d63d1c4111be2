package import BulwarkCore
package import Foundation

/// What stands between the daemon and "ready" beyond a single cycle: problems kept per binding
/// until that binding is observed or fixed fine again (so a small cycle, one a finding started,
/// never hides a failure elsewhere), a source that has not been fetched for a while, and audit
/// commits that have not reached the origin. A pure value the daemon updates and readiness reads,
/// tested with instants a test makes.
package struct DaemonHealth: Sendable {
    package typealias Instant = ContinuousClock.Instant

    /// Something that has gone on since `since` (monotonic; `sinceWall` is what messages say).
    package struct Ongoing: Sendable, Equatable {
        package var since: Instant
        package var sinceWall: Date
        /// How many times it happened (failed fetches), or how many things it holds (commits).
        package var count: Int
        package var reason: String
    }

    /// Per binding, why it is not as it should be: an observation that failed, a fix that failed
    /// (and is held back, or retried), a fix a halted pass left undone, a record not committed.
    package private(set) var problems: [Binding: String] = [:]
    /// Problems of the last cycle that name no binding (audit failures it could not place, a
    /// pass that halted before any fix).
    package private(set) var general: [String] = []
    /// Fetches of the source failing since.
    package private(set) var fetchFailing: Ongoing?
    /// Audit commits kept locally since (pushes failed).
    package private(set) var unpushed: Ongoing?

    package init() {}

    // MARK: - Bindings

    /// A cycle looked at `bindings`: what it finds is set again for each (`set`).
    package mutating func looked(at bindings: some Sequence<Binding>) {
        for binding in bindings { problems[binding] = nil }
    }

    package mutating func set(_ binding: Binding, _ problem: String) {
        problems[binding] = problem
    }

    /// Problems of a cycle that name no binding. A cycle over the whole revision replaces those
    /// of earlier cycles; a smaller one (a finding's, a watched file's) only adds its own, so it
    /// never hides what a whole cycle found (the next whole cycle judges them again).
    package mutating func setGeneral(_ items: [String], wholeRevision: Bool) {
        if wholeRevision {
            general = items
        } else {
            for item in items where !general.contains(item) { general.append(item) }
            if general.count > Self.generalKept { general.removeFirst(general.count - Self.generalKept) }
        }
    }

    /// General problems kept at most (the oldest go first).
    static let generalKept = 20

    /// A new revision is in force: bindings it no longer has have no problem any more.
    package mutating func keep(only bindings: Set<Binding>) {
        problems = problems.filter { bindings.contains($0.key) }
    }

    // MARK: - Source and audit trail

    package mutating func fetched() { fetchFailing = nil }

    package mutating func fetchFailed(_ reason: String, at now: Instant, wall: Date) {
        if var failing = fetchFailing {
            failing.count += 1
            failing.reason = reason
            fetchFailing = failing
        } else {
            fetchFailing = Ongoing(since: now, sinceWall: wall, count: 1, reason: reason)
        }
    }

    /// Everything local is on the origin.
    package mutating func pushed() { unpushed = nil }

    package mutating func keptLocally(_ commits: Int, reason: String, at now: Instant, wall: Date) {
        if var kept = unpushed {
            kept.count = commits
            kept.reason = reason
            unpushed = kept
        } else {
            unpushed = Ongoing(since: now, sinceWall: wall, count: commits, reason: reason)
        }
    }

    // MARK: - Readiness

    /// Whether nothing stands: no binding's problem, no general one (the source and the trail
    /// are judged over time by `reasons`).
    package var clean: Bool { problems.isEmpty && general.isEmpty }

    /// Why the daemon is not ready, in words, or empty: fetches failing for longer than
    /// `threshold`, audit commits kept locally for longer than it, and every standing problem
    /// (the first few named). `origin` is the origin as it may be shown (no password).
    package func reasons(at now: Instant, threshold: Duration, origin: String) -> [String] {
        var reasons: [String] = []
        if let failing = fetchFailing, failing.since.duration(to: now) >= threshold {
            reasons.append("the origin \(origin) could not be fetched for \(Self.seconds(failing.since.duration(to: now))) s "
                           + "(since \(Timestamp.format(failing.sinceWall)), \(failing.count) attempt\(failing.count == 1 ? "" : "s")): "
                           + Redaction.urls(in: failing.reason))
        }
        if let kept = unpushed, kept.since.duration(to: now) >= threshold {
            reasons.append("\(kept.count) audit commit\(kept.count == 1 ? "" : "s") kept locally, not pushed to \(origin) "
                           + "since \(Timestamp.format(kept.sinceWall)) (\(Self.seconds(kept.since.duration(to: now))) s): "
                           + Redaction.urls(in: kept.reason))
        }
        reasons += general
        if !problems.isEmpty {
            let shown = problems.sorted { $0.key < $1.key }.prefix(3).map { "\($0.key): \($0.value)" }
            let more = problems.count > shown.count ? "; … and \(problems.count - shown.count) more" : ""
            reasons.append("\(problems.count) resource\(problems.count == 1 ? " has a standing problem" : "s have standing problems"): "
                           + shown.joined(separator: "; ") + more)
        }
        return reasons
    }

    private static func seconds(_ duration: Duration) -> Int64 { duration.components.seconds }
}
