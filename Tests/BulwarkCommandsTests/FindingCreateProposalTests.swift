import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// A `propose` rule with `create: true` proposes a new resource when the policy has none for
/// what the finding names: a new manifest on the proposal branch, validated and planned like
/// any proposal, accepted by a person and then applied. A new resource is never merged by
/// itself (whatever `autoMerge` says), a name a finding makes up that is not a resource name is
/// not proposed, a rule without `create` proposes nothing, and a resolved finding closes it.
@Suite struct FindingCreateProposalTests {
    static func rule(create: Bool = true, autoMerge: Bool = false) -> String {
        """
        apiVersion: bulwark/v1
        kind: FindingRule
        metadata: {name: kernel-hardening}
        spec:
          match: {control: "KRNL-*"}
          action: propose
          autoMerge: \(autoMerge)
          change:
            resource: "Sysctl/{{id}}"
            create: \(create)
            set: {'"kernel.kptr_restrict"': "2"}

        """
    }

    /// An OCSF Compliance Finding about a kernel parameter no resource of the policy manages.
    static func finding(id: String, resolved: Bool = false) -> String {
        """
        {"class_uid": 2003, "class_name": "Compliance Finding", "activity_id": 1, "severity_id": 3, "severity": "Medium",
         "status_id": \(resolved ? 4 : 1), "status": "\(resolved ? "Resolved" : "New")",
         "metadata": {"version": "1.3.0", "product": {"name": "Lynis", "vendor_name": "CISOfy"}},
         "finding_info": {"uid": "\(id)", "title": "kernel pointers are shown to unprivileged users",
                          "first_seen_time_dt": "\(Timestamp.format(Date()))", "src_url": "https://cisofy.com/lynis/controls/KRNL-6000/"},
         "compliance": {"control": "KRNL-6000", "status": "\(resolved ? "Pass" : "Fail")"},
         "device": {"hostname": "local"}, "resources": [{"uid": "local", "type": "host"}]}
        """
    }

