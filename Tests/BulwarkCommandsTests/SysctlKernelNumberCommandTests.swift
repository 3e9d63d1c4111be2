import BulwarkTestSupport
import Foundation
import Testing

/// Outside review (H3): a kernel parameter written as the kernel reads it but not as Bulwark
/// compared it (`kernel.randomize_va_space: "0x0"`, `net.ipv4.ip_forward: "0x1"`) went past the
/// ASLR floor and the weakening rule, was persisted and written at runtime; a finding rule with
/// autoMerge merged `{{evidence}}` `0x0` into the policy. Through the binary, against a real
/// origin and read back with git: each form the kernel reads as the weak value (hexadecimal,
/// octal, `-0`, any number but 0 where only 0 and 1 are listed) is blocked or held and
/// recorded, the finding's change refused and recorded; the twins (the same strong value in
/// hexadecimal, a stronger one from a finding) go through.
@Suite struct SysctlKernelNumberCommandTests {
    /// Each recorded resource's decisions, newest first, from the audit branch.
    static func decisions(_ s: Scenario) throws -> [String: [String]] { try HostWeakeningNewCommandTests.decisions(s) }

    static let aslr = "Sysctl/cis-1.5.1-randomize-va-space", forwarding = "Sysctl/cis-3.3.1-ip-forward"

    @Test func aWeakValueWrittenAsTheKernelReadsItIsRefusedAndRecordedAndItsHexTwinApplied() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let first = try s.run("apply")
            #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")
            let before = try s.snapshot()
            let file = "desired-state/hosts/sysctl.yaml", shipped = try read(s.policy + "/" + file)
            /// The shipped file with ASLR's and forwarding's values replaced.
            func commit(aslr: String = "2", forward: String = "0") throws {
                try s.commitPolicy(file, shipped.replacingOccurrences(of: "kernel.randomize_va_space: 2", with: "kernel.randomize_va_space: \(aslr)")
                    .replacingOccurrences(of: "net.ipv4.ip_forward: 0", with: "net.ipv4.ip_forward: \(forward)"))
            }

            // ASLR off, in every form the kernel reads as 0: under the floor, blocked.
            for value in ["0x0", "00", "-0", "0X00"] {
                try commit(aslr: "\"\(value)\"")
                let blocked = try s.run("apply")
                #expect(blocked.stdout.contains("kernel.randomize_va_space = \(value), which the kernel reads as 0, would turn address space "
                                                + "randomization off"), "\(value)\n\(blocked.stdout)\n\(blocked.stderr)")
                let recorded = try Self.decisions(s)[Self.aslr] ?? []
                #expect(recorded.first == "blocked", "\(value): \(recorded)")
                #expect(try s.snapshot() == before, "\(value): nothing blocked is written")
            }
            // Forwarding on, as 1 in hexadecimal and as 2 (the kernel forwards at any number but 0): held.
            for value in ["0x1", "2", "-1"] {
                try commit(forward: "\"\(value)\"")
                let held = try s.run("apply")
                let reads = value == "0x1" ? "reads" : "takes"
                #expect(held.stdout.contains("net.ipv4.ip_forward: 0 → \(value) (moves from 0 to the weaker \(value), which the kernel \(reads) as 1)"),
                        "\(value)\n\(held.stdout)\n\(held.stderr)")
                let recorded = try Self.decisions(s)[Self.forwarding] ?? []
                #expect(recorded.first == "held", "\(value): \(recorded)")
                #expect(try s.snapshot() == before, "\(value): nothing held is written")
            }

            // The twins: the same strong values in hexadecimal. Applied, persisted as written.
            try commit(aslr: "\"0x2\"", forward: "\"0x0\"")
            let applied = try s.run("apply")
            #expect(applied.status == 0 && !applied.stdout.contains("weakens the policy"), "\(applied.stdout)\n\(applied.stderr)")
            let after = try Self.decisions(s)
            #expect(after[Self.aslr]?.first == "applied" && after[Self.forwarding]?.first == "applied", "\(after)\n\(applied.stdout)")
            #expect(try read(s.host + "/etc/sysctl.d/zz-bulwark.conf").contains("\nkernel.randomize_va_space = 0x2\n"))

            // proc/sys shows a number in decimal, however it was written, as the kernel does:
            // in sync, no fix and no record at the next pass.
            try write(s.host + "/proc/sys/kernel/randomize_va_space", "2\n")
            try write(s.host + "/proc/sys/net/ipv4/ip_forward", "0\n")
            let recorded = try git("--git-dir", s.origin, "rev-parse", "bulwark/audit")
            let again = try s.run("apply")
            #expect(again.status == 0, "\(again.stdout)\n\(again.stderr)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "bulwark/audit") == recorded, "\(again.stdout)")
        }
    }

    /// A finding rule with autoMerge that sets ASLR from the finding's evidence: `0x0` is `0`
    /// to the kernel, and a finding never lowers policy. Refused and recorded, main untouched;
    /// a finding's stronger value (ptrace_scope `0x2` over `1`) is merged.
    @Test func aFindingsHexValueThatLowersPolicyIsRefusedAndRecordedAndAStrongerOneMerged() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            func rule(_ name: String, _ resource: String, _ key: String) -> String {
                """
                apiVersion: bulwark/v1
                kind: FindingRule
                metadata: {name: \(name)}
                spec:
                  match: {source: lynis, control: \(name)}
                  action: propose
                  autoMerge: true
                  change:
                    resource: \(resource)
                    set: {'"\(key)"': "{{evidence}}"}

                """
            }
            try s.commitPolicy("finding-rules/kernel.yaml", rule("aslr", Self.aslr, "kernel.randomize_va_space") + "---\n"
                               + rule("ptrace", "Sysctl/cis-1.5.2-ptrace-scope", "kernel.yama.ptrace_scope"), message: "finding rules")
            func ingest(_ id: String, _ control: String, _ evidence: String) throws -> [String: Any] {
                let path = s.dir + "/finding-\(id).json"
                try write(path, #"[{"id": "\#(id)", "source": "lynis", "resource": "local", "target": "local", "control": "\#(control)", "#
                          + #""evidence": "\#(evidence)", "severity": "high"}]"#)
                let out = try bulwark(["ingest", path, "--output", "json", "--repo", s.origin, "--state-dir", s.state])
                let report = (try? JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any]) ?? [:]
                return (report["items"] as? [[String: Any]])?.first ?? ["stderr": out.stderr, "stdout": out.stdout]
            }
            let main = try git("--git-dir", s.origin, "rev-parse", "main")
            for (id, evidence) in [("hex-0", "0x0"), ("octal-0", "00"), ("minus-0", "-0")] {
                let item = try ingest(id, "aslr", evidence)
                #expect(item["outcome"] as? String == "not-proposed", "\(evidence): \(item)")
                #expect((item["detail"] as? String)?.contains("never lowers policy") == true, "\(evidence): \(item)")
                let record = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit")
                #expect(record.contains("Bulwark-Decision: refused") && record.contains("Bulwark-Finding: \(id)"), "\(record)")
                #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main, "\(evidence): main untouched")
            }
            #expect(try git("--git-dir", s.origin, "show", "main:desired-state/hosts/sysctl.yaml").contains("  kernel.randomize_va_space: 2\n"))

            let stronger = try ingest("ptrace-2", "ptrace", "0x2")
            #expect(stronger["outcome"] as? String == "merged", "\(stronger)")
            #expect(try git("--git-dir", s.origin, "show", "main:desired-state/hosts/sysctl.yaml").contains("kernel.yama.ptrace_scope: \"0x2\""))
        }
    }
}
