@testable import BulwarkCommands
@testable import BulwarkRuntime
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// Finding rules and proposals: the manifest edits keep everything else of a file, rules are
/// checked when loaded, and a finding travels to a reviewed, applied, recorded fix.
@Suite struct FindingRuleTests {
    static func baseline() -> [String: String] {
        Baseline.files(hostRoot: "/srv/host").mapValues { String(decoding: $0, as: UTF8.self) }
    }

    static func load(_ files: [String: String]) throws -> DesiredState {
        try DesiredStateLoader(registry: Bulwark.registry()).load(files.map { SourceFile(path: $0.key, contents: Array($0.value.utf8)) },
                                                                  revision: "test")
    }

    /// The lines of `after` that are not in `before`, and the reverse.
    static func changedLines(_ before: String, _ after: String) -> (added: [String], removed: [String]) {
        let old = before.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let new = after.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        return (new.filter { !old.contains($0) }, old.filter { !new.contains($0) })
    }

    @Test func addingAnAddressToAFlowListKeepsCommentsAndOtherDocuments() throws {
        var files = Self.baseline()
        let path = "desired-state/firewall/blocklist.yaml"
        let before = try #require(files[path])
        let change = ChangeTemplate(resource: "FirewallBlocklist/known-bad", add: [.init(path: ["addresses"], value: "198.51.100.23")])
        let citation = FindingCitation(id: "wazuh-5712", source: "ocsf", firstSeen: "2025-12-01T08:00:00.000Z", priority: "P2")
        let after = try ManifestEdit.apply(change, annotations: citation.annotations, to: ResourceID(kind: "FirewallBlocklist", name: "known-bad"),
                                           in: before)
        let (added, removed) = Self.changedLines(before, after)
        #expect(added == [#"  annotations: {severity: high, finding: "wazuh-5712", finding-first-seen: "2025-12-01T08:00:00.000Z", finding-priority: "P2", finding-source: "ocsf"}"#,
                          #"  addresses: [203.0.113.0/24, "2001:db8:bad::/48", "198.51.100.23"]"#], "\(after)")
        #expect(removed.count == 2)
        #expect(after.contains("# Addresses whose traffic is dropped on every edge target."))
        files[path] = after
        let state = try Self.load(files)
        let resource = try #require(state.resources[ResourceID(kind: "FirewallBlocklist", name: "known-bad")])
        #expect(FindingCitation(annotations: resource.annotations) == citation)
        // Adding it again changes nothing.
        #expect(try ManifestEdit.apply(change, annotations: citation.annotations, to: resource.id, in: after) == after)
    }

    @Test func settingAnSSHDKeywordReplacesOrInsertsOneLine() throws {
        let path = "desired-state/hosts/sshd.yaml"
        let before = try #require(Self.baseline()[path])
        let id = ResourceID(kind: "SSHDConfig", name: "cis-5.1.16-max-auth-tries")
        let replaced = try ManifestEdit.apply(ChangeTemplate(resource: id.description, set: [.init(path: ["MaxAuthTries"], value: "3")]),
                                              annotations: [:], to: id, in: before)
        #expect(Self.changedLines(before, replaced).added == ["  MaxAuthTries: 3"])
        let inserted = try ManifestEdit.apply(ChangeTemplate(resource: id.description, set: [.init(path: ["MaxSessions"], value: "10")]),
                                              annotations: [:], to: id, in: before)
        #expect(Self.changedLines(before, inserted).added == ["  MaxSessions: 10"])
        #expect(Self.changedLines(before, inserted).removed.isEmpty)
        var files = Self.baseline()
        files[path] = inserted
        let spec = try #require(try Self.load(files).resources[id]).spec.properties
        #expect(spec.contains { $0.name == "MaxSessions" } && spec.contains { $0.name == "MaxAuthTries" && $0.value == "4" })
    }

    @Test func aHostileValueStaysOneQuotedValue() throws {
        let path = "desired-state/firewall/blocklist.yaml"
        let before = try #require(Self.baseline()[path])
        let id = ResourceID(kind: "FirewallBlocklist", name: "known-bad")
        let hostile = "1.2.3.4\"]\n  evil: [x] # \u{2028}, {\"a\": 1}"
        let after = try ManifestEdit.apply(ChangeTemplate(resource: id.description, add: [.init(path: ["addresses"], value: hostile)]),
                                           annotations: ["finding": "id\"}\nkind: Target"], to: id, in: before)
        let document = try ManifestEdit.find(id, in: after)
        guard case .mapping(let pairs) = document.value, case .mapping(let spec)? = pairs.first(where: { $0.key == "spec" })?.value.value,
              case .sequence(let items)? = spec.first(where: { $0.key == "addresses" })?.value.value,
              case .mapping(let metadata)? = pairs.first(where: { $0.key == "metadata" })?.value.value,
              case .mapping(let annotations)? = metadata.first(where: { $0.key == "annotations" })?.value.value else {
            Issue.record("the document's shape changed: \(after)")
            return
        }
        #expect(spec.count == 1)
        #expect(items.count == 3 && items.last?.value == .scalar(hostile))
        #expect(annotations.first { $0.key == "finding" }?.value.value == .scalar("id\"}\nkind: Target"))
        // The loader then refuses the address itself: the proposal would not validate.
        var files = Self.baseline()
        files[path] = after
        #expect(throws: ValidationFailure.self) { try Self.load(files) }
    }

    @Test func aVulnerabilityFindingFillsAPackageTemplate() throws {
        // Grype's finding about openssh-server, as the scanner wrote it.
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/findings/grype.json")
        let finding = try #require(try FindingParser.parse(Array(try Data(contentsOf: url))).first)
        let template = ChangeTemplate(resource: "DebianPackage/{{package}}", set: [.init(path: ["minVersion"], value: "{{fixedVersion}}")])
        let change = try template.render(for: finding)
        #expect(change.resource == "DebianPackage/openssh-server" && change.set.first?.value == "1:9.2p1-2+deb12u3")
        // The packages kind's manifest (as its engineer documents it) gets the minimum, quoted.
        let manifest = """
            apiVersion: bulwark/v1
            kind: DebianPackage
            metadata: {name: ssh-server}
            spec:
              name: openssh-server
              minVersion: "1:9.2p1-2+deb12u1"  # the last advisory we patched
            """
        let edited = try ManifestEdit.apply(change, annotations: [:], to: ResourceID(kind: "DebianPackage", name: "ssh-server"), in: manifest)
        #expect(edited.contains(#"  minVersion: "1:9.2p1-2+deb12u3"  # the last advisory we patched"#), "\(edited)")
        // A resource named otherwise is found by its subject (here an account, as the package kind's is the package).
        let state = try Self.load(Self.baseline())
        #expect(try ProposalEngine.resolve("UserAccount/guest", in: state).get().id == ResourceID(kind: "UserAccount", name: "cis-5.4.2.8-lock-guest"))
        #expect(throws: TemplateError.self) { try ProposalEngine.resolve("UserAccount/nobody-here", in: state).get() }
    }

    /// A finding's edit changes its own resource only (`ProposalEngine.otherResourcesChanged`):
    /// harmful, the edit also reaches the next resource of the file (an outside review placed a
    /// `mode: "0644"` meant for lab-b into lab-a through line breaks libyaml counts and the editor
    /// did not); that resource is named, so the change is refused before any check that judges
    /// lab-b alone. Legitimate: lab-b changed, lab-a moved down a line by the edit, is not.
    @Test func aFindingsEditThatReachesAnotherResourceIsNamed() throws {
        func lab(_ bMode: String, _ aMode: String, gap: String = "") -> [String: String] {
            var files = Self.baseline()
            files["desired-state/hosts/lab.yaml"] = """
                apiVersion: bulwark/v1
                kind: FileMode
                metadata: {name: lab-b}
                spec: {path: /srv/lab-b, owner: daemon, mode: "\(bMode)"}
                \(gap)---
                apiVersion: bulwark/v1
                kind: FileMode
                metadata: {name: lab-a}
                spec: {path: /srv/lab-a, mode: "\(aMode)"}

                """
            return files
        }
        let before = try Self.load(lab("0644", "0600"))
        let labB = ResourceID(kind: "FileMode", name: "lab-b"), labA = ResourceID(kind: "FileMode", name: "lab-a")
        let reached = try Self.load(lab("0600", "0644"))
        #expect(ProposalEngine.otherResourcesChanged(besides: labB, previous: before, changed: reached) == [labA])
        let own = try Self.load(lab("0600", "0600", gap: "# cited: a finding\n"))
        #expect(own.resources[labA]?.location != before.resources[labA]?.location, "the edit moved lab-a")
        #expect(ProposalEngine.otherResourcesChanged(besides: labB, previous: before, changed: own).isEmpty)
        var dropped = lab("0600", "0600")
        dropped["desired-state/hosts/lab.yaml"] = dropped["desired-state/hosts/lab.yaml"]?.components(separatedBy: "---\n").first
        #expect(ProposalEngine.otherResourcesChanged(besides: labB, previous: before, changed: try Self.load(dropped)) == [labA])
    }

