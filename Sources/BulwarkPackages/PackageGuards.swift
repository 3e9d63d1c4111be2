internal import Foundation
import BulwarkCore

/// The package kind's safety guards, judged against the root's dpkg database and apt
/// preferences as they are now. Each blocks (until a person approves the blocked id):
/// - removing an `Essential: yes` or `Priority: required` package;
/// - removing a package that sshd, the init system, apt, sudo or doas (how administrators
///   become root; `sudo-ldap` provides sudo) or Bulwark itself needs: the packages
///   named in `PackageGuards.needs` and everything they depend on (`Depends`, `Pre-Depends`,
///   every installed alternative, every installed provider of a virtual package);
/// - changing a package someone pinned (`apt-mark hold`, or a stanza of `etc/apt/preferences`
///   naming it or its source package, installed or not: for one not installed, the source its
///   versions in the root's package lists are built from): overriding the pin could hold back
///   the update it pins, or undo a decision;
/// - installing or upgrading when the only versions that satisfy the policy come from sources
///   the preferences give a priority of 0 or less (`Package: *` with `Pin-Priority: -1` for
///   a third-party origin), as the root's package lists show them now (`apt-cache policy`,
///   without updating them: the upgrade refuses such a version again after its update).
/// A database that cannot be read blocks: a guard that cannot judge never lets a change through.
/// Where it could not be read for want of the machine's resources (out of descriptors or memory,
/// apt that cannot be started: `Shortage`), nothing was judged: the change is left unjudged
/// (`GuardVerdict.unjudged`), the pass fails, and no approval is offered.
extension DebianPackageDriver {
    /// The name the package guard goes by in `Shortage.judging` (a test's fault).
    static let guardName = "package"

    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async -> GuardVerdict {
        let shortages = Shortage.count
        return await Shortage.judging(Self.guardName) { await judge(changes, to: resource, on: target, since: shortages) }
    }

    private func judge(_ changes: [PropertyDrift], to resource: Resource, on target: Target, since shortages: UInt64) async -> GuardVerdict {
        do {
            let wanted = try Wanted(resource)
            let root = try Self.root(target)
            let status = try DpkgStatus.read(root: root)
            let preferences = try PackageGuards.preferenceFiles(root: root)
            let listed = try await PackageGuards.listedSources(of: wanted.name, root: root, status: status, preferences: preferences)
            let pin = PackageGuards.pin(of: wanted.name, status: status, preferences: preferences, listedSources: listed)
            let verdict = PackageGuards.judge(wanted, changes: changes, status: status, pin: pin)
            guard verdict == .allow, wanted.state == "present",
                  changes.contains(where: { $0.property == "state" || $0.property == "version" }) else { return verdict }
            let apt = try Apt(root: root)
            try apt.checkLayout()
            if case .pinnedOut(let version, let priority) = try await apt.policy(wanted.name).choice(minimum: wanted.minimum) {
                return .block(Self.pinnedOut(wanted, version, priority))
            }
            return .allow
        } catch {
            return .cannotJudge("the package guard cannot judge this change, so it is not made: \(error)", error, since: shortages)
        }
    }
}

public enum PackageGuards {
    /// Who needs what: a package (a name, or a glob for a library whose name carries its
    /// version), and why it must stay. What Bulwark itself runs on is here by name, however it
    /// was installed (a deb, a tarball, a build): ssh-keygen verifies signed commits, gpgv
    /// OpenPGP ones, ca-certificates every TLS connection, libgit2 and libyaml are linked in.
    public static let needs: [(package: String, why: String)] = [
        ("openssh-server", "sshd"), ("apt", "package management"), ("dpkg", "package management"),
        ("init", "the init system"), ("systemd-sysv", "the init system"), ("systemd", "the init system"),
        ("sysvinit-core", "the init system"), ("runit-init", "the init system"), ("openrc", "the init system"),
        ("sudo", "administrators becoming root"), ("opendoas", "administrators becoming root"),
        ("bulwark", "Bulwark itself"),
        ("openssh-client", "Bulwark itself (ssh-keygen verifies signatures)"),
        ("gpgv", "Bulwark itself (gpgv verifies OpenPGP signatures)"),
        ("ca-certificates", "Bulwark itself (TLS to git remotes and APIs)"),
        ("libgit2-[0-9]*", "Bulwark itself (libgit2)"), ("libyaml-0-[0-9]*", "Bulwark itself (libyaml)"),
    ]