    func ingest(_ s: Scenario, _ document: String) throws -> (status: Int32, item: [String: Any], output: String) {
        let path = s.dir + "/finding-\(UUID().uuidString.prefix(6)).json"
        try write(path, document)
        let out = try s.run("ingest", path, "--output", "json")
        let report = (try? JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any]) ?? [:]
        return (out.status, (report["items"] as? [[String: Any]])?.first ?? [:], out.stdout + out.stderr)
    }

    func runtime(_ s: Scenario) throws -> String {
        try read(s.host + "/proc/sys/kernel/kptr_restrict").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func aFindingWithoutAResourceBecomesANewManifestForReviewThatApplies() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try write(s.host + "/proc/sys/kernel/kptr_restrict", "0\n")
            // A second host, drifted the same way: the finding is about `local` only.
            try run("/bin/cp", ["-a", s.host, dir + "/web-2"])
            try s.commitPolicy("controllers/web-2.yaml", """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: web-2}
                spec: {adapter: host, root: \(dir)/web-2}

                """, message: "a second host")
            try s.commitPolicy("finding-rules/kernel.yaml", Self.rule(), message: "finding rule: kernel hardening")
            let id = "krnl-6000.local"
            let proposed = try ingest(s, Self.finding(id: id))
            #expect(proposed.status == 2 && proposed.item["outcome"] as? String == "proposed", "\(proposed.output)")
            let branch = "bulwark/proposals/\(id)"
            let manifest = try git("--git-dir", s.origin, "show", "\(branch):desired-state/proposed/sysctl-\(id).yaml")
            #expect(manifest.contains("kind: Sysctl\nmetadata:\n  name: \(id)\n"), "\(manifest)")
            #expect(manifest.contains("spec:\n  kernel.kptr_restrict: 2\n"), "\(manifest)")
            #expect(manifest.contains("    finding: \"\(id)\"\n"), "\(manifest)")
            #expect(manifest.contains("\ntargets: {names: [\"local\"]}\nspec:\n"), "\(manifest)")
            let message = try git("--git-dir", s.origin, "log", "-1", "--format=%B", branch)
            #expect(message.contains("Change: desired-state/proposed/sysctl-\(id).yaml: create Sysctl/\(id); set \"kernel.kptr_restrict\" = 2"), "\(message)")
            #expect(message.contains("Plan: passed") && message.contains("- local Sysctl/\(id): kernel.kptr_restrict: 0 -> 2 (applied)"), "\(message)")
            #expect(!message.contains("- web-2 "), "only the host the finding is about: \(message)")
            // Only the branch: main, the policy the loop applies, and the host are as they were.
            #expect(try git("--git-dir", s.origin, "ls-tree", "-r", "--name-only", "main").contains("proposed/") == false)
            #expect(try s.run("apply").status == 0)
            #expect(try runtime(s) == "0")

            // A person accepts it, once they have read the diff: its values come from the finding,
            // and without signatures checked nothing shows Bulwark wrote them; the next apply sets
            // the parameter and records the fix citing the finding.
            let main = try git("--git-dir", s.origin, "rev-parse", "main")
            let unreviewed = try s.run("accept", id)
            #expect(unreviewed.status == 1 && unreviewed.stderr.contains("run again with --reviewed"), "\(unreviewed.stderr)")
            #expect(unreviewed.stdout.contains("+  kernel.kptr_restrict") || unreviewed.stdout.contains("+ "), "the diff is shown: \(unreviewed.stdout)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main)
            let accepted = try s.run("accept", id, "--reviewed")
            #expect(accepted.status == 0, "\(accepted.stdout)\(accepted.stderr)")
            let apply = try s.run("apply")
            #expect(apply.status == 0, "\(apply.stdout)\(apply.stderr)")
            #expect(try runtime(s) == "2")
            #expect(try read(dir + "/web-2/proc/sys/kernel/kptr_restrict") == "0\n", "the other host is left as it was")
            #expect(try s.trailers("Bulwark-Finding") == [id])
            // Reported open again after its fix was verified: a fix that did not hold (`reopened`,
            // exit 2), and nothing more is proposed (the branch is where it was).
            let tip = try git("--git-dir", s.origin, "rev-parse", branch)
            let again = try ingest(s, Self.finding(id: id))
            #expect(again.status == 2 && again.item["outcome"] as? String == "reopened", "\(again.output)")
            #expect(try git("--git-dir", s.origin, "rev-parse", branch) == tip)
        }
    }

    @Test func aNewResourceIsNeverMergedByItselfNorMadeUpFromAHostileNameNorWithoutCreate() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try write(s.host + "/proc/sys/kernel/kptr_restrict", "0\n")
            // autoMerge: still a proposal for a person.
            try s.commitPolicy("finding-rules/kernel.yaml", Self.rule(autoMerge: true), message: "auto-merging rule")
            let main = try git("--git-dir", s.origin, "rev-parse", "main")
            let auto = try ingest(s, Self.finding(id: "krnl-auto"))
            #expect(auto.item["outcome"] as? String == "proposed", "\(auto.output)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main)
            let message = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/proposals/krnl-auto")
            #expect(message.contains("Not merged automatically: a new resource is always reviewed by a person."), "\(message)")

            // A name that is not a resource name (the scanner's id is its text): nothing is written anywhere.
            let refs = try git("--git-dir", s.origin, "for-each-ref")
            for hostile in ["../../etc/Passwd", "KRNL 6000", "a/b"] {
                let refused = try ingest(s, Self.finding(id: hostile))
                #expect(refused.item["outcome"] as? String == "not-proposed", "\(hostile): \(refused.output)")
            }
            #expect(try git("--git-dir", s.origin, "for-each-ref") == refs)

            // A rule without create: the missing resource is named, and nothing is proposed.
            try s.commitPolicy("finding-rules/kernel.yaml", Self.rule(create: false), message: "rule without create")
            let refsNow = try git("--git-dir", s.origin, "for-each-ref")
            let plain = try ingest(s, Self.finding(id: "krnl-plain"))
            #expect(plain.item["outcome"] as? String == "not-proposed", "\(plain.output)")
            #expect((plain.item["detail"] as? String)?.contains("no resource Sysctl/krnl-plain in the policy") == true, "\(plain.item)")
            #expect(try git("--git-dir", s.origin, "for-each-ref") == refsNow)
        }
    }

    /// A finding that names no target of the policy creates nothing (the new resource would bind
    /// to every target); and a second proposal that would clash with one accepted since (both set
    /// the same key on the same host) is refused by `accept`, so the policy branch never holds a
    /// revision that every later pass refuses. The first is accepted.
    @Test func aNewResourceNeedsItsTargetAndAcceptRefusesOneThatNoLongerValidates() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try write(s.host + "/proc/sys/kernel/kptr_restrict", "0\n")
            try s.commitPolicy("finding-rules/kernel.yaml", Self.rule(), message: "finding rule")
            let nowhere = try ingest(s, Self.finding(id: "krnl-nowhere").replacingOccurrences(of: "\"local\"", with: "\"elsewhere\""))
            #expect(nowhere.item["outcome"] as? String == "not-proposed", "\(nowhere.output)")
            #expect((nowhere.item["detail"] as? String)?.contains("names no target of the policy") == true, "\(nowhere.item)")

            #expect(try ingest(s, Self.finding(id: "krnl-a")).item["outcome"] as? String == "proposed")
            #expect(try ingest(s, Self.finding(id: "krnl-b")).item["outcome"] as? String == "proposed")
            let first = try s.run("accept", "krnl-a", "--reviewed")
            #expect(first.status == 0, "\(first.stdout)\(first.stderr)")
            let main = try git("--git-dir", s.origin, "rev-parse", "main")
            let second = try s.run("accept", "krnl-b", "--reviewed")
            #expect(second.status == 1 && second.stderr.contains("does not validate on top of main"), "\(second.stderr)")
            #expect(second.stderr.contains("kernel.kptr_restrict"), "\(second.stderr)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main)
            #expect(try s.run("apply").status == 0)
            #expect(try runtime(s) == "2")
        }
    }

    @Test func aResolvedFindingClosesTheProposalOfANewResource() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try write(s.host + "/proc/sys/kernel/kptr_restrict", "0\n")
            try s.commitPolicy("finding-rules/kernel.yaml", Self.rule(), message: "finding rule")
            #expect(try ingest(s, Self.finding(id: "krnl-closed")).item["outcome"] as? String == "proposed")
            let closed = try ingest(s, Self.finding(id: "krnl-closed", resolved: true))
            #expect(closed.item["outcome"] as? String == "closed", "\(closed.output)")
            let branch = "bulwark/proposals/krnl-closed"
            let left = try git("--git-dir", s.origin, "show", "\(branch):desired-state/proposed/sysctl-krnl-closed.yaml")
            #expect(left.hasPrefix("# Proposed for finding krnl-closed; closed") && !left.contains("kind:"), "\(left)")
            let refused = try s.run("accept", "krnl-closed", "--reviewed")
            #expect(refused.status == 1 && refused.stderr.contains("is closed"), "\(refused.stderr)")
            // The closed branch's revision is still a valid policy.
            let work = dir + "/closed"
            try git("clone", "-q", "-b", branch, s.origin, work)
            let validate = try run(try bulwarkExecutable(), ["validate", work])
            #expect(validate.status == 0, "\(validate.stdout)\(validate.stderr)")
        }
    }
}