    @Test func findingRulesAreCheckedWhenLoaded() throws {
        var files = Self.baseline()
        files["finding-rules/ssh.yaml"] = """
            apiVersion: bulwark/v1
            kind: FindingRule
            metadata: {name: block-brute-force}
            spec:
              match: {source: ocsf, control: "5712", severity: high}
              action: propose
              autoMerge: true
              change:
                resource: FirewallBlocklist/known-bad
                add: {addresses: "{{address}}"}
              sla: {P1: 4h}
            """
        let state = try Self.load(files)
        let rule = try #require(state.findingRules.first)
        #expect(rule.action == .propose && rule.autoMerge && rule.sla.limit(.p1) == .seconds(14_400) && rule.sla.limit(.p2) == .seconds(7 * 86_400))
        let finding = Finding(resource: "edge-1", control: "5712", firstObservedAt: Date(), source: "ocsf", severity: .high, address: "198.51.100.23")
        #expect(rule.matches(finding))
        #expect(!rule.matches(Finding(resource: "edge-1", control: "5712", firstObservedAt: Date(), source: "ocsf", severity: .medium)))
        #expect(try rule.change?.render(for: finding).add.first?.value == "198.51.100.23")
        // The finding without an address: the template says which field is missing.
        #expect(throws: TemplateError.self) { try rule.change?.render(for: Finding(resource: "r", control: "5712", firstObservedAt: Date())) }

        for (spec, message) in [
            ("action: propose", "needs a change"),
            ("action: reconcile\n  autoMerge: true", "only a propose rule"),
            ("action: propose\n  change: {resource: FirewallBlocklist/known-bad, add: {addresses: \"{{secret}}\"}}", "unknown or malformed placeholder"),
            ("action: propose\n  change: {resource: NoSuchKind/x, set: {a: b}}", "expected Kind/name"),
            ("action: explode", "expected one of reconcile, propose, ignore"),
            ("action: reconcile\n  sla: {P9: 1h}", "expected one of P1"),
        ] {
            var broken = Self.baseline()
            broken["finding-rules/broken.yaml"] = "apiVersion: bulwark/v1\nkind: FindingRule\nmetadata: {name: broken}\nspec:\n  \(spec)\n"
            do {
                _ = try Self.load(broken)
                Issue.record("accepted: \(spec)")
            } catch {
                #expect(String(describing: error).contains(message), "\(error)")
            }
        }
        // A FindingRule belongs under finding-rules/.
        var misplaced = Self.baseline()
        misplaced["desired-state/rule.yaml"] = files["finding-rules/ssh.yaml"]
        #expect(throws: ValidationFailure.self) { try Self.load(misplaced) }
    }

    /// `report` lists a reopened finding, open until a later verified fix of the same resource
    /// citing it; the reopening does not count as a first fix or an open finding for MTTR and SLA.
    @Test func findingsSummaryListsReopenedFindingsUntilFixedAgain() {
        let seen = Timestamp.parse("2026-11-01T00:00:00Z")!
        func entry(_ decision: Decision, verified: Date?, at offset: Double, reopened: Bool = false) -> RemediationReport.Entry {
            var entry = RemediationReport.Entry(target: "web-1", resource: "SSHDConfig/x", controller: "c", severity: .high,
                                                decision: decision, result: verified == nil ? nil : .verified,
                                                detectedAt: seen.addingTimeInterval(offset), verifiedAt: verified)
            entry.finding = FindingMark(id: "f", source: "ocsf", priority: .p2, firstSeen: seen)
            entry.reopened = reopened
            return entry
        }
        let fixedOnce = [entry(.applied, verified: seen.addingTimeInterval(3600), at: 3000),
                         entry(.reported, verified: nil, at: 86_400, reopened: true)]
        let open = FindingsSummary(entries: fixedOnce, since: nil, now: seen.addingTimeInterval(90 * 86_400), sla: SLAPolicy())
        #expect(open.fixed == 1 && open.mttr.maxSeconds == 3600)
        #expect(open.reopened.count == 1 && open.reopened.first?.fixedAgainAt == nil)
        #expect(open.slaBreaches.isEmpty, "fixed within its SLA; the reopening is listed on its own")
        #expect(open.lines().contains { $0.contains("reopened 2026-11-02T00:00:00.000Z, open") }, "\(open.lines())")
        let again = FindingsSummary(entries: fixedOnce + [entry(.applied, verified: seen.addingTimeInterval(90_000), at: 89_000)],
                                    since: nil, now: seen.addingTimeInterval(90 * 86_400), sla: SLAPolicy())
        #expect(again.reopened.first?.fixedAgainAt == seen.addingTimeInterval(90_000))
        #expect(again.fixed == 1, "MTTR stays first seen to first fix")
        let none = FindingsSummary(entries: [fixedOnce[0]], since: nil, now: seen, sla: SLAPolicy())
        #expect(none.reopened.isEmpty)
    }

    @Test func findingsSummaryMeasuresFromFirstSeenAndListsBreaches() {
        let seen = Timestamp.parse("2026-11-01T00:00:00Z")!
        func entry(_ finding: String, priority: Priority, verified: Date?, source: String = "trivy") -> RemediationReport.Entry {
            var entry = RemediationReport.Entry(target: "web-1", resource: "SSHDConfig/x", controller: "c", severity: .high,
                                                decision: verified == nil ? .held : .applied, result: verified == nil ? nil : .verified,
                                                detectedAt: seen.addingTimeInterval(3600), verifiedAt: verified)
            entry.finding = FindingMark(id: finding, source: source, priority: priority, firstSeen: seen)
            return entry
        }
        let entries = [entry("a", priority: .p1, verified: seen.addingTimeInterval(7200)),
                       entry("a", priority: .p1, verified: seen.addingTimeInterval(99_000)),
                       entry("b", priority: .p1, verified: seen.addingTimeInterval(2 * 86_400), source: "grype"),
                       entry("c", priority: .p2, verified: nil)]
        let summary = FindingsSummary(entries: entries, since: nil, now: seen.addingTimeInterval(8 * 86_400), sla: SLAPolicy())
        #expect(summary.fixed == 2)
        #expect(summary.bySource["trivy"]?.maxSeconds == 7200)
        #expect(summary.byPriority["P1"]?.fixes == 2)
        #expect(summary.slaBreaches.map(\.finding) == ["b", "c"])
        #expect(summary.slaBreaches.first { $0.finding == "c" }?.fixed == false)
        #expect(summary.lines().contains { $0.contains("SLA breaches:") })
    }
}

/// The whole loop on the foundation issue's setup, through the real binary and git: a finding
/// → a proposal branch with a passing plan → accepted → fixed on the host root → an audit record
/// citing the finding → `report` MTTR from the finding's first-seen time.
@Suite struct FindingProposalEndToEndTests {
    static let rule = """
        # A compliance scanner's MaxAuthTries finding proposes the stricter value for review.
        apiVersion: bulwark/v1
        kind: FindingRule
        metadata: {name: sshd-max-auth-tries}
        spec:
          match: {control: "SSH-7408*", severity: medium}
          action: propose
          change:
            resource: SSHDConfig/cis-5.1.16-max-auth-tries
            set: {MaxAuthTries: "3"}

        """

    /// An OCSF Compliance Finding as a host scanner writes it, first seen `firstSeen`.
    static func finding(id: String, control: String = "SSH-7408-MaxAuthTries", firstSeen: Date, resolved: Bool = false,
                        product: String = "Lynis") -> String {
        """
        {"class_uid": 2003, "class_name": "Compliance Finding", "activity_id": 1, "severity_id": 3, "severity": "Medium",
         "status_id": \(resolved ? 4 : 1), "status": "\(resolved ? "Resolved" : "New")",
         "metadata": {"version": "1.3.0", "product": {"name": "\(product)", "vendor_name": "CISOfy"}},
         "finding_info": {"uid": "\(id)", "title": "sshd allows too many authentication attempts",
                          "first_seen_time_dt": "\(Timestamp.format(firstSeen))", "src_url": "https://cisofy.com/lynis/controls/SSH-7408/"},
         "compliance": {"control": "\(control)", "status": "\(resolved ? "Pass" : "Fail")"},
         "device": {"hostname": "local"}, "resources": [{"uid": "local", "type": "host"}]}
        """
    }

