import Benchmark
import BulwarkCore
import BulwarkGit
import BulwarkHost
import Foundation

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .peakMemoryResident, .mallocCountTotal],
        timeUnits: .milliseconds, maxDuration: .seconds(120), maxIterations: 5)

    // Goal: under 1 s for 10,000 resources (parse and validate the revision, observe, plan).
    Benchmark("plan: 10,000 resources on 500 host targets") { benchmark in
        let fleet = try Fixtures.folder("fleet") { try Fixtures.drift(fleet: $0) }
        let files = Fixtures.manifests(fleet: fleet)
        let loader = DesiredStateLoader(registry: Fixtures.registry(validateSSHD: false))
        let reconciler = Reconciler(registry: Fixtures.registry(validateSSHD: false))
        benchmark.startMeasurement()
        let state = try loader.load(files, revision: "bench")
        let plan = try await reconciler.plan(state)
        benchmark.stopMeasurement()
        guard state.bindings.count == Fixtures.targets * Fixtures.resourcesPerTarget, plan.remediations.count > 0 else {
            throw BenchmarkSetupError("unexpected plan: \(state.bindings.count) bindings, \(plan.remediations.count) drifted")
        }
    }

    Benchmark("validate: 10,000 resources on 500 targets (parse only)") { benchmark in
        let files = Fixtures.manifests(fleet: "/nonexistent")
        let loader = DesiredStateLoader(registry: Fixtures.registry(validateSSHD: false))
        benchmark.startMeasurement()
        blackHole(try loader.load(files, revision: "bench"))
        benchmark.stopMeasurement()
    }

    // Every resource on every target drifted: 10,000 fixes, each verified by observing again.
    Benchmark("apply: 10,000 remediations on 500 host targets", configuration: .init(maxIterations: 3)) { benchmark in
        let fleet = try Fixtures.folder("fleet") { try Fixtures.drift(fleet: $0) }
        try Fixtures.drift(fleet: fleet)
        let state = try DesiredStateLoader(registry: Fixtures.registry(validateSSHD: false))
            .load(Fixtures.manifests(fleet: fleet), revision: "bench")
        let reconciler = Reconciler(registry: Fixtures.registry(validateSSHD: false))
        let sink = CountingSink()
        benchmark.startMeasurement()
        let plan = try await reconciler.plan(state)
        let outcome = await reconciler.apply(plan, state: state, audit: sink)
        benchmark.stopMeasurement()
        guard outcome.failed.isEmpty, outcome.verified.count == plan.remediations.count else {
            throw BenchmarkSetupError("\(outcome.failed.count) fixes failed: \(outcome.failed.first?.record.error ?? "")")
        }
    }

    // Goal: at least 500 audit commits per second onto a branch that holds 100,000 records.
    Benchmark("audit: 1,000 commits onto a branch holding 100,000 records",
              configuration: .init(metrics: [.wallClock, .cpuTotal, .peakMemoryResident, .throughput], maxIterations: 5)) { benchmark in
        let path = try Fixtures.auditRepository()
        let repo = try Repository.open(at: path + "/repo.git")
        benchmark.startMeasurement()
        for _ in 0..<1000 {
            let now = Date()
            let record = Fixtures.sampleRecord(id: AuditID.ulid(at: now), at: now)
            let parent = try repo.resolve("refs/heads/bulwark/audit")
            let commit = try repo.writeCommit(adding: [record.path: record.json()], parent: parent,
                                              message: record.commitMessage,
                                              author: Signature(name: "Bulwark", email: "bulwark@localhost", time: now))
            try repo.updateReference("refs/heads/bulwark/audit", to: commit, expected: parent, message: "audit")
        }
        benchmark.stopMeasurement()
    }
}
