@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkTestSupport
// `stat` is defined, to the compiler, by the module that first brought in <sys/stat.h>:
// CDispatch, imported here as the sources do (without it, a build failed now and then with
// "missing import of defining module 'CDispatch'" as files were added).
internal import CDispatch
import Foundation
import Testing

/// A running `--self` agent chooses its targets for every revision: a target a new revision binds
/// to the host is reconciled without a restart, on the agent's own ref, and a target bound to
/// another host stays untouched.
@Suite struct AgentRevisionTests {
    @Test func aRunningAgentTakesATargetANewRevisionBindsToItsHost() async throws {
        try await withTemporaryDirectory { dir in
            let fleet = try FleetFixture(in: dir, count: 2)
            let other = try fleet.snapshot(1)
            let daemon = try DaemonProcess(["--repo", fleet.origin, "--state-dir", fleet.state(0), "--poll", "1",
                                            "--self", "--identity-root", fleet.identity(0)], logPath: dir + "/daemon.log")
            let ref = fleet.hostRef(0)
            func targets() -> Set<String> { Set((try? fleet.trailers("Bulwark-Target", on: ref)) ?? []) }
            #expect(daemon.wait(seconds: 60) { targets() == ["web-0"] }, "\(daemon.log)")

            // A new revision: a second tree on the same host, bound by its hostname label, and a
            // tree bound to another host (web-1's machine id).
            try DemoHost.create(at: dir + "/host-0-data")
            try DemoHost.create(at: dir + "/host-1-data")
            let work = dir + "/work"
            try git("clone", "-q", fleet.origin, work)
            try write(work + "/controllers/more-targets.yaml", """
                apiVersion: bulwark/v1
                kind: Target
                metadata:
                  name: web-0-data
                  labels: {role: baseline, hostname: web-0}
                spec: {adapter: host, root: \(dir)/host-0-data}
                ---
                apiVersion: bulwark/v1
                kind: Target
                metadata:
                  name: web-1-data
                  labels: {role: baseline, machine-id: \(fleet.machineID(1))}
                spec: {adapter: host, root: \(dir)/host-1-data}
                """)
            try git("add", "-A", in: work)
            try git("commit", "-qm", "a data tree on web-0 and on web-1", in: work)
            try git("push", "-q", "origin", "main", in: work)
            let untouched = try Self.snapshot(dir + "/host-1-data")

            #expect(daemon.wait(seconds: 60) { targets() == ["web-0", "web-0-data"] }, "\(daemon.log)")
            #expect(daemon.log.contains("targets=web-0,web-0-data"), "\(daemon.log)")
            let results = try git("--git-dir", fleet.origin, "log", "--format=%(trailers:key=Bulwark-Target,key=Bulwark-Result,separator=%x20)", ref)
            #expect(results.contains("Bulwark-Target: web-0-data Bulwark-Result: verified"), "\(results)")
            #expect(daemon.terminate() == 0)
            // What the revision bound to another host was not touched, and no other ref appeared.
            #expect(try Self.snapshot(dir + "/host-1-data") == untouched)
            #expect(try fleet.snapshot(1) == other)
            #expect(try fleet.refs(under: "bulwark/") == [ref])
        }
    }

    static func snapshot(_ root: String) throws -> [String: String] {
        var result: [String: String] = [:]
        let walker = FileManager.default.enumerator(atPath: root)
        while let relative = walker?.nextObject() as? String {
            var info = stat()
            guard lstat(root + "/" + relative, &info) == 0, info.st_mode & 0o170000 == 0o100000 else { continue }
            result[relative] = String(info.st_mode & 0o7777, radix: 8) + ":" + (try read(root + "/" + relative))
        }
        return result
    }
}