    func ingest(_ s: Scenario, _ document: String, signingKey: String? = nil) throws -> (status: Int32, report: [String: Any], stderr: String) {
        let path = s.dir + "/finding-\(UUID().uuidString.prefix(6)).json"
        try write(path, document)
        let out = try bulwark(["ingest", path, "--output", "json", "--repo", s.origin, "--state-dir", s.state]
                              + (signingKey.map { ["--signing-key", $0, "--secrets-dir", s.dir] } ?? []))
        let report = (try? JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any]) ?? [:]
        return (out.status, report, out.stdout + out.stderr)
    }

    func sshd(_ s: Scenario, _ keyword: String) throws -> String? {
        try read(s.host + "/etc/ssh/sshd_config").split(separator: "\n")
            .first { $0.lowercased().hasPrefix(keyword.lowercased() + " ") }.map { String($0.split(separator: " ").last ?? "") }
    }

    @Test func aFindingBecomesAReviewedFixRecordedWithMTTRFromFirstSeen() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            #expect(try sshd(s, "MaxAuthTries") == "4")
            try s.commitPolicy("finding-rules/sshd.yaml", Self.rule, message: "finding rule: MaxAuthTries")
            let firstSeen = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 - 7200).rounded(.down))
            let id = "lynis-SSH-7408-demo"
            let document = Self.finding(id: id, firstSeen: firstSeen)

            // Proposed: a branch with the finding, its evidence, priority, validation and a passing plan.
            let first = try ingest(s, document)
            #expect(first.status == 2, "\(first.stderr)")
            let item = try #require((first.report["items"] as? [[String: Any]])?.first, "\(first.stderr)")
            #expect(item["outcome"] as? String == "proposed", "\(item)")
            #expect(item["branch"] as? String == "bulwark/proposals/\(id)")
            #expect(item["rule"] as? String == "sshd-max-auth-tries")
            let message = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/proposals/\(id)")
            #expect(message.contains("Evidence: https://cisofy.com/lynis/controls/SSH-7408/"))
            #expect(message.contains("Plan: passed"))
            #expect(message.contains("- local SSHDConfig/cis-5.1.16-max-auth-tries: MaxAuthTries: 4 -> 3 (applied)"), "\(message)")
            #expect(message.contains("Validation: the changed revision validates"))
            #expect(message.contains("Bulwark-Finding: \(id)") && message.contains("Bulwark-Proposal: proposed"))
            #expect(message.contains("Bulwark-Priority: P4"))  // medium × internal target × no exploit data
            let diff = try git("--git-dir", s.origin, "diff", "main", "bulwark/proposals/\(id)")
            #expect(diff.contains("-  MaxAuthTries: 4") && diff.contains("+  MaxAuthTries: 3"))
            // Nothing changed on the host, and main is untouched.
            #expect(try sshd(s, "MaxAuthTries") == "4")

            // The same finding again makes no second proposal.
            let again = try ingest(s, document)
            #expect(again.status == 0, "\(again.stderr)")
            #expect((again.report["items"] as? [[String: Any]])?.first?["outcome"] as? String == "already-proposed")

            // A person accepts it; the next apply fixes the host and its record cites the finding.
            let accepted = try s.run("accept", id)
            #expect(accepted.status == 0, "\(accepted.stdout)\(accepted.stderr)")
            let mainMessage = try git("--git-dir", s.origin, "log", "-1", "--format=%an%n%B", "main")
            #expect(mainMessage.hasPrefix("Test Person\n") && mainMessage.contains("Bulwark-Proposal: accepted"))
            #expect(try ingest(s, document).report["items"].flatMap { ($0 as? [[String: Any]])?.first?["outcome"] as? String } == "already-proposed")
            let apply = try s.run("apply")
            #expect(apply.status == 0, "\(apply.stdout)\(apply.stderr)")
            #expect(try sshd(s, "MaxAuthTries") == "3")
            let cited = try s.trailers("Bulwark-Finding"), seen = try s.trailers("Bulwark-Finding-First-Seen")
            #expect(cited == [id])
            #expect(seen == [Timestamp.format(firstSeen)])
            #expect(try s.trailers("Bulwark-Priority") == ["P4"])

            // MTTR of findings is measured from the scanner's first sighting, two hours ago.
            let report = try s.run("report", "--output", "json")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [String: Any])
            let findings = try #require(json["findings"] as? [String: Any])
            #expect(findings["fixed"] as? Int == 1)
            let mttr = try #require((findings["mttr"] as? [String: Any])?["maxSeconds"] as? Double)
            #expect(mttr >= 7200 && mttr < 7200 + 3600, "\(mttr)")
            #expect((findings["bySource"] as? [String: Any])?["ocsf"] != nil && (findings["byPriority"] as? [String: Any])?["P4"] != nil)
            #expect((findings["slaBreaches"] as? [Any])?.isEmpty == true)
            let text = try s.run("report").stdout
            #expect(text.contains("Findings MTTR (first seen by the scanner to verified fix): 1 fix"))
        }
    }

    /// Harmful: a scanner's title quotes a key it found, and its evidence link is presigned, with
    /// a password in it. The proposal's commit, pushed to the origin, keeps neither: both are
    /// redacted as every record's text is (`Redaction.words`). Legitimate: the rest of the link,
    /// and of the title, reads as the scanner wrote it.
    @Test func aFindingsTitleAndEvidenceReachGitRedacted() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            try s.commitPolicy("finding-rules/sshd.yaml", Self.rule, message: "finding rule: MaxAuthTries")
            let id = "lynis-SSH-7408-secret"
            let document = Self.finding(id: id, firstSeen: Date(timeIntervalSince1970: 1_800_000_000))
                .replacingOccurrences(of: "sshd allows too many authentication attempts",
                                      with: "sshd allows too many attempts, AKIAIOSFODNN7EXAMPLE found, password=hunter2hunter2")
                .replacingOccurrences(of: "https://cisofy.com/lynis/controls/SSH-7408/",
                                      with: "https://admin:Sup3rS3cret@scan.example/r?X-Amz-Signature=deadbeef00&token=abc123xyz&page=2")
            let proposed = try ingest(s, document)
            #expect(proposed.status == 2, "\(proposed.stderr)")
            let message = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/proposals/\(id)")
            for secret in ["AKIAIOSFODNN7EXAMPLE", "hunter2hunter2", "Sup3rS3cret", "deadbeef00", "abc123xyz"] {
                #expect(!message.contains(secret), "\(secret) in \(message)")
            }
            #expect(message.contains("Evidence: https://admin:<redacted>@scan.example/r?X-Amz-Signature=<redacted>&token=<redacted>&page=2"),
                    "\(message)")
            #expect(message.hasPrefix("propose(SSHDConfig/cis-5.1.16-max-auth-tries): sshd allows too many attempts, <redacted> found, "
                                      + "password=<redacted> ["), "\(message)")
        }
    }

    /// Harmful: a rule that sets `PASS_MAX_DAYS` from the finding's evidence, and evidence that is
    /// no number but a scanner's dump of secrets: the change is not proposed, and its detail
    /// (the loader's error, which quotes the rendered value) was printed by `ingest`, text and
    /// JSON, secrets and all. Now redacted: an AWS secret key, a presigned link's `sig`, an
    /// `Authorization: Basic` credential, a `client_secret`, and a private key block removed
    /// whole. Legitimate: evidence with nothing secret in it is still quoted, to see what was wrong.
    @Test func theDetailOfAChangeNotProposedHasTheEvidencesSecretsRedacted() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.commitPolicy("finding-rules/login-defs.yaml", """
                apiVersion: bulwark/v1
                kind: FindingRule
                metadata: {name: pass-max-days-from-evidence}
                spec:
                  match: {control: "LD-*"}
                  action: propose
                  change:
                    resource: LoginDefs/cis-5.4.1.1-pass-max-days
                    set: {PASS_MAX_DAYS: "{{evidence}}"}

                """, message: "finding rule from evidence")
            let secrets = ["AWSSECRETVALUE0123", "SIGSECRET0123", "QmFzaWNTZWNyZXQ0NTY3", "CLIENTSECRET0123", "b3BlbnNzaC1rZXktdjEAAAAKEYBODY"]
            let oneLine = "aws_secret_access_key = AWSSECRETVALUE0123 see https://acct.blob.core.windows.net/c?sv=2020&sig=SIGSECRET0123 "
                + "and ?sig=SIGSECRET0123 Authorization: Basic QmFzaWNTZWNyZXQ0NTY3 client_secret: CLIENTSECRET0123 "
                + "-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAAKEYBODY -----END OPENSSH PRIVATE KEY----- end"
            func finding(_ id: String, _ evidence: String) throws -> String {
                String(decoding: try JSONSerialization.data(withJSONObject: [
                    "resource": "cis-5.4.1.1-pass-max-days", "control": "LD-1", "id": id, "source": "scan", "evidence": evidence]), as: UTF8.self)
            }
            // As a scanner writes it: one line, and the key block on lines of its own.
            let lines = oneLine.replacingOccurrences(of: "----- ", with: "-----\n").replacingOccurrences(of: " -----END", with: "\n-----END")
            try write(dir + "/secret.json", "[" + (try finding("ld-secret", oneLine)) + "," + (try finding("ld-lines", lines)) + "]")
            for output in ["text", "json"] {
                let ingested = try bulwark(["ingest", dir + "/secret.json", "--output", output, "--repo", s.origin, "--state-dir", s.state])
                let all = ingested.stdout + ingested.stderr
                #expect(all.contains("not-proposed") && all.contains("PASS_MAX_DAYS"), "\(output): \(all)")
                for secret in secrets { #expect(!all.contains(secret), "\(output): \(secret) in \(all)") }
                #expect(!all.contains("PRIVATE KEY"), "\(output): \(all)")
                // What is not secret still reads.
                #expect(all.contains("aws_secret_access_key = <redacted>") && all.contains("Authorization: Basic <redacted>")
                        && all.contains("client_secret: <redacted>") && all.contains("sig=<redacted>") && all.contains("end"), "\(output): \(all)")
            }
            // Nothing secret: the detail quotes the value as it was.
            try write(dir + "/plain.json", try finding("ld-plain", "ninety days"))
            let plain = try bulwark(["ingest", dir + "/plain.json", "--repo", s.origin, "--state-dir", s.state])
            #expect(plain.stdout.contains("not-proposed — the changed revision is invalid: ")
                    && plain.stdout.contains("expected a single word or number, got 'ninety days'"), "\(plain.stdout)\(plain.stderr)")
        }
    }

    /// Harmful: a scanner's evidence with secrets the redaction missed (`password:` with no blank,
    /// `passphrase=`, `encryption_key:`, cookie headers, `mysql -p…`, `PGPASS=`, JSON's
    /// `"client_key"`, `ssh_key=`): the first two reached git in a proposal's commit
    /// (`Evidence:`), and all reached `ingest`'s output in the detail of a change not proposed
    /// (`{{evidence}}` into `PASS_MAX_DAYS`). Now every value is redacted in both. Legitimate:
    /// the ordinary evidence around them (`PermitRootLogin yes`, `PASS_MAX_DAYS 99999`) reads
    /// as the scanner wrote it.
    @Test func evidenceSecretsUnderEverySpellingReachNeitherGitNorIngestsOutput() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            try s.commitPolicy("finding-rules/sshd.yaml", Self.rule, message: "finding rule: MaxAuthTries")
            try s.commitPolicy("finding-rules/login-defs.yaml", """
                apiVersion: bulwark/v1
                kind: FindingRule
                metadata: {name: pass-max-days-from-evidence}
                spec:
                  match: {control: "LD-*"}
                  action: propose
                  change:
                    resource: LoginDefs/cis-5.4.1.1-pass-max-days
                    set: {PASS_MAX_DAYS: "{{evidence}}"}

                """, message: "finding rule from evidence")
            let secrets = ["NOSPACESECRET1", "PASSPHRASESECRET2", "ENCKEYSECRET3", "COOKIESECRET4", "SETCOOKIESECRET5", "MYSQLSECRET6",
                           "PGPASSSECRET7", "CLIENTKEYSECRET8", "SSHKEYSECRET9"]
            let evidence = "PermitRootLogin yes; password:NOSPACESECRET1 passphrase=PASSPHRASESECRET2 encryption_key: ENCKEYSECRET3 "
                + "Cookie: session=COOKIESECRET4 Set-Cookie: sid=SETCOOKIESECRET5; HttpOnly mysql -uroot -pMYSQLSECRET6 PGPASS=PGPASSSECRET7 "
                + #"{"client_key": "CLIENTKEYSECRET8"} ssh_key=SSHKEYSECRET9 PASS_MAX_DAYS 99999"#
            let redacted = "PermitRootLogin yes; password:<redacted> passphrase=<redacted> encryption_key: <redacted> "
                + "Cookie: session=<redacted> Set-Cookie: sid=<redacted>; HttpOnly mysql -uroot -p<redacted> PGPASS=<redacted> "
                + #"{"client_key": "<redacted>"} ssh_key=<redacted> PASS_MAX_DAYS 99999"#

            // Proposed: the commit pushed to the origin quotes the evidence redacted.
            let id = "lynis-SSH-7408-evidence"
            let document = Self.finding(id: id, firstSeen: Date(timeIntervalSince1970: 1_800_000_000))
                .replacingOccurrences(of: "https://cisofy.com/lynis/controls/SSH-7408/", with: evidence.replacingOccurrences(of: "\"", with: "\\\""))
            let proposed = try ingest(s, document)
            #expect(proposed.status == 2, "\(proposed.stderr)")
            let message = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/proposals/\(id)")
            for secret in secrets { #expect(!message.contains(secret) && !proposed.stderr.contains(secret), "\(secret) in \(message)\(proposed.stderr)") }
            #expect(message.contains("Evidence: " + redacted), "\(message)")

            // Not proposed: the detail quotes the rendered value redacted, text and JSON.
            try write(dir + "/evidence.json", String(decoding: try JSONSerialization.data(withJSONObject: [
                "resource": "cis-5.4.1.1-pass-max-days", "control": "LD-1", "id": "ld-evidence", "source": "scan", "evidence": evidence]), as: UTF8.self))
            for output in ["text", "json"] {
                let ingested = try bulwark(["ingest", dir + "/evidence.json", "--output", output, "--repo", s.origin, "--state-dir", s.state])
                let all = ingested.stdout + ingested.stderr
                #expect(all.contains("not-proposed") && all.contains("PASS_MAX_DAYS"), "\(output): \(all)")
                for secret in secrets { #expect(!all.contains(secret), "\(output): \(secret) in \(all)") }
                #expect(all.contains("PermitRootLogin yes; password:<redacted> passphrase=<redacted>") && all.contains("PASS_MAX_DAYS 99999"),
                        "\(output): \(all)")
            }
        }
    }

    /// A finding reported open again after its accepted fix was verified is a fix that did not
    /// hold: `reopened` (exit 2), no second proposal (the branch is untouched), one audit record
    /// saying so however often the scanner reports it, listed by `report` until the next verified
    /// fix. Reported open after acceptance but before the fix is verified, it is still waiting for
    /// that fix: `already-proposed`, exit 0, nothing recorded.
    @Test func aFindingOpenAgainAfterItsVerifiedFixIsReopenedAndNotProposedAgain() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            #expect(try s.run("apply").status == 0)
            try s.commitPolicy("finding-rules/sshd.yaml", Self.rule, message: "finding rule: MaxAuthTries")
            let id = "lynis-SSH-7408-reopen"
            let document = Self.finding(id: id, firstSeen: Date(timeIntervalSince1970: (Date().timeIntervalSince1970 - 3600).rounded(.down)))
            #expect(try ingest(s, document).status == 2)
            #expect(try s.run("accept", id).status == 0)
            // Accepted, not yet applied: waiting for its fix, not reopened.
            let waiting = try ingest(s, document)
            #expect(waiting.status == 0, "\(waiting.stderr)")
            #expect((waiting.report["items"] as? [[String: Any]])?.first?["outcome"] as? String == "already-proposed")
            #expect(try s.trailers("Bulwark-Proposal").isEmpty)
            #expect(try s.run("apply").status == 0)
            #expect(try sshd(s, "MaxAuthTries") == "3")

            // The fix does not hold: the value is back, and the scanner reports the finding open again.
            let config = s.host + "/etc/ssh/sshd_config"
            try write(config, try read(config).replacingOccurrences(of: "MaxAuthTries 3", with: "MaxAuthTries 4"))
            let refs = try git("--git-dir", s.origin, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/bulwark/proposals", "refs/heads/main")
            let reopened = try ingest(s, document)
            #expect(reopened.status == 2, "\(reopened.stderr)")
            let item = try #require((reopened.report["items"] as? [[String: Any]])?.first, "\(reopened.stderr)")
            #expect(item["outcome"] as? String == "reopened", "\(item)")
            #expect((item["detail"] as? String)?.contains("the fix did not hold") == true, "\(item)")
            #expect(item["reconciled"] as? [String] == ["local SSHDConfig/cis-5.1.16-max-auth-tries"], "\(item)")
            #expect(item["branch"] as? String == "bulwark/proposals/\(id)")
            // No second proposal: the proposal branch and the policy branch are where they were.
            #expect(try git("--git-dir", s.origin, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/bulwark/proposals", "refs/heads/main") == refs)
            #expect(try s.trailers("Bulwark-Proposal") == ["reopened"])
            let record = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit")
            #expect(record.contains("Bulwark-Decision: reported") && record.contains("Bulwark-Finding: \(id)")
                    && record.contains("Bulwark-Resource: SSHDConfig/cis-5.1.16-max-auth-tries"), "\(record)")
            // Reported again: the same outcome, recorded once.
            let again = try ingest(s, document)
            #expect(again.status == 2 && (again.report["items"] as? [[String: Any]])?.first?["outcome"] as? String == "reopened")
            #expect(try s.trailers("Bulwark-Proposal") == ["reopened"])
            try write(dir + "/reopened.json", document)
            let text = try s.run("ingest", dir + "/reopened.json")
            #expect(text.status == 2 && text.stdout.contains("reopened bulwark/proposals/\(id)")
                    && text.stdout.contains("the fix did not hold"), "\(text.stdout)")

            func reopenings() throws -> [[String: Any]] {
                let report = try s.run("report", "--output", "json")
                let json = try #require(try JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [String: Any])
                return (json["findings"] as? [String: Any])?["reopened"] as? [[String: Any]] ?? []
            }
            let open = try reopenings()
            #expect(open.count == 1 && open.first?["finding"] as? String == id && open.first?["fixedAgainAt"] == nil, "\(open)")
            #expect(try s.run("report").stdout.contains("Reopened after a verified fix (the fix did not hold):"))
            // The next verified fix closes it in the report; the scanner's next report is reopened no more
            // until it is open again after that fix.
            #expect(try s.run("apply").status == 0)
            #expect(try sshd(s, "MaxAuthTries") == "3")
            let fixed = try reopenings()
            #expect(fixed.count == 1 && fixed.first?["fixedAgainAt"] != nil, "\(fixed)")
            let resolved = try ingest(s, Self.finding(id: id, firstSeen: Date(), resolved: true))
            #expect(resolved.status == 0 && (resolved.report["items"] as? [[String: Any]])?.first?["outcome"] as? String == "nothing")
        }
    }

    /// Review (M1, session 38): a made-up verified fix citing a finding, pushed by anyone, made
    /// `ingest` (with Bulwark's signing key) report the finding reopened: Bulwark signed and pushed
    /// a record that its fix did not hold, and `report` listed the resource open. With a signing
    /// key, only a fix a Bulwark signed counts: `already-in-policy`, nothing recorded. The twin: a
    /// verified fix signed with Bulwark's key is reopened as before.
    @Test func aForgedVerifiedFixOfAFindingDoesNotReopenIt() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let key = try AuditTrailTests().makeKey(dir)
            #expect(try s.run("apply", "--secrets-dir", key.secrets, "--signing-key", key.path).status == 0)
            let id = "lynis-SSH-7408-forged"
            try s.editPolicy("desired-state/hosts/sshd.yaml", replacing: "annotations: {cis: \"5.1.16\",",
                             with: "annotations: {finding: \(id), cis: \"5.1.16\",")
            try s.commitPolicy("finding-rules/sshd.yaml", Self.rule, message: "finding rule: MaxAuthTries")
            let resource = "SSHDConfig/cis-5.1.16-max-auth-tries"
            func forgeFix(_ record: String, signingKey: String) throws {
                _ = try ForgedRecordTests.forge(s, subject: "remediate(\(resource)): local MaxAuthTries 5 -> 4", trailers: [
                    ("Bulwark-Id", record), ("Bulwark-Controller", "host-hardening"), ("Bulwark-Target", "local"),
                    ("Bulwark-Resource", resource), ("Bulwark-Severity", "medium"), ("Bulwark-Mode", "enforce"),
                    ("Bulwark-Decision", "applied"), ("Bulwark-Result", "verified"), ("Bulwark-Finding", id),
                    ("Bulwark-Desired-Commit", String(repeating: "0", count: 40)),
                    ("Bulwark-Detected-At", Timestamp.format(Date().addingTimeInterval(-60))),
                    ("Bulwark-Verified-At", Timestamp.format(Date().addingTimeInterval(-59))),
                ], signingKey: signingKey)
            }
            let mallory = try AuditTrailTests().makeKey(dir, name: "mallory")
            try forgeFix("01M97G4Z0EREOPENREOPEN0001", signingKey: mallory.path)
            let document = Self.finding(id: id, firstSeen: Date().addingTimeInterval(-3600))
            let forged = try ingest(s, document, signingKey: key.path)
            let item = try #require((forged.report["items"] as? [[String: Any]])?.first, "\(forged.stderr)")
            #expect(item["outcome"] as? String == "already-in-policy", "\(item)")
            #expect(try s.trailers("Bulwark-Proposal").isEmpty, "nothing recorded of a fix no Bulwark made")

            // A fix Bulwark's key signed: the finding open again is a fix that did not hold.
            try forgeFix("01M97G4Z0EREOPENREOPEN0002", signingKey: key.path)
            let reopened = try ingest(s, document, signingKey: key.path)
            #expect(reopened.status == 2, "\(reopened.stderr)")
            #expect((reopened.report["items"] as? [[String: Any]])?.first?["outcome"] as? String == "reopened", "\(reopened.report)")
            #expect(try s.trailers("Bulwark-Proposal") == ["reopened"])
        }
    }

    @Test func aResolvedFindingClosesItsProposalAndAcceptRefusesAClosedOrOutdatedOne() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.commitPolicy("finding-rules/sshd.yaml", Self.rule, message: "finding rule")
            let now = Date()
            #expect(try ingest(s, Self.finding(id: "closed-one", firstSeen: now)).status == 2)
            #expect(try ingest(s, Self.finding(id: "outdated-one", firstSeen: now)).status == 2)
            let main = try git("--git-dir", s.origin, "rev-parse", "main")

            // Resolved: the proposal is closed (its change undone on the branch) and cannot be accepted.
            let resolved = try ingest(s, Self.finding(id: "closed-one", firstSeen: now, resolved: true))
            #expect(resolved.status == 2)
            #expect((resolved.report["items"] as? [[String: Any]])?.first?["outcome"] as? String == "closed")
            #expect(try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/proposals/closed-one").contains("Bulwark-Proposal: closed"))
            #expect(try git("--git-dir", s.origin, "diff", "main", "bulwark/proposals/closed-one").isEmpty)
            let refused = try s.run("accept", "closed-one")
            #expect(refused.status == 1 && refused.stderr.contains("is closed"), "\(refused.stderr)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main)
            // Resolved again: nothing more.
            #expect(try ingest(s, Self.finding(id: "closed-one", firstSeen: now, resolved: true)).status == 0)

            // A person changed the same file since: the proposal is not merged over it.
            try s.editPolicy("desired-state/hosts/sshd.yaml", replacing: "MaxAuthTries: 4", with: "MaxAuthTries: 2")
            let changedMain = try git("--git-dir", s.origin, "rev-parse", "main")
            let outdated = try s.run("accept", "outdated-one")
            #expect(outdated.status == 1 && outdated.stderr.contains("changed desired-state/hosts/sshd.yaml since the proposal"), "\(outdated.stderr)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == changedMain)
        }
    }

    /// Finding ids are not secret, and any source's "resolved" closed another source's proposal
    /// for good: the finding reported open again was "already proposed", and `accept` refused
    /// the closed branch. Now only the source that opened a proposal closes it, and a closed
    /// proposal is proposed again when its finding is reported open.
    @Test func onlyItsOwnSourceClosesAProposalAndAClosedOneIsProposedAgain() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.commitPolicy("finding-rules/sshd.yaml", Self.rule, message: "finding rule")
            let now = Date()
            let branch = "bulwark/proposals/flaky-one"
            #expect(try ingest(s, Self.finding(id: "flaky-one", firstSeen: now)).status == 2)
            let proposed = try git("--git-dir", s.origin, "rev-parse", branch)

            let spoofed = try ingest(s, Self.finding(id: "flaky-one", firstSeen: now, resolved: true, product: "Prowler"))
            let refusal = (spoofed.report["items"] as? [[String: Any]])?.first
            #expect(refusal?["outcome"] as? String == "nothing", "\(spoofed.report)")
            #expect((refusal?["detail"] as? String)?.contains("only that source closes it") == true, "\(spoofed.report)")
            #expect(try git("--git-dir", s.origin, "rev-parse", branch) == proposed, "not closed")

            let resolved = try ingest(s, Self.finding(id: "flaky-one", firstSeen: now, resolved: true))
            #expect((resolved.report["items"] as? [[String: Any]])?.first?["outcome"] as? String == "closed", "\(resolved.report)")
            let closed = try git("--git-dir", s.origin, "rev-parse", branch).trimmingCharacters(in: .whitespacesAndNewlines)

            let again = try ingest(s, Self.finding(id: "flaky-one", firstSeen: now))
            #expect(again.status == 2, "\(again.stderr)")
            #expect((again.report["items"] as? [[String: Any]])?.first?["outcome"] as? String == "proposed", "\(again.report)")
            let message = try git("--git-dir", s.origin, "log", "-1", "--format=%B", branch)
            #expect(message.contains("Bulwark-Proposal: proposed") && message.contains("Proposed again") && message.contains(closed),
                    "\(message)")
            #expect(!(try git("--git-dir", s.origin, "diff", "main", branch)).isEmpty, "the change is on the branch again")
            let accepted = try s.run("accept", "flaky-one")
            #expect(accepted.status == 0, "\(accepted.stdout)\(accepted.stderr)")
        }
    }

    /// One report whose findings all ask for the same change (a garak report of 300 probes made
    /// 300 branches, each planned against the live targets) makes one proposal; the others say
    /// whose it is. A different change in the same report is still proposed.
    @Test func findingsOfOneReportAskingForTheSameChangeMakeOneProposal() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.commitPolicy("finding-rules/sshd.yaml", Self.rule, message: "finding rule")
            let now = Date()
            let report = "[" + ["probe-1", "probe-2", "probe-3"].map { Self.finding(id: $0, firstSeen: now) }.joined(separator: ",") + "]"
            let result = try ingest(s, report)
            #expect(result.status == 2, "\(result.stderr)")
            let items = try #require(result.report["items"] as? [[String: Any]], "\(result.report)")
            #expect(items.map { $0["outcome"] as? String } == ["proposed", "already-proposed", "already-proposed"], "\(items)")
            #expect((items.last?["detail"] as? String)?.contains("the same change as finding probe-1's") == true, "\(items)")
            let branches = try git("--git-dir", s.origin, "branch", "--list", "bulwark/proposals/*")
            #expect(branches.split(separator: "\n").count == 1, "\(branches)")

            let other = Self.rule.replacingOccurrences(of: "SSH-7408*", with: "SSH-9999*")
                .replacingOccurrences(of: "set: {MaxAuthTries: \"3\"}", with: "set: {MaxAuthTries: \"2\"}")
                .replacingOccurrences(of: "name: sshd-max-auth-tries", with: "name: other-max-auth-tries")
            try s.commitPolicy("finding-rules/other.yaml", other, message: "another rule")
            let mixed = "[" + Self.finding(id: "probe-4", firstSeen: now) + "," + Self.finding(id: "probe-5", control: "SSH-9999-Other", firstSeen: now) + "]"
            let second = try ingest(s, mixed)
            let outcomes = (second.report["items"] as? [[String: Any]])?.map { $0["outcome"] as? String }
            #expect(outcomes == ["proposed", "proposed"], "\(second.report) \(second.stderr)")
        }
    }

    /// `accept` merges only what Bulwark proposes. Anyone who can push a branch (an agent's or a
    /// CI token) can name one like a proposal and copy a proposal's message: a tip that turns
    /// enforcement off through a controller, one that also changes another resource, and one
    /// that weakens the resource are refused, with main untouched; the real proposal still goes
    /// through, its diff shown.
    @Test func acceptRefusesABranchThatIsNotWhatBulwarkProposes() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.commitPolicy("finding-rules/sshd.yaml", Self.rule, message: "finding rule")
            #expect(try ingest(s, Self.finding(id: "real-one", firstSeen: Date())).status == 2)
            let main = try git("--git-dir", s.origin, "rev-parse", "main")
            let proposal = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/proposals/real-one")
            #expect(proposal.contains("Change: desired-state/hosts/sshd.yaml: "), "\(proposal)")
            func forge(_ name: String, _ path: String, message: String, _ edit: (String) -> String) throws {
                let work = s.dir + "/forge-\(name)"
                try git("clone", "-q", s.origin, work)
                try write(work + "/" + path, edit((try? read(work + "/" + path)) ?? ""))
                try git("add", "-A", in: work)
                try git("commit", "-qm", message, in: work)
                try git("push", "-q", "origin", "HEAD:refs/heads/bulwark/proposals/\(name)", in: work)
            }
            // The real proposal's file, for forgeries that start from it (citation and all).
            let proposed = try git("--git-dir", s.origin, "show", "bulwark/proposals/real-one:desired-state/hosts/sshd.yaml")
            try forge("off", "controllers/host-hardening.yaml",
                      message: proposal.replacingOccurrences(of: "Change: desired-state/hosts/sshd.yaml", with: "Change: controllers/host-hardening.yaml")) {
                $0.replacingOccurrences(of: "mode: enforce", with: "mode: audit")
            }
            try forge("unnamed", "controllers/host-hardening.yaml", message: proposal) {
                $0.replacingOccurrences(of: "mode: enforce", with: "mode: audit")
            }
            try forge("more", "desired-state/hosts/sshd.yaml", message: proposal) { _ in
                proposed.replacingOccurrences(of: "PermitRootLogin: \"no\"", with: "PermitRootLogin: \"yes\"")
            }
            try forge("retarget", "desired-state/hosts/sshd.yaml", message: proposal) { _ in
                proposed.replacingOccurrences(of: "spec:\n  MaxAuthTries: 3", with: "targets: {selector: {role: none}}\nspec:\n  MaxAuthTries: 3")
            }
            try forge("weaker", "desired-state/hosts/sshd.yaml", message: proposal) {
                $0.replacingOccurrences(of: "MaxAuthTries: 4", with: "MaxAuthTries: 10")
            }
            try forge("other-value", "desired-state/hosts/sshd.yaml", message: proposal) { _ in
                proposed.replacingOccurrences(of: "  MaxAuthTries: 3", with: "  MaxAuthTries: 2")
            }
            try forge("no-rule", "desired-state/hosts/sshd.yaml",
                      message: proposal.replacingOccurrences(of: "Rule: sshd-max-auth-tries", with: "Rule: no-such-rule")) { _ in proposed }
            // A new resource no rule creates: an authorized-keys file any local user can write.
            let created = "desired-state/proposed/sshdconfig-x.yaml"
            try forge("created", created, message: "propose(SSHDConfig/x): keys\n\nRule: sshd-max-auth-tries\nChange: \(created): create SSHDConfig/x\n\n"
                      + "Bulwark-Finding: real-one\nBulwark-Proposal: proposed\n") { _ in
                "apiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata:\n  name: x\n  annotations: {finding: real-one}\n"
                    + "spec:\n  AuthorizedKeysFile: \".ssh/authorized_keys /tmp/%u.keys\"\n"
            }
            let writes = "is not what rule sshd-max-auth-tries writes for SSHDConfig/cis-5.1.16-max-auth-tries"
            for (name, why) in [("off", "only changes a YAML file under desired-state/"), ("unnamed", "changes controllers/host-hardening.yaml"),
                                ("more", writes), ("retarget", writes), ("weaker", "spec.MaxAuthTries is not the rule's 3"),
                                ("other-value", "spec.MaxAuthTries is not the rule's 3"), ("no-rule", "has no finding rule no-such-rule"),
                                ("created", "it names SSHDConfig/x, not SSHDConfig/cis-5.1.16-max-auth-tries")] {
                let refused = try s.run("accept", name)
                #expect(refused.status == 1 && refused.stderr.contains(why) && refused.stderr.contains("Nothing was committed"),
                        "\(name): \(refused.stderr)")
            }
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main)

            let accepted = try s.run("accept", "real-one")
            #expect(accepted.status == 0, "\(accepted.stderr)")
            // The line removed, then the line added in its place, as diff shows them.
            #expect(accepted.stdout.contains("-   MaxAuthTries: 4\n  +   MaxAuthTries: 3"), "\(accepted.stdout)")
            #expect(try git("--git-dir", s.origin, "show", "main:desired-state/hosts/sshd.yaml").contains("  MaxAuthTries: 3\n"))
        }
    }

    /// A value the rule takes from the finding (`{{evidence}}`), changed by hand on the branch
    /// under a message whose Change line still names the finding's value: the accepted commit
    /// would carry a line that misstates what it commits (review: "set MaxAuthTries = 3" over
    /// `MaxAuthTries: 1`). Refused, main untouched; the branch as Bulwark wrote it is accepted.
    @Test func acceptRefusesAValueChangedUnderItsChangeLine() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.commitPolicy("finding-rules/sshd.yaml", Self.rule
                .replacingOccurrences(of: "set: {MaxAuthTries: \"3\"}", with: "set: {MaxAuthTries: \"{{evidence}}\"}")
                .replacingOccurrences(of: ", severity: medium}", with: "}"), message: "finding rule")
            let path = s.dir + "/finding.json"
            try write(path, #"[{"id": "ev-one", "source": "lynis", "resource": "local", "target": "local", "#
                      + #""control": "SSH-7408-MaxAuthTries", "evidence": "3", "severity": "medium"}]"#)
            let ingested = try bulwark(["ingest", path, "--repo", s.origin, "--state-dir", s.state])
            #expect(ingested.status == 2, "\(ingested.stdout)\(ingested.stderr)")
            let branch = "bulwark/proposals/ev-one"
            let original = try git("--git-dir", s.origin, "rev-parse", branch).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(try git("--git-dir", s.origin, "log", "-1", "--format=%B", branch).contains(": set MaxAuthTries = 3\n"))
            let work = s.dir + "/forge"
            try git("clone", "-q", "-b", branch, s.origin, work)
            try write(work + "/desired-state/hosts/sshd.yaml",
                      try read(work + "/desired-state/hosts/sshd.yaml").replacingOccurrences(of: "  MaxAuthTries: 3\n", with: "  MaxAuthTries: 1\n"))
            try git("-c", "user.name=Bulwark", "-c", "user.email=bulwark@localhost", "commit", "-q", "--amend", "--no-edit", "-a", in: work)
            try git("push", "-q", "-f", "origin", "HEAD:refs/heads/\(branch)", in: work)
            let main = try git("--git-dir", s.origin, "rev-parse", "main")

            let refused = try s.run("accept", "ev-one", "--reviewed")
            #expect(refused.status == 1 && refused.stderr.contains("its Change line says 'desired-state/hosts/sshd.yaml: set MaxAuthTries = 3'")
                    && refused.stderr.contains("its file makes 'desired-state/hosts/sshd.yaml: set MaxAuthTries = 1'"), "\(refused.stderr)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main)
            // The refusal is in git: someone wrote that branch.
            let recorded = try s.trailers("Bulwark-Decision")
            #expect(recorded.filter { $0 == "refused" }.count == 1, "\(recorded)")
            let record = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit")
            #expect(record.contains("its Change line says"))
            // Worded for what it refuses: an acceptance, not a revision in force (review).
            #expect(record.contains("Reason: acceptance refused; nothing was committed: accept \(branch): "), "\(record)")
            #expect(!record.contains("revision refused"), "\(record)")

            try git("push", "-q", "-f", "origin", "\(original):refs/heads/\(branch)", in: work)
            let accepted = try s.run("accept", "ev-one", "--reviewed")
            #expect(accepted.status == 0, "\(accepted.stderr)")
            #expect(try git("--git-dir", s.origin, "show", "main:desired-state/hosts/sshd.yaml").contains("  MaxAuthTries: 3\n"))
            // Unsigned, its message is anyone's who can push: main keeps only what accept checked
            // (re-attack: a forged priority, evidence and plan went onto main as written).
            let message = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "main")
            #expect(message.hasPrefix("accept(SSHDConfig/cis-5.1.16-max-auth-tries): finding ev-one\n"), "\(message)")
            #expect(message.contains("\nChange: desired-state/hosts/sshd.yaml: set MaxAuthTries = 3\n")
                    && message.contains("\nBulwark-Finding: ev-one\n") && message.contains("\nBulwark-Proposal: accepted\n"), "\(message)")
            #expect(!message.contains("\nEvidence:") && !message.contains("\nPlan:") && !message.contains("\nPriority:"), "\(message)")
        }
    }

    /// With signatures checked, `accept` merges a proposal only when a trusted key signed its
    /// last commit: a branch someone pushed with the very change Bulwark would propose, unsigned,
    /// is refused; the proposal Bulwark signed with its `--signing-key` goes through.
    @Test func withTrustedSignersAcceptNeedsAProposalATrustedKeySigned() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.commitPolicy("finding-rules/sshd.yaml", Self.rule, message: "finding rule")
            let keys = SignatureTests()
            let bot = try keys.makeKey(dir, "bulwark@fleet")
            let alice = try keys.makeKey(dir, "alice@example.org")
            let signers = try keys.allowedSigners(dir, bot, alice)
            let ingested = try ingest(s, Self.finding(id: "signed-one", firstSeen: Date()), signingKey: bot.privateKey)
            #expect(ingested.status == 2, "\(ingested.stderr)")
            let proposal = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/proposals/signed-one")
            let work = s.dir + "/forge"
            try git("clone", "-q", s.origin, work)
            try write(work + "/desired-state/hosts/sshd.yaml",
                      try read(work + "/desired-state/hosts/sshd.yaml").replacingOccurrences(of: "MaxAuthTries: 4", with: "MaxAuthTries: 3"))
            try git("commit", "-qam", proposal, in: work)
            try git("push", "-q", "origin", "HEAD:refs/heads/bulwark/proposals/forged", in: work)
            let main = try git("--git-dir", s.origin, "rev-parse", "main")

            let forged = try s.run("accept", "forged", "--trusted-signers", signers)
            #expect(forged.status == 1 && forged.stderr.contains("is not signed by a trusted key"), "\(forged.stderr)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main)
            // The person accepting signs the merge with a trusted key, or it would halt every verifying Bulwark.
            let unsigned = try s.run("accept", "signed-one", "--trusted-signers", signers)
            #expect(unsigned.status == 1 && unsigned.stderr.contains("the commit would be unsigned"), "\(unsigned.stderr)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main)
            let accepted = try s.run("accept", "signed-one", "--trusted-signers", signers,
                                     environment: try s.signingEnvironment(alice.privateKey))
            #expect(accepted.status == 0, "\(accepted.stderr)")
            // Signed by Bulwark's key, the proposal keeps its message (its plan and evidence), accepted.
            let message = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "main")
            #expect(message.hasPrefix("accept(") && message.contains("\nPlan: ") && message.contains("\nBulwark-Proposal: accepted\n")
                    && !message.contains("proposed"), "\(message)")
            #expect(try git("--git-dir", s.origin, "show", "main:desired-state/hosts/sshd.yaml").contains("  MaxAuthTries: 3\n"))
        }
    }

    /// A proposal is signed by Bulwark's key, which the signers file trusts: pushed to main as it
    /// is (a fast-forward anyone who can push can make), it is refused before anything acts;
    /// merged by `accept`, under the person's signed commit, it applies.
    @Test func aProposalPushedToMainAsItIsIsRefusedAndAcceptedItApplies() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.commitPolicy("finding-rules/sshd.yaml", Self.rule, message: "finding rule")
            // Applied once (unsigned, before signatures are checked): the range starts there.
            #expect(try s.run("apply").status == 0)
            let keys = SignatureTests()
            let bot = try keys.makeKey(dir, "bulwark@fleet")
            let alice = try keys.makeKey(dir, "alice@example.org")
            let signers = try keys.allowedSigners(dir, bot, alice)
            let ingested = try ingest(s, Self.finding(id: "ff-one", firstSeen: Date()), signingKey: bot.privateKey)
            #expect(ingested.status == 2, "\(ingested.stderr)")
            let main = try git("--git-dir", s.origin, "rev-parse", "main").trimmingCharacters(in: .whitespacesAndNewlines)
            let proposal = try git("--git-dir", s.origin, "rev-parse", "bulwark/proposals/ff-one").trimmingCharacters(in: .whitespacesAndNewlines)
            try git("--git-dir", s.origin, "update-ref", "refs/heads/main", proposal, main)

            let before = try s.snapshot()
            let refused = try s.run("apply", "--trusted-signers", signers)
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("is a proposal Bulwark wrote for review (Bulwark-Proposal: proposed)"), "\(refused.stderr)")
            #expect(try s.snapshot() == before)
            // A trusted person who commits on top without looking does not make it reviewed.
            try keys.commit(s, [("notes/on-top.txt", "x\n", alice)])
            let onTop = try s.run("apply", "--trusted-signers", signers)
            #expect(onTop.status == 1)
            #expect(onTop.stderr.contains("commit \(proposal.prefix(12)) is a proposal Bulwark wrote for review"), "\(onTop.stderr)")
            #expect(try s.snapshot() == before)

            try git("--git-dir", s.origin, "update-ref", "refs/heads/main", main)
            let accepted = try s.run("accept", "ff-one", "--trusted-signers", signers, environment: try s.signingEnvironment(alice.privateKey))
            #expect(accepted.status == 0, "\(accepted.stderr)")
            let applied = try s.run("apply", "--trusted-signers", signers)
            #expect(applied.status == 0, "\(applied.stderr)")
            #expect(try read(s.host + "/etc/ssh/sshd_config").contains("\nMaxAuthTries 3\n"))
        }
    }

    /// A person's key in the same signers file is trusted, but it is not the proposer's: with
    /// --proposer, a proposal that person re-signed (the same change, their signature) is refused,
    /// and Bulwark's own is accepted.
    @Test func withAProposerOnlyThatPrincipalsSignatureIsTakenForAProposal() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.commitPolicy("finding-rules/sshd.yaml", Self.rule, message: "finding rule")
            let keys = SignatureTests()
            let bot = try keys.makeKey(dir, "bulwark@fleet")
            let alice = try keys.makeKey(dir, "alice@example.org")
            let signers = try keys.allowedSigners(dir, bot, alice)
            let ingested = try ingest(s, Self.finding(id: "signed-two", firstSeen: Date()), signingKey: bot.privateKey)
            #expect(ingested.status == 2, "\(ingested.stderr)")
            let branch = "bulwark/proposals/signed-two"
            let original = try git("--git-dir", s.origin, "rev-parse", branch).trimmingCharacters(in: .whitespacesAndNewlines)
            let work = s.dir + "/resign"
            try git("clone", "-q", s.origin, work)
            try git("checkout", "-q", original, in: work)
            try git("-c", "gpg.format=ssh", "-c", "user.signingkey=\(alice.privateKey)", "commit", "-q", "--amend", "--no-edit", "-S", in: work)
            try git("push", "-q", "--force", "origin", "HEAD:refs/heads/\(branch)", in: work)
            let main = try git("--git-dir", s.origin, "rev-parse", "main")

            let refused = try s.run("accept", "signed-two", "--trusted-signers", signers, "--proposer", "bulwark@fleet")
            #expect(refused.status == 1 && refused.stderr.contains("not by the proposer 'bulwark@fleet'")
                    && refused.stderr.contains("'alice@example.org'"), "\(refused.stderr)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == main)
            let unchecked = try s.run("accept", "signed-two", "--proposer", "bulwark@fleet")
            #expect(unchecked.status != 0 && unchecked.stderr.contains("--proposer needs --trusted-signers"), "\(unchecked.stderr)")

            try git("push", "-q", "--force", "origin", "\(original):refs/heads/\(branch)", in: work)
            let accepted = try s.run("accept", "signed-two", "--trusted-signers", signers, "--proposer", "bulwark@fleet",
                                     environment: try s.signingEnvironment(alice.privateKey))
            #expect(accepted.status == 0, "\(accepted.stderr)")
            #expect(try git("--git-dir", s.origin, "show", "main:desired-state/hosts/sshd.yaml").contains("  MaxAuthTries: 3\n"))
        }
    }

    @Test func autoMergeCommitsTheTestedChangeAsBulwarkAndAnInvalidChangeIsNotProposed() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.commitPolicy("finding-rules/sshd.yaml", Self.rule.replacingOccurrences(of: "action: propose", with: "action: propose\n  autoMerge: true"),
                               message: "finding rule")
            let merged = try ingest(s, Self.finding(id: "auto-1", firstSeen: Date()))
            #expect(merged.status == 2)
            #expect((merged.report["items"] as? [[String: Any]])?.first?["outcome"] as? String == "merged", "\(merged.report)")
            let head = try git("--git-dir", s.origin, "log", "-1", "--format=%an%n%B", "main")
            #expect(head.hasPrefix("Bulwark\n") && head.contains("Bulwark-Proposal: auto-merged"))
            #expect(try git("--git-dir", s.origin, "show", "main:desired-state/hosts/sshd.yaml").contains("  MaxAuthTries: 3\n"))
            #expect(try git("--git-dir", s.origin, "branch", "--list", "bulwark/proposals/*").isEmpty)
            // Once merged, the same finding changes nothing more.
            #expect(try ingest(s, Self.finding(id: "auto-1", firstSeen: Date())).status == 0)

            // A change a safety guard blocks is never merged by itself: it becomes a proposal for a person.
            try s.commitPolicy("finding-rules/sshd.yaml", Self.rule.replacingOccurrences(of: "action: propose", with: "action: propose\n  autoMerge: true")
                .replacingOccurrences(of: "set: {MaxAuthTries: \"3\"}", with: "set: {MaxStartups: \"0:30:100\"}"), message: "a dangerous rule")
            let mainBefore = try git("--git-dir", s.origin, "rev-parse", "main")
            let guarded = try ingest(s, Self.finding(id: "guarded-1", firstSeen: Date()))
            let guardedItem = try #require((guarded.report["items"] as? [[String: Any]])?.first)
            #expect(guardedItem["outcome"] as? String == "proposed", "\(guardedItem)")
            #expect(try git("--git-dir", s.origin, "rev-parse", "main") == mainBefore)
            let guardedMessage = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/proposals/guarded-1")
            #expect(guardedMessage.contains("Plan: failed: local SSHDConfig/cis-5.1.16-max-auth-tries blocked: the sshd guard"), "\(guardedMessage)")
            #expect(guardedMessage.contains("Not merged automatically") && guardedMessage.contains("Bulwark-Proposal: proposed"))

            // A rule whose change does not validate (MaxAuthTries must be a number) proposes nothing:
            // no branch moves but the audit branch, which records the refusal.
            try s.commitPolicy("finding-rules/sshd.yaml", Self.rule.replacingOccurrences(of: "set: {MaxAuthTries: \"3\"}", with: "set: {MaxAuthTries: \"{{control}}\"}"),
                               message: "a wrong rule")
            func policyRefs() throws -> [Substring] {
                try git("--git-dir", s.origin, "for-each-ref").split(separator: "\n").filter { !$0.hasSuffix("refs/heads/bulwark/audit") }
            }
            let before = try policyRefs()
            let invalid = try ingest(s, Self.finding(id: "invalid-1", firstSeen: Date()))
            let item = try #require((invalid.report["items"] as? [[String: Any]])?.first)
            #expect(item["outcome"] as? String == "not-proposed" && (item["detail"] as? String)?.contains("invalid") == true, "\(item)")
            #expect(try policyRefs() == before)
            let refusal = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit")
            #expect(refusal.contains("Bulwark-Decision: refused") && refusal.contains("Bulwark-Finding: invalid-1"), "\(refusal)")
        }
    }
}

