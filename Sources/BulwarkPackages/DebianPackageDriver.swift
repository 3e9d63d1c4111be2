internal import Foundation
import BulwarkCore

/// `DebianPackage`: one Debian package on a host target, present (at least some version) or absent.
///
/// `spec: {name: openssh-server, minVersion: "1:9.2p1-2+deb12u3"}`, `{name: telnetd, state: absent}`,
/// `{name: unattended-upgrades, state: present}`; `restart: SERVICE` names the one service an
/// upgrade may restart (none is restarted otherwise). Observed from the root's dpkg database,
/// fixed through apt for that root only (see `Apt`), verified by reading the database again.
///
/// Properties: `state` (`present`/`absent`, or dpkg's state of a package left half-installed);
/// `version` (`>= MIN`: observed as that text when the installed version satisfies it, else as
/// the installed version); `restart` (always as desired: a setting, not something to drift).
struct DebianPackageDriver: ReportingDriver {
    static let kind = "DebianPackage"

    // MARK: - The spec

    /// A resource's package, as its properties carry it.
    struct Wanted: Sendable {
        var name: String
        var state: String
        var minimum: DebianVersion?
        var restart: String?

        init(_ resource: Resource) throws(PackagesError) {
            guard resource.spec.subject.hasPrefix("package:") else {
                throw PackagesError("resource \(resource.id) is not a DebianPackage")
            }
            name = String(resource.spec.subject.dropFirst("package:".count))
            var state = "present"
            for property in resource.spec.properties {
                switch property.name {
                case "state": state = property.value
                case "version": minimum = try DebianVersion(String(property.value.dropFirst(3)))
                case "restart": restart = property.value
                default: break
                }
            }
            self.state = state
        }
    }

    static func parse(_ spec: SpecReader) -> ResourceSpec? {
        guard spec.entries() != nil else { return nil }
        spec.allowOnly(["name", "state", "minVersion", "restart"])
        guard let nameReader = spec.field("name", required: true), let name = nameReader.string() else { return nil }
        guard DpkgStatus.isPackageName(name) else {
            nameReader.fail("expected a Debian package name such as openssh-server (lower-case letters, digits, '+', '-', '.'), got '\(name)'")
            return nil
        }
        var state = "present"
        if let reader = spec.field("state") {
            guard let value = reader.oneOf(["present", "absent"]) else { return nil }
            state = value
        }
        var properties = [DesiredProperty("state", state)]
        if let reader = spec.field("minVersion") {
            guard let text = reader.string() else { return nil }
            guard state == "present" else {
                reader.fail("minVersion needs state: present (an absent package has no version)")
                return nil
            }
            do {
                let version = try DebianVersion(text)
                properties.append(DesiredProperty("version", ">= " + version.text))
            } catch {
                reader.fail("expected a Debian version such as 1:9.2p1-2+deb12u3: \(error.message)")
                return nil
            }
        }
        if let reader = spec.field("restart") {
            guard let service = reader.string() else { return nil }
            guard state == "present" else {
                reader.fail("restart applies to an upgrade; an absent package has nothing to restart")
                return nil
            }
            guard isServiceName(service) else {
                reader.fail("expected a service name such as ssh (letters, digits, '@', '.', '_', '-'), got '\(service)'")
                return nil
            }
            properties.append(DesiredProperty("restart", service))
        }
        return ResourceSpec(subject: "package:" + name, properties: properties)
    }

