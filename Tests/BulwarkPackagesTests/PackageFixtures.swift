import BulwarkCore
@testable import BulwarkPackages
import BulwarkTestSupport
import Foundation
import Testing

/// A dummy package built in the test with `dpkg-deb`.
struct DummyPackage {
    var name: String
    var version: String
    /// The `Source` field (`openssh (1:9.2p1-2)`); none: built from a source of its own name.
    var source: String?
    var essential = false
    var priority: String?
    var depends: String?
    var provides: String?
    /// A shell script run as postinst (chrooted into the target root by dpkg).
    var postinst: String?
    /// Ships `etc/init.d/NAME`, which appends a line to `var/tmp/NAME.restarts` when run.
    var service = false
}

/// A sandbox host for apt: a target root with a minimal dpkg database, apt's folders, a shell for
/// maintainer scripts, and a flat apt repository on disk that is the root's only source.
///
/// Maintainer scripts run chrooted into the root (dpkg `--root`), so the root carries `/bin/sh`
/// (the host's dash and the libraries it links, copied): a package's script then runs against
/// the sandbox and never against the machine, which `--force-script-chrootless` would allow.
struct AptSandbox {
    let base: String
    var root: String { base + "/root" }
    var repository: String { base + "/repo" }

    static let tools = ["/usr/bin/dpkg", "/usr/bin/dpkg-deb", "/usr/bin/dpkg-scanpackages", "/usr/bin/apt-get", "/usr/bin/apt-cache",
                        "/usr/sbin/chroot"]

