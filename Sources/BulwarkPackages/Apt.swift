internal import Foundation
internal import BulwarkCore

/// apt and dpkg for one target root, and only for it.
///
/// For the machine itself (`/`) apt runs as an administrator would run it, with the machine's
/// own configuration. For any other root (a chroot, a mounted image, a test's tree) apt is
/// confined to that root by a configuration file Bulwark writes and names in `APT_CONFIG`, read
/// *instead of* the host's `/etc/apt/apt.conf.d` (`Dir::Etc::parts` and `Dir::Etc::main` are
/// `/dev/null`):
/// - `Dir` is the root: apt's state (`var/lib/apt/lists`), cache (`var/cache/apt/archives`),
///   logs, sources (`etc/apt/sources.list`, `sources.list.d`), preferences and trusted keys are
///   the root's, and `Dir::State::status` is the root's dpkg database;
/// - dpkg gets `--root=ROOT` (its database and every file it unpacks are under the root, and
///   maintainer scripts run chrooted into it: a package's script never runs against the host);
/// - the root's own `apt.conf.d` is not read either: its hooks (`DPkg::Pre-Invoke`,
///   `APT::Update::Post-Invoke`) would run on the host, as root, outside any chroot;
/// - downloads run as root (`APT::Sandbox::User`: the `_apt` user cannot write the root's
///   folders), without translations, without retries, with no recommends, never prompting.
struct Apt: Sendable {
    /// The target's root, without a trailing slash (`/` for the machine).
    let root: String

    static let aptGet = "/usr/bin/apt-get"
    static let aptCache = "/usr/bin/apt-cache"

    init(root: String) throws(PackagesError) {
        let trimmed = PathText.trimmingTrailingSlashes(root)
        guard PathText.isAbsolute(trimmed), !PathText.climbs(trimmed) else {
            throw PackagesError("target root must be an absolute path without '..'", subject: root)
        }
        // The root is written into apt's configuration between double quotes.
        guard !trimmed.unicodeScalars.contains(where: { $0 == "\"" || $0 == "\\" || $0 == "{" || $0 == "}" || $0 == ";"
                                                      || $0.properties.generalCategory == .control }) else {
            throw PackagesError("target root contains a character apt's configuration cannot carry", subject: root)
        }
        self.root = trimmed
    }

    var sandboxed: Bool { root != "/" }

    /// The folders apt and dpkg write under a root, and where packages unpack.
    static let writtenFolders = ["etc/apt", "var/lib/dpkg", "var/lib/apt/lists", "var/cache/apt/archives", "var/log/apt",
                                 "usr", "bin", "sbin", "lib", "lib64", "opt", "boot", "tmp", "var/tmp", "run"]

    /// Refuses a root where apt or dpkg would write outside it: dpkg and apt run on the host and
    /// follow links, so a component of a folder they write that is a link to an absolute path or
    /// one with `..` (`var/lib/dpkg -> /var/lib/dpkg`) would make them act on the host. Links that
    /// stay inside the root (`bin -> usr/bin`, as merged-/usr systems have) are followed.
    func checkLayout() throws(PackagesError) {
        guard sandboxed else { return }
        for folder in Self.writtenFolders {
            var path = root
            // Names and links read by bytes, as dpkg and the kernel read them (`PathText`).
            var components = PathText.components(folder)[...]
            var hops = 0
            while let component = components.popFirst() {
                path += "/" + component
                var info = stat()
                guard lstat(path, &info) == 0 else { break }  // a folder a package may create
                guard info.st_mode & S_IFMT == S_IFLNK else { continue }
                var buffer = [CChar](repeating: 0, count: 4096)
                let count = readlink(path, &buffer, buffer.count - 1)
                guard count > 0 else { throw PackagesError("cannot read the link", subject: path) }
                // Decoding would replace bytes that are not UTF-8, and the name checked would not be
                // the one dpkg follows: such a link is refused.
                guard let target = String(validating: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) else {
                    throw PackagesError("is a link to a name that is not UTF-8; refusing to run apt and dpkg", subject: path)
                }
                hops += 1
                guard !PathText.isAbsolute(target), !PathText.climbs(target), hops <= 8 else {
                    throw PackagesError("is a link to '\(target)', which apt and dpkg would follow out of the target root; "
                                        + "refusing to run them", subject: path)
                }
                // Continue from where the link points, inside the same parent folder.
                path = String(Substring(path.utf8[..<(path.utf8.lastIndex(of: UInt8(ascii: "/")) ?? path.utf8.endIndex)]))
                components = (PathText.components(target) + components)[...]
            }
        }
    }