    static func isServiceName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 128 && !name.hasPrefix(".") && !name.hasPrefix("-")
            && name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "@._-".unicodeScalars.contains($0)) }
    }

    /// `version: >= 1.1 → >= 1.0` lowers the floor; `state: absent → present` brings back a
    /// package the policy had removed.
    @Sendable static func weakens(_ property: String, _ from: String, _ to: String) -> String? {
        switch property {
        case "state" where from == "absent" && to == "present":
            return "installs a package the policy had removed"
        case "version":
            guard let old = try? DebianVersion(String(from.dropFirst(3))), let new = try? DebianVersion(String(to.dropFirst(3))),
                  new < old else { return nil }
            return "lowers the minimum version"
        default:
            return nil
        }
    }

    // MARK: - Observing

    func watchedPaths(_ resource: Resource, on target: Target) -> [String] {
        guard let root = target.root else { return [] }
        return [DpkgPaths.status(root.path)]
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let wanted = try Wanted(resource)
        let root = try Self.root(target)
        // A database reached through a link out of the root would describe another system.
        try Apt(root: root).checkLayout()
        let status = try DpkgStatus.read(root: root)
        return Observation(values: Self.values(wanted, status))
    }

    /// The root the target's adapter read and checked (`TargetRoot`), never the settings' text:
    /// a target no rooted adapter read has none, and nothing is observed or changed on it.
    static func root(_ target: Target) throws(PackagesError) -> String {
        guard let root = target.root else {
            throw PackagesError("target \(target.name) has no root read by its adapter (a host target's `root`)")
        }
        return root.path
    }

    /// The observed properties of `wanted` in the database.
    static func values(_ wanted: Wanted, _ status: DpkgStatus) -> [String: String?] {
        var values: [String: String?] = [:]
        let installed = status.installed(wanted.name)
        if installed != nil {
            values["state"] = "present"
        } else if let broken = status.entries(wanted.name).first(where: { !$0.isAbsent }) {
            // Half-installed, half-configured, unpacked, or needing a reinstall: neither.
            values["state"] = broken.flag == "ok" ? broken.state : "\(broken.state) (\(broken.flag))"
        } else {
            values["state"] = "absent"
        }
        if let minimum = wanted.minimum {
            if let version = installed?.version {
                values["version"] = version >= minimum ? ">= " + minimum.text : version.text
            } else {
                values["version"] = .some(nil)
            }
        }
        if let restart = wanted.restart { values["restart"] = restart }
        return values
    }

    // MARK: - Fixing

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        _ = try await applyReporting(changes, to: resource, on: target)
    }

    func applyReporting(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws -> ApplyReport {
        let wanted = try Wanted(resource)
        let root = try Self.root(target)
        let apt = try Apt(root: root)
        try apt.checkLayout()
        let before = try DpkgStatus.read(root: root)
        // Read again right before acting: another writer (a person with apt) may have fixed it.
        let now = Self.values(wanted, before)
        if changes.allSatisfy({ (now[$0.property] ?? nil) == $0.desired }) {
            throw AlreadyInSync(properties: Set(changes.map(\.property)))
        }
        var report: ApplyReport
        do {
            report = wanted.state == "absent"
                ? try await remove(wanted, before: before, apt: apt, root: root)
                : try await install(wanted, before: before, apt: apt, root: root)
        } catch var failure as ReportedFailure {
            failure.report.notes = failure.report.notes.map { Redaction.urls(in: $0) }
            throw failure
        }
        // A source's URL may carry credentials (`https://user:password@mirror/`): never in a record.
        report.notes = report.notes.map { Redaction.urls(in: $0) }
        return report
    }

    /// Removes the package, and nothing else: when apt would also remove packages that depend on
    /// it, nothing is done (Bulwark removes only what the policy names).
    private func remove(_ wanted: Wanted, before: DpkgStatus, apt: Apt, root: String) async throws -> ApplyReport {
        let simulation = try await apt.simulate(["remove", "--", wanted.name])
        let others = simulation.removes.map { $0.split(separator: ":").first.map(String.init) ?? $0 }.filter { $0 != wanted.name }
        guard others.isEmpty else {
            throw PackagesError("removing \(wanted.name) would also remove \(others.sorted().joined(separator: ", ")); "
                                + "Bulwark removes only the package the policy names: remove those first, or keep \(wanted.name)")
        }
        let version = before.entries(wanted.name).first { !$0.isAbsent }?.version?.text ?? "?"
        do {
            try await apt.remove(wanted.name)
        } catch {
            throw ReportedFailure(error.description, report: ApplyReport(notes: [
                "\(wanted.name) \(version) → removal failed; dpkg database now: \(Self.describe(wanted.name, root: root))",
            ]))
        }
        return ApplyReport(notes: ["\(wanted.name) \(version) → removed (\(apt.sandboxed ? "apt for " + root : "apt"))"])
    }

    /// Installs, or upgrades to the newest candidate that satisfies the minimum (a version
    /// pinned lower than the minimum is passed over for the newest that satisfies it: the guard
    /// blocks that without approval, see `assess`). Never a version the root's apt preferences
    /// give a priority of 0 or less (`Apt.Policy.choice`): the guard blocks that at the plan when
    /// the lists show it, and with the lists just updated it is refused here.
    private func install(_ wanted: Wanted, before: DpkgStatus, apt: Apt, root: String) async throws -> ApplyReport {
        let old = before.installed(wanted.name)
        let oldText = old?.version?.text ?? before.entries(wanted.name).first { !$0.isAbsent }?.version?.text ?? "not installed"
        try await Self.update(apt)
        let policy = try await apt.policy(wanted.name)
        let chosen: DebianVersion
        switch policy.choice(minimum: wanted.minimum) {
        case .install(let version):
            chosen = version
        case .pinnedOut(let version, let priority):
            throw PackagesError(Self.pinnedOut(wanted, version, priority))
        case .none:
            let offered = policy.available.map(\.version.text)
            throw PackagesError("no version of \(wanted.name)\(wanted.minimum.map { " >= \($0.text)" } ?? "") in the sources of "
                                + "\(root)" + (offered.isEmpty ? " (none at all)" : " (available: \(offered.joined(separator: ", ")))"))
        }
        let fetched: [String]
        do {
            fetched = try await apt.install([wanted.name + "=" + chosen.text], onlyUpgrade: old != nil)
        } catch {
            throw ReportedFailure(error.description, report: ApplyReport(notes: [
                "\(wanted.name) \(oldText) → \(chosen.text) failed; dpkg database now: \(Self.describe(wanted.name, root: root))",
            ]))
        }
        let after = try DpkgStatus.read(root: root)
        let newText = after.installed(wanted.name)?.version?.text ?? Self.describe(wanted.name, root: root)
        let source = fetched.first { $0.split(separator: " ").suffix(2).first.map(String.init) == wanted.name }
            .map { line -> String in
                // `file:/repo ./ dummy 1.1` → `file:/repo ./`
                let words = line.split(separator: " ")
                return words.dropLast(2).joined(separator: " ")
            }
            ?? policy.sources(of: chosen).first ?? "unknown source"
        var report = ApplyReport(notes: ["\(wanted.name) \(oldText) → \(newText) from \(source)"])
        if old != nil {
            try await restarts(after: wanted, root: root, into: &report)
        }
        return report
    }

    /// Why a version the preferences forbid is not installed.
    static func pinnedOut(_ wanted: Wanted, _ version: DebianVersion, _ priority: Int) -> String {
        "the only version of \(wanted.name)\(wanted.minimum.map { " >= \($0.text)" } ?? "") (\(version.text)) comes from a source "
            + "pinned to \(priority) in the root's apt preferences (never install from it); Bulwark does not install past "
            + "that pin: publish the version in a source apt may use, or change the pin"
    }

    /// `apt-get update` for the root, once a pass (`PassScope`): a pass that upgrades several
    /// packages of one root refreshes its lists before the first and reuses them for the others
    /// (a failed update fails them all without trying again). Outside a pass, every time.
    static func update(_ apt: Apt) async throws {
        guard let pass = PassScope.current else { return try await apt.update() }
        try await pass.once("apt-get update\u{1}" + apt.root) { try await apt.update() }
    }

    /// What an upgrade leaves to restart: the package's services (`etc/init.d/NAME`, systemd
    /// units), and the machine when it is a kernel or `run/reboot-required` appeared. Only the
    /// service the resource names in `restart` is restarted; the rest is recorded.
    private func restarts(after wanted: Wanted, root: String, into report: inout ApplyReport) async throws {
        var needed = Self.services(of: wanted.name, root: root)
        if wanted.name.hasPrefix("linux-image-") || FileManager.default.fileExists(atPath: DpkgPaths.under(root, "run/reboot-required")) {
            needed.append("reboot")
        }
        if let allowed = wanted.restart, !needed.contains(allowed) {
            report.notes.append("\(allowed) may be restarted, but \(wanted.name) ships no such service: nothing restarted")
        }
        if let allowed = wanted.restart, needed.contains(allowed) {
            do {
                try await Self.restart(allowed, root: root)
                needed.removeAll { $0 == allowed }
                report.notes.append("restarted \(allowed) (the resource allows it)")
            } catch {
                report.notes.append("restarting \(allowed) failed: \(error)")
            }
        }
        report.needsRestart = needed
    }

    /// Services a package ships, from its file list in the dpkg database.
    static func services(of name: String, root: String) -> [String] {
        let info = DpkgPaths.under(root, "var/lib/dpkg/info")
        let candidates = ([name + ".list"] + ((try? FileManager.default.contentsOfDirectory(atPath: info)) ?? [])
            .filter { $0.hasPrefix(name + ":") && $0.hasSuffix(".list") })
        var services: [String] = []
        for file in candidates {
            guard let bytes = try? DpkgPaths.readBounded(info + "/" + file, limit: 16 << 20) else { continue }
            for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
                var service: Substring?
                if line.hasPrefix("/etc/init.d/") {
                    service = line.dropFirst("/etc/init.d/".count)
                } else if let range = line.range(of: "/systemd/system/"), line.hasSuffix(".service"),
                          line.hasPrefix("/lib/") || line.hasPrefix("/usr/lib/") {
                    service = line[range.upperBound...].dropLast(".service".count)
                }
                if let service, !service.contains("/"), !service.contains("@"), isServiceName(String(service)),
                   !services.contains(String(service)) {
                    services.append(String(service))
                }
            }
        }
        return services.sorted()
    }

    /// Restarts one service: through systemd or invoke-rc.d on the machine itself; in another
    /// root, its init script run chrooted into that root (nothing of the host is restarted).
    static func restart(_ service: String, root: String) async throws {
        let runner = ProcessRunner(environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"])
        let program: String
        let arguments: [String]
        if root == "/" {
            if FileManager.default.fileExists(atPath: "/run/systemd/system") {
                (program, arguments) = ("/usr/bin/systemctl", ["try-restart", "--", service + ".service"])
            } else {
                (program, arguments) = ("/usr/sbin/invoke-rc.d", [service, "restart"])
            }
        } else {
            guard FileManager.default.isExecutableFile(atPath: DpkgPaths.under(root, "etc/init.d/" + service)) else {
                throw PackagesError("\(root) has no etc/init.d/\(service) to restart it with")
            }
            (program, arguments) = ("/usr/sbin/chroot", [root, "/etc/init.d/" + service, "restart"])
        }
        let result = try await runner.run(program, arguments, timeout: .seconds(120))
        guard result.status == 0, !result.timedOut else { throw Apt.failure(program, arguments, result) }
    }

    /// The package's entry as the database now gives it, for a record: `1.1, half-configured`.
    static func describe(_ name: String, root: String) -> String {
        do {
            let status = try DpkgStatus.read(root: root)
            let entries = status.entries(name)
            guard !entries.isEmpty else { return "\(name) not in it" }
            return entries.map { "\(name) \($0.version?.text ?? "(no version)") \($0.want) \($0.flag) \($0.state)" }
                .joined(separator: "; ")
        } catch {
            return "unreadable: \(error)"
        }
    }
}