    static func judge(_ wanted: DebianPackageDriver.Wanted, changes: [PropertyDrift], status: DpkgStatus,
                      pin: String?) -> GuardVerdict {
        let name = wanted.name
        let entries = status.entries(name).filter { !$0.isAbsent }
        if wanted.state == "absent", changes.contains(where: { $0.property == "state" }), !entries.isEmpty {
            if entries.contains(where: \.essential) {
                return .block("\(name) is Essential: yes; removing it can leave the system unable to install or boot")
            }
            if entries.contains(where: { $0.priority == "required" }) {
                return .block("\(name) has Priority: required; removing it can break the base system")
            }
            if let chain = needed(status)[name] {
                return .block("\(name) is needed by \(chain); removing it could cut off access or stop the machine being managed")
            }
        }
        if !entries.isEmpty || wanted.state == "present", let pin {
            return .block("\(name) is pinned (\(pin)); Bulwark does not override a person's pin without approval: "
                          + "it could hold back the update the pin keeps")
        }
        return .allow
    }

    /// Every installed package that something in `needs` depends on, with the chain that needs
    /// it (`libssl3, needed by openssh-server (sshd)`).
    public static func needed(_ status: DpkgStatus) -> [String: String] {
        var providers: [String: [String]] = [:]
        for (name, entries) in status.packages {
            for entry in entries where entry.isInstalled {
                for virtual in entry.provides { providers[virtual, default: []].append(name) }
            }
        }
        func installed(_ name: String) -> [String] {
            (status.installed(name) != nil ? [name] : []) + (providers[name] ?? []).filter { $0 != name }
        }
        var result: [String: String] = [:]
        var purpose: [String: String] = [:]
        var queue: [String] = []
        for (package, why) in needs {
            let names = package.contains("*") ? status.packages.keys.filter { fnmatch(package, $0, 0) == 0 }.sorted() : [package]
            for name in names.flatMap(installed) where result[name] == nil {
                result[name] = why
                purpose[name] = why
                queue.append(name)
            }
        }
        let roots = Set(queue)
        var index = 0
        while index < queue.count {
            let current = queue[index]
            index += 1
            let why = purpose[current] ?? "?"
            for entry in status.entries(current) where entry.isInstalled {
                for group in entry.preDepends + entry.depends {
                    for alternative in group {
                        for name in installed(alternative) where result[name] == nil {
                            result[name] = roots.contains(current) ? "\(current) (\(why))" : "\(current), which \(why) needs"
                            purpose[name] = why
                            queue.append(name)
                        }
                    }
                }
            }
        }
        return result
    }