    /// The configuration that confines apt to the root (see the type's comment).
    var configuration: String {
        let r = root
        return """
        Dir "\(r)/";
        Dir::Etc::parts "/dev/null";
        Dir::Etc::main "/dev/null";
        Dir::State::status "\(r)/var/lib/dpkg/status";
        Dir::Bin::dpkg "/usr/bin/dpkg";
        Dir::Bin::methods "/usr/lib/apt/methods";
        APT::Sandbox::User "root";
        Acquire::Languages "none";
        Acquire::Retries "0";
        Acquire::http::Timeout "30";
        APT::Install-Recommends "false";
        APT::Install-Suggests "false";
        APT::Get::AutomaticRemove "false";
        DPkg::Options { "--root=\(r)"; "--force-confdef"; "--force-confold"; };
        DPkg::Use-Pty "false";
        DPkg::Lock::Timeout "30";

        """
    }

    /// Runs `program` with the root's apt environment.
    func run(_ program: String, _ arguments: [String], timeout: Duration) async throws(PackagesError) -> ProcessRunner.Result {
        var environment = [
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive",
            "DEBCONF_NONINTERACTIVE_SEEN": "true", "APT_LISTCHANGES_FRONTEND": "none", "HOME": "/root",
        ]
        guard sandboxed else {
            return try await ProcessRunner(environment: environment).run(program, arguments, timeout: timeout)
        }
        let folder = NSTemporaryDirectory() + "bulwark-apt-\(UUID().uuidString)"
        guard mkdir(folder, 0o700) == 0 else {
            throw PackagesError("cannot create a folder for apt's configuration: \(Shortage.errnoText())")
        }
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let file = folder + "/apt.conf"
        let fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw PackagesError("cannot write apt's configuration: \(Shortage.errnoText())", subject: file) }
        let written = Descriptor.writeAll(fd, Array(configuration.utf8))
        let why = written ? "" : Shortage.errnoText()
        close(fd)
        guard written else { throw PackagesError("cannot write apt's configuration: \(why)", subject: file) }
        environment["APT_CONFIG"] = file
        return try await ProcessRunner(environment: environment).run(program, arguments, timeout: timeout)
    }

    /// A failure of `program`, with the lines of its output that say why.
    static func failure(_ program: String, _ arguments: [String], _ result: ProcessRunner.Result) -> PackagesError {
        let reason = result.timedOut ? "did not finish in time and was stopped" : "exited with status \(result.status)"
        let said = result.output.split(separator: "\n")
            .filter { $0.hasPrefix("E:") || $0.hasPrefix("W:") || $0.hasPrefix("Err:") || $0.hasPrefix("dpkg") || $0.hasPrefix(" ") }
            .suffix(12).joined(separator: "\n")
        return PackagesError("\(arguments.joined(separator: " ")) \(reason)" + (said.isEmpty ? "" : ": " + said),
                             subject: (program as NSString).lastPathComponent)
    }

    // MARK: - Commands

    /// `apt-get update`: the root's package lists from the root's sources. A source that cannot
    /// be read fails it (apt itself only warns and goes on with old lists).
    func update() async throws(PackagesError) {
        let arguments = ["-q", "update"]
        let result = try await run(Self.aptGet, arguments, timeout: .seconds(300))
        let lines = result.output.split(separator: "\n")
        guard result.status == 0, !result.timedOut,
              // `Err:` alone is not a failure: apt tries each compression of an index in turn.
              !lines.contains(where: { $0.hasPrefix("E:") || $0.hasPrefix("W: Failed to fetch") || $0.hasPrefix("W: Some index files") }) else {
            throw Self.failure(Self.aptGet, arguments, result)
        }
    }

    /// What `apt-cache policy NAME` says: the candidate and every available version with its
    /// priority (what the root's apt preferences make of it: the highest of its pins and
    /// sources) and the sources it comes from.
    struct Policy: Sendable {
        var candidate: DebianVersion?
        var available: [(version: DebianVersion, priority: Int, sources: [String])] = []

        func sources(of version: DebianVersion) -> [String] { available.first { $0.version == version }?.sources ?? [] }

        /// What to install for `minimum` (nil: any version).
        enum Choice: Sendable, Equatable {
            /// Apt's candidate when it satisfies the minimum, else the newest version that does.
            case install(DebianVersion)
            /// Versions satisfy the minimum, but only ones the preferences forbid: priority ≤ 0.
            case pinnedOut(DebianVersion, priority: Int)
            /// No version satisfies it.
            case none
        }

        /// The version to install: only one whose priority is above 0. apt_preferences(5): a
        /// negative priority means "never install this version", and 0 is undefined; apt still
        /// installs such a version when it is asked for by number (`name=1.1`), which is how
        /// Bulwark asks, so the choice is made here: a source the operator pinned to -1 (an
        /// untrusted third-party repository kept only for one package) is never installed from.
        func choice(minimum: DebianVersion?) -> Choice {
            let satisfying = available.filter { entry in minimum.map { entry.version >= $0 } ?? true }
            let allowed = satisfying.filter { $0.priority > 0 }
            if let candidate, allowed.contains(where: { $0.version == candidate }) { return .install(candidate) }
            if let newest = allowed.max(by: { $0.version < $1.version }) { return .install(newest.version) }
            if let refused = satisfying.max(by: { $0.version < $1.version }) { return .pinnedOut(refused.version, priority: refused.priority) }
            return .none
        }
    }

    func policy(_ name: String) async throws(PackagesError) -> Policy {
        let arguments = ["policy", "--", name]
        let result = try await run(Self.aptCache, arguments, timeout: .seconds(120))
        guard result.status == 0, !result.timedOut else { throw Self.failure(Self.aptCache, arguments, result) }
        return Self.parsePolicy(result.output)
    }

    /// The source packages the versions of `name` in the root's package lists are built from
    /// (`apt-cache show`: each stanza's `Source`, without its version, else its own name). Empty
    /// when the lists hold no such package, or only a virtual one.
    func sourcePackages(of name: String) async throws(PackagesError) -> Set<String> {
        let arguments = ["show", "--", name]
        let result = try await run(Self.aptCache, arguments, timeout: .seconds(120))
        if result.status == 100, !result.timedOut, result.output.contains("E: No packages found") { return [] }
        guard result.status == 0, !result.timedOut else { throw Self.failure(Self.aptCache, arguments, result) }
        return Self.parseSourcePackages(result.output)
    }

    static func parseSourcePackages(_ text: String) -> Set<String> {
        var sources: Set<String> = []
        for stanza in text.replacingOccurrences(of: "\r\n", with: "\n").components(separatedBy: "\n\n") {
            var package: String?
            var source: String?
            for line in stanza.split(separator: "\n") {
                if line.hasPrefix("Package:") { package = line.dropFirst(8).trimmingCharacters(in: .whitespaces) }
                if line.hasPrefix("Source:") {
                    source = line.dropFirst(7).split(separator: " ").first.map(String.init)
                }
            }
            if let name = source ?? package, !name.isEmpty { sources.insert(name) }
        }
        return sources
    }

    static func parsePolicy(_ text: String) -> Policy {
        var policy = Policy()
        var inTable = false
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("Candidate:") {
                policy.candidate = try? DebianVersion(String(line.dropFirst("Candidate:".count)))
            } else if line == "Version table:" {
                inTable = true
            } else if inTable {
                let words = line.split(separator: " ").map(String.init)
                // `*** 1.0 100` or `1.1 500`: a version; `500 file:/repo ./ Packages`: a source of it.
                let versionWords = words.first == "***" ? Array(words.dropFirst()) : words
                let leading = raw.prefix { $0 == " " }.count
                if leading <= 5, versionWords.count == 2, let priority = Int(versionWords[1]),
                   let version = try? DebianVersion(versionWords[0]) {
                    policy.available.append((version, priority, []))
                } else if words.count >= 2, Int(words[0]) != nil, !policy.available.isEmpty {
                    let source = words.dropFirst().joined(separator: " ")
                    policy.available[policy.available.count - 1].sources.append(source)
                }
            }
        }
        return policy
    }

    /// What apt would do, from `apt-get -s`: packages it would remove and install (with versions).
    struct Simulation: Sendable {
        var removes: [String] = []
        var installs: [(name: String, from: String?, to: String)] = []
    }

    func simulate(_ arguments: [String]) async throws(PackagesError) -> Simulation {
        let full = ["-s", "-q", "-y"] + arguments
        let result = try await run(Self.aptGet, full, timeout: .seconds(120))
        guard result.status == 0, !result.timedOut else { throw Self.failure(Self.aptGet, full, result) }
        return Self.parseSimulation(result.output)
    }

    /// `Remv name [1.0]`, `Inst name [1.0] (1.1 repo [all])`, `Inst name (1.1 repo [all])`.
    static func parseSimulation(_ text: String) -> Simulation {
        var simulation = Simulation()
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            guard words.count >= 2 else { continue }
            if words[0] == "Remv" {
                simulation.removes.append(words[1])
            } else if words[0] == "Inst" {
                var from: String?
                var rest = words.dropFirst(2)
                if let first = rest.first, first.hasPrefix("[") {
                    from = String(first.dropFirst().dropLast())
                    rest = rest.dropFirst()
                }
                guard let open = rest.first, open.hasPrefix("(") else { continue }
                simulation.installs.append((words[1], from, String(open.dropFirst())))
            }
        }
        return simulation
    }

    /// Installs or upgrades `specs` (`name` or `name=version`); apt may remove nothing.
    /// Returns where each package came from (`Get:` lines: `file:/repo ./ name 1.1`).
    func install(_ specs: [String], onlyUpgrade: Bool) async throws(PackagesError) -> [String] {
        let arguments = ["-q", "-y", "--no-remove", "--no-install-recommends"] + (onlyUpgrade ? ["--only-upgrade"] : [])
            + ["install", "--"] + specs
        let result = try await run(Self.aptGet, arguments, timeout: .seconds(900))
        guard result.status == 0, !result.timedOut else { throw Self.failure(Self.aptGet, arguments, result) }
        return Self.fetched(result.output)
    }

    /// Removes one package (its configuration files stay, as `apt-get remove` leaves them).
    func remove(_ name: String) async throws(PackagesError) {
        let arguments = ["-q", "-y", "remove", "--", name]
        let result = try await run(Self.aptGet, arguments, timeout: .seconds(900))
        guard result.status == 0, !result.timedOut else { throw Self.failure(Self.aptGet, arguments, result) }
    }

    /// apt's `Get:1 file:/repo ./ dummy 1.1 [768 B]` lines, as `file:/repo ./ dummy 1.1`.
    static func fetched(_ text: String) -> [String] {
        text.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("Get:"), let space = line.firstIndex(of: " ") else { return nil }
            var rest = line[line.index(after: space)...]
            if let size = rest.lastIndex(of: "["), rest.hasSuffix("]") { rest = rest[..<size] }
            return rest.trimmingCharacters(in: .whitespaces)
        }
    }
}