    init(_ base: String) throws {
        self.base = base
        for tool in Self.tools {
            try #require(FileManager.default.isExecutableFile(atPath: tool), "\(tool) is missing: run scripts/setup (dpkg-dev, apt)")
        }
        for folder in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/lib/dpkg/alternatives",
                       "var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/log/apt", "var/tmp",
                       "etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d", "etc/apt/trusted.gpg.d", "tmp", "run"] {
            try FileManager.default.createDirectory(atPath: root + "/" + folder, withIntermediateDirectories: true)
        }
        try write(root + "/var/lib/dpkg/status", "")
        try write(root + "/var/lib/dpkg/available", "")
        try FileManager.default.createDirectory(atPath: repository, withIntermediateDirectories: true)
        try write(root + "/etc/apt/sources.list", "deb [trusted=yes] file:\(repository) ./\n")
        try installShell()
    }

    /// `/bin/sh` in the root: dash and the libraries `ldd` says it needs.
    func installShell() throws {
        let dash = "/usr/bin/dash"
        let ldd = try run("/usr/bin/ldd", [dash])
        try #require(ldd.status == 0, "ldd \(dash): \(ldd.stderr)")
        var files = [(dash, "/bin/sh")]
        for line in ldd.stdout.split(separator: "\n") {
            for word in line.split(whereSeparator: { $0 == " " || $0 == "\t" }) where word.hasPrefix("/") {
                files.append((String(word), String(word)))
            }
        }
        for (from, to) in files {
            let destination = root + to
            try FileManager.default.createDirectory(atPath: (destination as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            if !FileManager.default.fileExists(atPath: destination) {
                // Copied by a child process, never through a descriptor of this one: another test's
                // fork would inherit that descriptor open for writing, and running the copy would
                // fail with "Text file busy" until that child exits.
                let copied = try run("/bin/cp", ["-L", from, destination])
                try #require(copied.status == 0, "cp \(from): \(copied.stderr)")
            }
        }
        // The shell runs in the root as dpkg will run maintainer scripts there: a missing library
        // would make every postinst fail, and a test of a failing postinst pass for the wrong reason.
        let probe = try run("/usr/sbin/chroot", [root, "/bin/sh", "-c", "echo ok"])
        try #require(probe.status == 0 && probe.stdout == "ok\n", "/bin/sh in the sandbox root: \(probe.stderr)")
    }

    /// Builds a package with dpkg-deb; returns the .deb's path.
    @discardableResult
    func build(_ package: DummyPackage, into folder: String? = nil) throws -> String {
        let tree = base + "/build/\(package.name)-\(package.version)"
        try FileManager.default.createDirectory(atPath: tree + "/DEBIAN", withIntermediateDirectories: true)
        var control = "Package: \(package.name)\nVersion: \(package.version)\nArchitecture: all\nMaintainer: Test <test@example.org>\n"
        if let source = package.source { control += "Source: \(source)\n" }
        if package.essential { control += "Essential: yes\n" }
        if let priority = package.priority { control += "Priority: \(priority)\n" }
        if let depends = package.depends { control += "Depends: \(depends)\n" }
        if let provides = package.provides { control += "Provides: \(provides)\n" }
        control += "Description: a dummy package for Bulwark's tests\n"
        try write(tree + "/DEBIAN/control", control)
        try write(tree + "/usr/share/doc/\(package.name)/version", package.version + "\n")
        if let postinst = package.postinst { try write(tree + "/DEBIAN/postinst", "#!/bin/sh\n" + postinst + "\n", mode: 0o755) }
        if package.service {
            try write(tree + "/etc/init.d/\(package.name)", "#!/bin/sh\necho \"$1 \(package.version)\" >> /var/tmp/\(package.name).restarts\n", mode: 0o755)
        }
        let output = (folder ?? repository) + "/\(package.name)_\(package.version)_all.deb"
        let result = try run("/usr/bin/dpkg-deb", ["--root-owner-group", "-b", tree, output])
        try #require(result.status == 0, "dpkg-deb: \(result.stderr)")
        return output
    }

    /// Writes the repository's index (`Packages`, `Packages.gz`) with dpkg-scanpackages.
    func publish() throws {
        let result = try run("/usr/bin/dpkg-scanpackages", ["-m", "."], in: repository)
        try #require(result.status == 0, "dpkg-scanpackages: \(result.stderr)")
        try write(repository + "/Packages", result.stdout)
        try? FileManager.default.removeItem(atPath: repository + "/Packages.gz")
        let gzip = try run("/bin/gzip", ["-k", "-n", repository + "/Packages"])
        try #require(gzip.status == 0, "gzip: \(gzip.stderr)")
    }

    /// Installs a package straight into the root with dpkg (the state a test starts from).
    func preinstall(_ package: DummyPackage) throws {
        let deb = try build(package, into: base + "/build")
        let result = try run("/usr/bin/dpkg", ["--root=" + root, "-i", deb])
        try #require(result.status == 0, "dpkg -i: \(result.stdout) \(result.stderr)")
    }

    /// The root's dpkg database as parsed, and as bytes.
    func status() throws -> DpkgStatus { try DpkgStatus.read(root: root) }
    func statusBytes() throws -> Data { try Data(contentsOf: URL(fileURLWithPath: root + "/var/lib/dpkg/status")) }

    func state(_ manifests: String, extra: [SourceFile] = []) throws -> DesiredState {
        let inventory = """
            apiVersion: bulwark/v1
            kind: Target
            metadata: {name: sandbox}
            spec: {adapter: host, root: \(root)}
            ---
            apiVersion: bulwark/v1
            kind: Controller
            metadata: {name: packages}
            spec: {kinds: [DebianPackage]}
            """
        return try DesiredStateLoader(registry: packageRegistry).load([
            SourceFile(path: "controllers/c.yaml", contents: Array(inventory.utf8)),
            SourceFile(path: "desired-state/r.yaml", contents: Array(manifests.utf8)),
        ] + extra, revision: "test")
    }
}

/// A host target's settings as the host adapter types them (`HostTargetSettings`, which this
/// module cannot import: adapters do not import each other): a `TargetRoot` read by the core.
struct SandboxHostSettings: RootedTargetSettings {
    var root: TargetRoot
    var strings: [String: String] { ["root": root.path] }

    @Sendable static func parse(_ spec: SpecReader) -> SandboxHostSettings? {
        spec.allowOnly(["adapter", "root"])
        return TargetRoot.read(spec, meaning: "the folder that stands for /; / for the machine itself").map(SandboxHostSettings.init)
    }
}

/// The host adapter's target settings with the package kind only (the real registry adds it to
/// the host adapter the same way).
let packageRegistry = Registry([AdapterDefinition(name: "host", settings: SandboxHostSettings.parse, kinds: PackagesAdapter.kinds())])

func package(_ name: String, _ spec: String) -> String {
    "---\napiVersion: bulwark/v1\nkind: DebianPackage\nmetadata: {name: \(name)}\nspec: {\(spec)}\n"
}

/// The machine's own dpkg database and apt state, to show a run left them byte-identical.
struct MachineFingerprint: Equatable {
    var status: Data
    var lists: [String]
    var archives: [String]

    static func take() throws -> MachineFingerprint {
        MachineFingerprint(
            status: try Data(contentsOf: URL(fileURLWithPath: "/var/lib/dpkg/status")),
            lists: ((try? FileManager.default.contentsOfDirectory(atPath: "/var/lib/apt/lists")) ?? []).sorted(),
            archives: ((try? FileManager.default.contentsOfDirectory(atPath: "/var/cache/apt/archives")) ?? []).sorted())
    }
}

/// Plans and applies once with a recording sink.
func reconcile(_ state: DesiredState, sink: RecordingSink = RecordingSink()) async throws -> (Plan, CycleOutcome) {
    let reconciler = Reconciler(registry: packageRegistry)
    let plan = try await reconciler.plan(state)
    return (plan, await reconciler.apply(plan, state: state, audit: sink))
}