/// `bulwark ingest` and `POST /api/v1/findings` are one code path: the same document gets the
/// same decisions (rule, action, priority, SLA, proposal branch, resources to reconcile) from both.
@Suite struct FindingsEndpointAgreementTests {
    static let token = "findings-token-for-agreement"

    @Test func ingestAndThePostedFindingsAgree() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            try s.commitPolicy("finding-rules/sshd.yaml", FindingProposalEndToEndTests.rule, message: "finding rule")
            let seen = Timestamp.format(Date().addingTimeInterval(-600))
            let document = """
                [{"class_uid": 2003, "severity": "Medium", "metadata": {"product": {"name": "Lynis"}},
                  "finding_info": {"uid": "agree-proposal", "first_seen_time_dt": "\(seen)"},
                  "compliance": {"control": "SSH-7408-MaxAuthTries", "status": "Fail"}, "device": {"hostname": "local"},
                  "resources": [{"uid": "local"}]},
                 {"class_uid": 2004, "severity": "Critical", "metadata": {"event_code": "root-login"},
                  "finding_info": {"uid": "agree-reconcile", "first_seen_time_dt": "\(seen)"},
                  "resources": [{"uid": "SSHDConfig/cis-5.1.20-permit-root-login"}]},
                 {"class_uid": 2004, "severity": "Low", "metadata": {"event_code": "other"},
                  "finding_info": {"uid": "agree-nothing", "first_seen_time_dt": "\(seen)"}, "resources": [{"uid": "not-managed-here"}]}]
                """
            let daemon = try DaemonProcess(["--repo", s.origin, "--state-dir", s.state, "--poll", "3600"],
                                           environment: ["BULWARK_FINDINGS_TOKEN": Self.token], logPath: dir + "/daemon.log")
            #expect(daemon.wait(seconds: 60) { (try? daemon.get("/readyz").status) == 200 }, "readyz: \(daemon.log)")
            let posted = try httpRequest(port: daemon.port, "POST", "/api/v1/findings",
                                         headers: ["Authorization": "Bearer \(Self.token)", "Content-Type": "application/json"],
                                         body: Array(document.utf8))
            #expect(posted.status == 202, "\(posted.body)")
            let answer = try #require(try JSONSerialization.jsonObject(with: Data(posted.body.utf8)) as? [String: Any])
            #expect(answer["format"] as? String == "ocsf" && answer["findings"] as? Int == 3 && answer["matched"] as? Int == 1)
            _ = daemon.terminate()