    /// How someone pinned `name`, or nil: held in dpkg (`apt-mark hold`), or named by a stanza of
    /// `preferences` (the root's, `preferenceFiles`; a pattern other than `*`) by its own name or, as `src:NAME`, by
    /// the source package it is built from. A package not installed is judged too (apt honours a
    /// pin on a package it has yet to install), as built from a source of its own name and from
    /// each of `listedSources` (what the root's package lists say its versions are built from).
    static func pin(of name: String, status: DpkgStatus, preferences: [(String, String)],
                    listedSources: Set<String> = []) -> String? {
        let entries = status.entries(name)
        if entries.contains(where: \.isHeld) { return "held in dpkg (apt-mark hold)" }
        let sources = entries.isEmpty ? listedSources.union([name]).sorted() : Set(entries.map(\.source)).sorted()
        for (file, text) in preferences {
            for stanza in text.components(separatedBy: "\n\n") {
                var patterns: [String] = []
                var pin = ""
                var priority = ""
                for line in stanza.split(separator: "\n") {
                    let trimmed = line.trimmingCharacters(in: .whitespaces)
                    guard !trimmed.hasPrefix("#"), let colon = trimmed.firstIndex(of: ":") else { continue }
                    let key = trimmed[..<colon].lowercased()
                    let value = trimmed[trimmed.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                    switch key {
                    case "package": patterns = value.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
                    case "pin": pin = value
                    case "pin-priority": priority = value
                    default: break
                    }
                }
                for pattern in patterns where pattern != "*" {
                    let pinned = pattern.lowercased().hasPrefix("src:")
                        ? sources.contains { matches(String(pattern.dropFirst(4)), $0) }
                        : matches(pattern, name)
                    if pinned { return "\(file): Package: \(pattern), Pin: \(pin), Pin-Priority: \(priority)" }
                }
            }
        }
        return nil
    }

    /// What the root's package lists, as they are now (not updated), say the versions of `name`
    /// are built from, when it is not installed (the dpkg database says it for one that is) and
    /// a stanza of the preferences names a source package (`src:`); otherwise empty.
    static func listedSources(of name: String, root: String, status: DpkgStatus,
                              preferences: [(String, String)]) async throws(PackagesError) -> Set<String> {
        guard status.entries(name).isEmpty,
              preferences.contains(where: { $0.1.range(of: "src:", options: .caseInsensitive) != nil }) else {
            return []
        }
        let apt = try Apt(root: root)
        try apt.checkLayout()
        return try await apt.sourcePackages(of: name)
    }

    /// apt's package patterns in preferences, as `pkgVersionMatch::ExpressionMatches` reads them:
    /// a name, a glob, or `/regex/`, ignoring case, each perhaps with an architecture (`:any`,
    /// `:amd64`), which is not judged: a pin for any architecture counts. A regex that does not
    /// compile matches everything (a pin Bulwark cannot read is treated as a pin).
    static func matches(_ pattern: String, _ name: String) -> Bool {
        var pattern = pattern
        if let colon = pattern.lastIndex(of: ":"), !pattern[colon...].contains("/") { pattern = String(pattern[..<colon]) }
        if pattern.count >= 2, pattern.hasPrefix("/"), pattern.hasSuffix("/") {
            // Not lower-cased: `\S` is not `\s`.
            guard let regex = try? NSRegularExpression(pattern: String(pattern.dropFirst().dropLast()), options: .caseInsensitive) else {
                return true
            }
            return regex.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)) != nil
        }
        // Ignoring case as apt does: a package's name is lower case (Debian Policy 5.6.1).
        pattern = pattern.lowercased()
        if pattern.contains(where: { "*?[".contains($0) }) { return fnmatch(pattern, name, 0) == 0 }
        return pattern == name
    }

    /// `etc/apt/preferences` and the files of `etc/apt/preferences.d` apt reads (no extension,
    /// or `.pref`), each at most 1 MiB, at most 512 of them.
    static func preferenceFiles(root: String) throws(PackagesError) -> [(String, String)] {
        var paths = [DpkgPaths.under(root, "etc/apt/preferences")]
        let folder = DpkgPaths.under(root, "etc/apt/preferences.d")
        // A folder that is not there holds no pin; one that cannot be listed (out of
        // descriptors) may hold one, and the guard cannot judge without it.
        let names: [String]
        if FileManager.default.fileExists(atPath: folder) {
            do {
                names = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
            } catch {
                Shortage.note(error)
                throw PackagesError("cannot list: \(error)", subject: folder)
            }
        } else {
            names = []
        }
        guard names.count <= 512 else { throw PackagesError("more than 512 files", subject: folder) }
        for name in names where name.allSatisfy({ $0.isLetter || $0.isNumber || "_-.".contains($0) })
            && (!name.contains(".") || name.hasSuffix(".pref")) {
            paths.append(folder + "/" + name)
        }
        var result: [(String, String)] = []
        for path in paths {
            guard FileManager.default.fileExists(atPath: path) else { continue }
            let bytes = try DpkgPaths.readBounded(path, limit: 1 << 20)
            result.append((path, String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "\r\n", with: "\n")))
        }
        return result
    }
}
