@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkTestSupport
import Foundation
import Testing

/// Many host agents at once, each with its own sandbox root, identity and state directory,
/// against one origin served by git's own smart HTTP server (`git http-backend`) on loopback.
/// N is 20 here (CI has 2 cores); `Benchmarks/fleet-agents.sh` runs 200
/// (`BULWARK_FLEET_AGENTS`).
@Suite struct FleetScaleTests {
    static var agents: Int { ProcessInfo.processInfo.environment["BULWARK_FLEET_AGENTS"].flatMap(Int.init) ?? 20 }
    /// No agent may take longer than this; one that does is killed and the test fails.
    static var deadline: Double { ProcessInfo.processInfo.environment["BULWARK_FLEET_DEADLINE"].flatMap(Double.init) ?? 600 }

    @Test(.enabled(if: GitHTTPServer.available))
    func everyAgentsRecordsLandOnItsOwnRef() async throws {
        try await withTemporaryDirectory { dir in
            let count = Self.agents
            let fleet = try FleetFixture(in: dir, count: count)
            let server = try GitHTTPServer(root: dir)
            let url = server.url("origin.git")
            let environment = ProcessInfo.processInfo.environment.merging(["BULWARK_GIT_PASSWORD": server.token]) { $1 }
            // Every agent starts at once.
            var processes: [(Process, Date)] = []
            for index in 0..<count {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: try bulwarkExecutable())
                process.arguments = ["apply", "--repo", url, "--git-username", server.user, "--state-dir", fleet.state(index),
                                     "--self", "--identity-root", fleet.identity(index), "--output", "json"]
                process.environment = environment
                let out = dir + "/agent-\(index).json"
                let err = dir + "/agent-\(index).err"
                for path in [out, err] { _ = FileManager.default.createFile(atPath: path, contents: nil) }
                process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
                process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
                process.standardInput = FileHandle.nullDevice
                processes.append((process, Date()))
            }
            let started = Date()
            for (process, _) in processes { try process.run() }
            var durations = [Double](repeating: 0, count: count)
            var pending = Set(0..<count)
            while !pending.isEmpty {
                for index in pending where !processes[index].0.isRunning {
                    durations[index] = Date().timeIntervalSince(started)
                    pending.remove(index)
                }
                if Date().timeIntervalSince(started) > Self.deadline {
                    for index in pending { kill(processes[index].0.processIdentifier, SIGKILL) }
                    for index in pending { processes[index].0.waitUntilExit() }
                    Issue.record("agents \(pending.sorted()) did not finish within \(Int(Self.deadline)) s")
                    break
                }
                usleep(20_000)
            }
            let wall = Date().timeIntervalSince(started)

            var total = 0
            for index in 0..<count {
                let process = processes[index].0
                let output = try read(dir + "/agent-\(index).json")
                let errors = (try? read(dir + "/agent-\(index).err")) ?? ""
                #expect(process.terminationStatus == 0, "agent \(index): \(errors.suffix(2000).replacingOccurrences(of: "\n", with: " | "))")
                let result = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any] ?? [:]
                let records = (result["records"] as? [Any])?.count ?? -1
                #expect((result["keptLocally"] as? Int) == 0, "agent \(index) kept records locally: \(output.prefix(500))")
                // Every record the agent made is on its own ref on the origin, and nothing else is.
                let landed = (try? fleet.trailers("Bulwark-Id", on: fleet.hostRef(index))) ?? []
                #expect(records > 0 && landed.count == records, "agent \(index): \(records) records, \(landed.count) on the origin")
                let targets = Set((try? fleet.trailers("Bulwark-Target", on: fleet.hostRef(index))) ?? [])
                #expect(targets == [fleet.target(index)])
                total += landed.count
            }
            // The origin: the policy branch and one ref per agent, nothing else (no shared branch,
            // no recovery branches); its size grows with the records, not with the number of agents squared.
            let refs = try git("--git-dir", fleet.origin, "for-each-ref", "--format=%(refname)").split(separator: "\n")
            #expect(refs.count == count + 1, "\(refs)")
            let sizes = try git("--git-dir", fleet.origin, "count-objects", "-v").split(separator: "\n")
                .reduce(into: [String: Int]()) { result, line in
                    let parts = line.split(separator: ":").map { $0.trimmingCharacters(in: .whitespaces) }
                    if parts.count == 2, let value = Int(parts[1]) { result[parts[0]] = value }
                }
            let kib = (sizes["size"] ?? 0) + (sizes["size-pack"] ?? 0)
            #expect(kib < count * 512, "the origin holds \(kib) KiB for \(count) agents")
            let verify = try bulwark(["verify-audit", "--repo", fleet.origin])
            #expect(verify.status == 0, "\(verify.stderr.suffix(2000))")
            let sorted = durations.sorted()
            print(String(format: "fleet: %d agents, %d records in %.1f s (%.1f records/s); agent wall median %.1f s, max %.1f s; origin %d refs, %d KiB",
                         count, total, wall, Double(total) / wall, sorted[count / 2], sorted.last ?? 0, refs.count, kib))
            withExtendedLifetime(server) {}
        }
    }
}
