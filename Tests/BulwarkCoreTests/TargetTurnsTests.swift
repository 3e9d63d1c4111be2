@testable import BulwarkCore
import Testing

/// The order `Reconciler.observe` starts observations in (`TargetTurns`), driven by hand.
@Suite struct TargetTurnsTests {
    func bindings(_ counts: [String: Int]) -> [Binding] {
        counts.flatMap { target, count in
            (0..<count).map { Binding(controller: "c", target: target, resource: ResourceID(kind: "K", name: "r\($0)")) }
        }.sorted()
    }

    /// Runs `turns` with `slots` observations at once, finishing the oldest (or the newest) first, and checks at
    /// every start: a target already observed gets a second observation only when no target
    /// with work waiting is idle. Returns the starts in order.
    func run(_ all: [Binding], slots: Int, newestFirst: Bool = false) -> [Binding] {
        var turns = TargetTurns(all)
        var running: [Binding] = []
        var started: [Binding] = []
        func startOne() -> Bool {
            guard let next = turns.next() else { return false }
            if running.contains(where: { $0.target == next.target }) {
                let waiting = Set(all.filter { binding in !started.contains(binding) && binding != next }.map(\.target))
                let idle = waiting.subtracting(running.map(\.target))
                #expect(idle.isEmpty, "\(next) started beside another of its target while \(idle.sorted()) waited idle")
            }
            running.append(next)
            started.append(next)
            return true
        }
        while running.count < slots, startOne() {}
        while !running.isEmpty {
            turns.finished(newestFirst ? running.removeLast() : running.removeFirst())
            while running.count < slots, startOne() {}
        }
        return started
    }

    @Test(arguments: [false, true]) func targetsTakeTurnsAndEachKeepsItsOrder(newestFirst: Bool) {
        let all = bindings(["a": 3, "b": 3, "c": 3])
        let started = run(all, slots: 2, newestFirst: newestFirst)
        #expect(started.count == all.count && Set(started) == Set(all))
        #expect(started.prefix(2).map(\.target) == ["a", "b"])
        for target in ["a", "b", "c"] {
            #expect(started.filter { $0.target == target } == all.filter { $0.target == target })
        }
    }

    /// When an observation ends, its target's next starts: a few targets are worked on at a time
    /// (what a plan keeps open per target is needed by a few), not all of them in turn.
    @Test func aTargetsObservationsFollowEachOther() {
        let all = bindings(["a": 3, "b": 3, "c": 3, "d": 3])
        let started = run(all, slots: 2)
        #expect(started.prefix(6).map(\.target).sorted() == ["a", "a", "a", "b", "b", "b"])
        #expect(started.suffix(6).map(\.target).sorted() == ["c", "c", "c", "d", "d", "d"])
    }

    @Test func oneTargetIsStillObservedSeveralAtATime() {
        var turns = TargetTurns(bindings(["only": 5]))
        let first = turns.next(), second = turns.next()
        #expect(first?.resource.name == "r0" && second?.resource.name == "r1")
    }

    /// Uneven targets (one large among many small, as a cloud account beside hosts): every
    /// binding starts once, in its target's order (finished queues dropped on the way).
    @Test func unevenTargetsAllStart() {
        var counts = ["big": 40]
        for index in 0..<30 { counts["h\(index)"] = index % 3 + 1 }
        let all = bindings(counts)
        for newestFirst in [false, true] {
            let started = run(all, slots: 4, newestFirst: newestFirst)
            #expect(started.count == all.count && Set(started) == Set(all))
            #expect(started.filter { $0.target == "big" } == all.filter { $0.target == "big" })
        }
        #expect(run([], slots: 3).isEmpty)
    }
}
