@testable import BulwarkCommands
import BulwarkCore
import BulwarkTestSupport
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing

/// The real OpenSCAP scanner (openscap-scanner 1.3.7, `oscap-chroot`) with the SCAP Security
/// Guide's Debian 11 content (ssg-debian 0.1.65) on the drifted demo host tree, before and after
/// `bulwark apply` of the shipped baseline: every SSG rule a baseline resource names in its `ssg`
/// annotation passes afterwards, and the "before" results, ingested, name those resources.
@Suite struct OpenSCAPTests {
    static let content = "/usr/share/xml/scap/ssg/content/ssg-debian11-ds.xml"
    static let standard = "xccdf_org.ssgproject.content_profile_standard"
    static let tailored = "xccdf_org.bulwark_profile_shipped_baseline"

    /// The scan's view of one results file: each rule's result, and each OVAL definition's
    /// (`oval:ssg-sysctl_fs_suid_dumpable_static:def:1` → true), read from the ARF.
    struct Results {
        var rules: [String: String] = [:]
        var definitions: [String: String] = [:]
        var profile = ""
    }

    /// Reads an ARF with Foundation's XML parser directly (not Bulwark's findings parser, which
    /// is what the ingest step tests).
    final class ARFReader: NSObject, XMLParserDelegate {
        var results = Results()
        var rule: String?
        var inResult = false
        var text = ""

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            let local = name.split(separator: ":").last.map(String.init) ?? name
            switch local {
            case "rule-result": rule = attributes["idref"]
            case "result" where rule != nil: inResult = true; text = ""
            case "profile": if let id = attributes["idref"] { results.profile = id }
            case "definition":
                if let id = attributes["definition_id"], let result = attributes["result"] { results.definitions[id] = result }
            default: break
            }
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) { if inResult { text += string } }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            let local = name.split(separator: ":").last.map(String.init) ?? name
            if local == "result", inResult, let rule {
                results.rules[ControlAnnotation.rule(rule)] = text.trimmingCharacters(in: .whitespacesAndNewlines)
                inResult = false
            }
            if local == "rule-result" { rule = nil }
        }
    }

    /// Lays out what oscap needs to judge the demo tree as a Debian 11 host with sshd installed:
    /// the release (the content's CPE), dpkg's status naming openssh-server and login (the sshd
    /// and login.defs rules apply only where they are installed) and dpkg's architecture tables (libapt-pkg reads them under the
    /// root). Returns the APT configuration: the probe opens libapt-pkg with `RootDir=ROOT`; this
    /// keeps the host's apt.conf.d out (Docker's images empty `Dir::Cache::pkgcache` there, which
    /// fails the probe) and names a cache folder that does not exist under the root, so the
    /// cache is built in memory and nothing is written into the tree.
    static func prepare(_ root: String, in dir: String) throws -> String {
        try write(root + "/etc/debian_version", "11.7\n")
        try write(root + "/var/lib/dpkg/status", """
            Package: openssh-server
            Status: install ok installed
            Priority: optional
            Section: net
            Architecture: amd64
            Version: 1:9.2p1-2+deb12u7
            Description: secure shell (SSH) server, for secure access from remote machines

            Package: login
            Status: install ok installed
            Priority: required
            Section: admin
            Architecture: amd64
            Version: 1:4.13+dfsg1-1+b1
            Description: system login tools (the login.defs rules apply where it is installed)

            """)
        for table in ["cputable", "tupletable"] {
            try write(root + "/usr/share/dpkg/" + table, try read("/usr/share/dpkg/" + table))
        }
        try FileManager.default.createDirectory(atPath: dir + "/apt.conf.d", withIntermediateDirectories: true)
        let config = dir + "/apt.conf"
        try write(config, """
            Dir::Etc::parts "\(dir)/apt.conf.d";
            Dir::Cache "\(dir)/apt-cache-not-under-the-root";
            Dir::Cache::pkgcache "pkgcache.bin";
            Dir::Cache::srcpkgcache "srcpkgcache.bin";

            """)
        return config
    }

    /// The groups each rule of the content sits in (a rule is evaluated only if its groups are
    /// selected too, and the standard profile deselects `accounts`, `password_expiration`, …).
    final class GroupReader: NSObject, XMLParserDelegate {
        var groups: [String] = []
        var ancestors: [String: [String]] = [:]

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            let local = name.split(separator: ":").last.map(String.init) ?? name
            if local == "Group", let id = attributes["id"] { groups.append(id) }
            if local == "Rule", let id = attributes["id"] { ancestors[id] = groups }
        }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            if (name.split(separator: ":").last.map(String.init) ?? name) == "Group" { _ = groups.popLast() }
        }
    }

    /// A tailoring of the standard profile that also selects the rules the baseline names
    /// outside it (and their groups), with the baseline's (CIS) values for the two variables
    /// where SSG's defaults differ: password maximum age 365 days (SSG: 60), minimum age 1 day (SSG: 7),
    /// and ClientAliveCountMax 1 (SSG: 0, which OpenSSH 8.2 and later read as "never drop a client").
    static func tailoring(_ rules: [String], at path: String) throws {
        let reader = GroupReader()
        let parser = XMLParser(data: try Data(contentsOf: URL(fileURLWithPath: content)))
        parser.delegate = reader
        guard parser.parse() else { throw SupportError("cannot read \(content)") }
        let ids = rules.map { FindingParser.xccdfRulePrefix + $0 }
        let groups = Set(ids.flatMap { reader.ancestors[$0] ?? [] }).sorted()
        let selects = (groups + ids).map { "    <xccdf-1.2:select idref=\"\($0)\" selected=\"true\"/>" }
        try write(path, """
            <?xml version="1.0" encoding="UTF-8"?>
            <xccdf-1.2:Tailoring xmlns:xccdf-1.2="http://checklists.nist.gov/xccdf/1.2" id="xccdf_org.bulwark_tailoring_shipped_baseline">
              <xccdf-1.2:benchmark href="\(content)"/>
              <xccdf-1.2:version time="2026-12-01T00:00:00">1</xccdf-1.2:version>
              <xccdf-1.2:Profile id="\(tailored)" extends="\(standard)">
                <xccdf-1.2:title>Standard, and the rules Bulwark's shipped baseline names</xccdf-1.2:title>
            \(selects.joined(separator: "\n"))
                <xccdf-1.2:set-value idref="xccdf_org.ssgproject.content_value_var_accounts_maximum_age_login_defs">365</xccdf-1.2:set-value>
                <xccdf-1.2:set-value idref="xccdf_org.ssgproject.content_value_var_accounts_minimum_age_login_defs">1</xccdf-1.2:set-value>
                <xccdf-1.2:set-value idref="xccdf_org.ssgproject.content_value_var_sshd_set_keepalive">1</xccdf-1.2:set-value>
              </xccdf-1.2:Profile>
            </xccdf-1.2:Tailoring>

            """)
    }

    /// One scan of the tree; the XCCDF results and the ARF are written next to each other.
    static func scan(_ root: String, aptConfig: String, tailoring: String, name: String, in dir: String) throws -> Results {
        let out = try run("/usr/bin/oscap-chroot", [
            root, "xccdf", "eval", "--tailoring-file", tailoring, "--profile", tailored,
            "--results", dir + "/\(name).xml", "--results-arf", dir + "/\(name)-arf.xml", content,
        ], in: dir, environment: ["APT_CONFIG": aptConfig])
        // 0: every rule passed; 2: some failed; anything else is the scanner's error.
        guard out.status == 0 || out.status == 2 else { throw SupportError("oscap exited \(out.status): \(out.stderr)") }
        let reader = ARFReader()
        let parser = XMLParser(data: try Data(contentsOf: URL(fileURLWithPath: dir + "/\(name)-arf.xml")))
        parser.delegate = reader
        guard parser.parse() else { throw SupportError("cannot read \(name)-arf.xml") }
        return reader.results
    }

    /// The rules whose check also reads `/proc/sys`, which the scanner reads on this machine's
    /// kernel, not in the tree: judged on their persisted part (`…_static`) and on Bulwark's
    /// own observation of the tree's runtime values.
    static func runtimeChecked(_ rule: String, _ results: Results) -> Bool {
        results.definitions["oval:ssg-\(rule)_runtime:def:1"] != nil
    }

    static func staticResult(_ rule: String, _ results: Results) -> String? {
        results.definitions["oval:ssg-\(rule)_static:def:1"]
    }

    @Test(.timeLimit(.minutes(20)))
    func everyRuleTheBaselineNamesPassesAfterApply() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/oscap-chroot"),
                     "openscap-scanner is not installed: run scripts/setup")
        try #require(FileManager.default.fileExists(atPath: Self.content), "ssg-debian is not installed: run scripts/setup")
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let aptConfig = try Self.prepare(s.host, in: dir)

            // The rules the baseline names, from its resources' annotations, and the resources naming each.
            let state = try DesiredStateLoader(registry: Bulwark.registry()).load(try Bulwark.Validate.readFiles(under: s.policy),
                                                                                  revision: "working tree")
            var resourcesOf: [String: Set<String>] = [:]
            for binding in state.bindings where binding.target == "local" {
                for rule in state.resources[binding.resource].map(ControlAnnotation.rules) ?? [] {
                    resourcesOf[rule, default: []].insert(binding.resource.description)
                }
            }
            let covered = resourcesOf.keys.sorted()
            #expect(covered.count >= 25, "\(covered)")
            try Self.tailoring(covered, at: dir + "/tailoring.xml")

            // Before: the scan changes nothing in the tree (Bulwark's own lock file under run/ aside).
            func tree() throws -> [String: String] { try s.snapshot().filter { !$0.key.hasPrefix("run/") } }
            let untouched = try tree()
            let before = try Self.scan(s.host, aptConfig: aptConfig, tailoring: dir + "/tailoring.xml", name: "before", in: dir)
            #expect(try tree() == untouched, "the scan wrote into the tree")
            #expect(before.profile == Self.tailored)
            // Every rule the baseline names is one the content has and the scan evaluated.
            for rule in covered {
                #expect(["pass", "fail"].contains(before.rules[rule] ?? "missing"), "\(rule): \(before.rules[rule] ?? "missing") before")
            }

            // The drift Bulwark plans to fix is the drift the scanner sees: each resource the
            // plan drifts fails at least one of its rules (or its persisted part), and each rule
            // that fails belongs to a drifted resource.
            let plan = try s.run("plan", "--output", "json")
            #expect(plan.status == 2)
            let report = try #require(try JSONSerialization.jsonObject(with: Data(plan.stdout.utf8)) as? [String: Any])
            let drifted = Set(((report["drift"] as? [[String: Any]]) ?? []).compactMap { $0["resource"] as? String })
            func failing(_ rule: String, _ results: Results) -> Bool {
                Self.runtimeChecked(rule, results) ? Self.staticResult(rule, results) == "false" : results.rules[rule] == "fail"
            }
            for rule in covered where failing(rule, before) {
                #expect(!(resourcesOf[rule] ?? []).isDisjoint(with: drifted), "\(rule) fails but none of \(resourcesOf[rule] ?? []) drifts")
            }
            for resource in drifted {
                let rules = covered.filter { resourcesOf[$0]?.contains(resource) == true }
                #expect(rules.isEmpty || rules.contains { failing($0, before) }, "\(resource) drifts but passes \(rules)")
            }
            for rule in ["sshd_disable_root_login", "sshd_set_idle_timeout", "sshd_set_keepalive", "file_permissions_etc_shadow",
                         "file_groupowner_etc_shadow", "accounts_maximum_age_login_defs", "accounts_umask_etc_login_defs"] {
                #expect(before.rules[rule] == "fail", "\(rule) before: \(before.rules[rule] ?? "missing")")
            }
            #expect(Self.staticResult("sysctl_fs_suid_dumpable", before) == "false")

            // The "before" results, ingested: each failing rule the baseline names is reconciled
            // on the resources that name it; a failing rule no resource names is left alone.
            let ingest = try s.run("ingest", dir + "/before.xml", "--output", "json")
            #expect(ingest.status == 2, "\(ingest.stderr)")
            let intake = try #require(try JSONSerialization.jsonObject(with: Data(ingest.stdout.utf8)) as? [String: Any])
            #expect(intake["format"] as? String == "xccdf")
            let items = (intake["items"] as? [[String: Any]]) ?? []
            func item(_ rule: String) -> [String: Any]? { items.first { $0["control"] as? String == FindingParser.xccdfRulePrefix + rule } }
            for rule in covered where before.rules[rule] == "fail" {
                let found = try #require(item(rule), "\(rule) is not in the intake report")
                #expect(found["source"] as? String == "openscap")
                #expect(found["outcome"] as? String == "reconcile", "\(rule): \(found)")
                let reconciled = Set(((found["reconciled"] as? [String]) ?? []).map { $0.replacingOccurrences(of: "local ", with: "") })
                #expect(reconciled == resourcesOf[rule], "\(rule) reconciled \(reconciled)")
            }
            let unmanaged = try #require(item("partition_for_home"))
            #expect(unmanaged["outcome"] as? String == "nothing" && unmanaged["detail"] as? String == "names no managed resource")
            #expect(try tree() == untouched, "plan and ingest fix nothing themselves")

            // Apply, then scan again.
            let apply = try s.run("apply")
            #expect(apply.status == 0, "\(apply.stderr)")
            #expect(try s.run("plan").status == 0, "Bulwark observes every resource in sync, the tree's runtime values included")
            let after = try Self.scan(s.host, aptConfig: aptConfig, tailoring: dir + "/tailoring.xml", name: "after", in: dir)
            for rule in covered {
                if Self.runtimeChecked(rule, after) {
                    // Persisted in the tree; the runtime part reads this machine's kernel.
                    #expect(Self.staticResult(rule, after) == "true", "\(rule): persisted part \(Self.staticResult(rule, after) ?? "missing")")
                    #expect(after.rules[rule] == "pass" || after.definitions["oval:ssg-\(rule)_runtime:def:1"] == "false",
                            "\(rule): \(after.rules[rule] ?? "missing")")
                } else {
                    #expect(after.rules[rule] == "pass", "\(rule) after apply: \(after.rules[rule] ?? "missing")")
                }
            }
            // The standard profile's own rules the baseline names are among them.
            for rule in ["sshd_disable_root_login", "sshd_disable_empty_passwords", "sshd_set_idle_timeout",
                         "file_permissions_etc_shadow", "file_owner_etc_gshadow", "file_groupowner_etc_passwd",
                         "sysctl_fs_protected_hardlinks", "sysctl_fs_protected_symlinks", "sysctl_fs_suid_dumpable",
                         "sysctl_kernel_randomize_va_space"] {
                #expect(covered.contains(rule), "\(rule) is not named by the baseline")
            }
            // The fixed tree's runtime values, as Bulwark set them where the tree has them.
            #expect(try read(s.host + "/proc/sys/fs/suid_dumpable").trimmingCharacters(in: .whitespacesAndNewlines) == "0")
            #expect(try read(s.host + "/proc/sys/kernel/randomize_va_space").trimmingCharacters(in: .whitespacesAndNewlines) == "2")
        }
    }
}