            try write(dir + "/findings.json", document)
            let ingested = try s.run("ingest", dir + "/findings.json", "--output", "json", stateDir: dir + "/state-ingest")
            #expect(ingested.status == 2, "\(ingested.stderr)")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(ingested.stdout.utf8)) as? [String: Any])
            #expect(report["format"] as? String == "ocsf")

            func byID(_ items: Any?) -> [String: [String: Any]] {
                Dictionary(uniqueKeysWithValues: ((items as? [[String: Any]]) ?? []).compactMap { item in (item["id"] as? String).map { ($0, item) } })
            }
            let fromDaemon = byID(answer["items"]), fromIngest = byID(report["items"])
            #expect(Set(fromDaemon.keys) == ["agree-proposal", "agree-reconcile", "agree-nothing"])
            #expect(Set(fromIngest.keys) == Set(fromDaemon.keys))
            for (id, daemonItem) in fromDaemon {
                let ingestItem = try #require(fromIngest[id])
                for key in ["source", "control", "resource", "severity", "priority", "score", "firstSeen", "slaDeadline", "rule", "action", "branch", "reconciled"] {
                    #expect(String(describing: daemonItem[key] ?? "nil") == String(describing: ingestItem[key] ?? "nil"), "\(id) \(key)")
                }
            }
            // The daemon proposed; ingest, second, finds the proposal made.
            #expect(fromDaemon["agree-proposal"]?["outcome"] as? String == "proposed")
            #expect(fromIngest["agree-proposal"]?["outcome"] as? String == "already-proposed")
            #expect(fromDaemon["agree-reconcile"]?["outcome"] as? String == "reconcile" && fromIngest["agree-reconcile"]?["outcome"] as? String == "reconcile")
            #expect(fromDaemon["agree-nothing"]?["outcome"] as? String == "nothing" && fromIngest["agree-nothing"]?["outcome"] as? String == "nothing")
            #expect(try git("--git-dir", s.origin, "branch", "--list", "bulwark/proposals/*").contains("bulwark/proposals/agree-proposal"))
        }
    }
}
