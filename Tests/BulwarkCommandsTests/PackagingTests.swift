import BulwarkTestSupport
import Foundation
import Testing

/// The systemd unit and the .deb, checked with the real tools: systemd-analyze, dpkg-deb,
/// and dpkg installing into (and purging from) a temporary root.
@Suite(.serialized)
struct PackagingTests {
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let unit = repositoryRoot + "/packaging/systemd/bulwark.service"

    /// The unit with ExecStart pointing at the built binary (verify checks that it exists).
    func unitCopy(in dir: String, editing: (String) -> String = { $0 }) throws -> String {
        let text = try read(Self.unit).replacingOccurrences(of: "/usr/bin/bulwark", with: try bulwarkExecutable())
        let path = dir + "/bulwark.service"
        try editing(text).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func verify(_ path: String) throws -> ProcessOutput {
        try run("/usr/bin/systemd-analyze", ["verify", "--man=no", path])
    }

    @Test func theUnitPassesSystemdAnalyzeVerifyWithoutAWarning() async throws {
        try await withTemporaryDirectory { dir in
            let result = try verify(try unitCopy(in: dir))
            #expect(result.status == 0 && result.stdout.isEmpty && result.stderr.isEmpty, "\(result)")
        }
    }

    @Test func aMistakeInTheUnitIsCaughtByTheSameCheck() async throws {
        // systemd-analyze exits 0 on a setting it ignores: the check above reads its output too.
        try await withTemporaryDirectory { dir in
            let result = try verify(try unitCopy(in: dir) { $0.replacingOccurrences(of: "Type=notify", with: "Type=notfy") })
            #expect(result.stderr.contains("Failed to parse service type"), "\(result)")
        }
    }

    @Test func theUnitIsHardenedAsSystemdJudgesIt() async throws {
        try await withTemporaryDirectory { dir in
            let path = try unitCopy(in: dir)
            let review = try run("/usr/bin/systemd-analyze", ["security", "--offline=yes", "--no-pager", path])
            let line = try #require(review.stdout.split(separator: "\n").first { $0.contains("Overall exposure level") }, "\(review)")
            let score = try #require(line.split(separator: " ").compactMap { Double($0) }.first, "\(line)")
            // 0 is the most restricted, 10 none at all; "OK" ends below 4.
            #expect(score <= 3.5, "\(line)")
            let text = try read(Self.unit)
            for setting in ["Type=notify", "WatchdogSec=", "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=",
                            "StateDirectory=bulwark", "LoadCredential=", "ReadWritePaths="] {
                #expect(text.contains("\n" + setting), "\(setting)")
            }
            // Every capability the unit keeps is one a fix needs, and none of the dangerous rest.
            let capabilities = text.split(separator: "\n").first { $0.hasPrefix("CapabilityBoundingSet=") }?
                .dropFirst("CapabilityBoundingSet=".count).split(separator: " ").map(String.init) ?? []
            #expect(Set(capabilities).isSubset(of: ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
                                                    "CAP_NET_ADMIN", "CAP_SYS_ADMIN"]), "\(capabilities)")
            #expect(!capabilities.contains("CAP_SYS_MODULE") && !capabilities.contains("CAP_SETUID") && !capabilities.isEmpty)
        }
    }

    func buildDeb(into dir: String) throws -> String {
        let bin = try bulwarkExecutable()
        let manual = URL(fileURLWithPath: bin).deletingLastPathComponent().appendingPathComponent("generate-manual").path
        try #require(FileManager.default.isExecutableFile(atPath: manual),
                     "swift-argument-parser's generate-manual is not built beside \(bin): make build builds it (swift build --product generate-manual)")
        let built = try run(Self.repositoryRoot + "/scripts/build-deb",
                            ["--bin", bin, "--manual-tool", manual, "--out", dir, "--allow-unpackaged-libraries", "--compression", "none"])
        try #require(built.status == 0, "\(built)")
        return built.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func theDebCarriesTheBinaryUnitDefaultsManPagesAndCompletions() async throws {
        try await withTemporaryDirectory { dir in
            let deb = try buildDeb(into: dir)
            let info = try run("/usr/bin/dpkg-deb", ["--field", deb, "Package", "Version", "Depends"])
            #expect(info.stdout.contains("Package: bulwark"), "\(info)")
            #expect(info.stdout.contains("libgit2-1.5"), "libgit2 comes from Debian: \(info)")
            let contents = try run("/usr/bin/dpkg-deb", ["--contents", deb]).stdout
            let entries = Dictionary(contents.split(separator: "\n").compactMap { line -> (String, String)? in
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count >= 6 else { return nil }
                return (String(fields[5]), String(fields[0]) + " " + String(fields[1]))
            }, uniquingKeysWith: { $1 })
            #expect(entries["./usr/bin/bulwark"] == "-rwxr-xr-x root/root")
            #expect(entries["./lib/systemd/system/bulwark.service"] == "-rw-r--r-- root/root")
            #expect(entries["./etc/default/bulwark"] == "-rw-r--r-- root/root")
            #expect(entries["./etc/bulwark/credentials/"] == "drwx------ root/root", "secrets: root only")
            for page in ["bulwark.1.gz", "bulwark.run.1.gz", "bulwark.apply.1.gz", "bulwark.verify-audit.1.gz"] {
                #expect(entries["./usr/share/man/man1/" + page] != nil, "\(page)")
            }
            #expect(entries["./usr/share/bash-completion/completions/bulwark"] != nil)
            #expect(entries["./usr/share/zsh/vendor-completions/_bulwark"] != nil)
            #expect(entries["./usr/share/fish/vendor_completions.d/bulwark.fish"] != nil)
            let conffiles = try run("/usr/bin/dpkg-deb", ["--info", deb, "conffiles"]).stdout
            #expect(conffiles.contains("/etc/default/bulwark"))

            // The man page says what --help says.
            try run("/usr/bin/dpkg-deb", ["-x", deb, dir + "/x"])
            let page = try run("/bin/sh", ["-c", "zcat '\(dir)/x/usr/share/man/man1/bulwark.run.1.gz'"]).stdout
            #expect(page.contains("WATCHDOG=1") && page.contains("log-format"), "\(page.prefix(400))")
            let bash = try run("/bin/bash", ["-n", dir + "/x/usr/share/bash-completion/completions/bulwark"])
            #expect(bash.status == 0, "\(bash)")
        }
    }

    @Test func dpkgInstallsAndPurgesThePackageInATemporaryRootOnly() async throws {
        try await withTemporaryDirectory { dir in
            let deb = try buildDeb(into: dir)
            let root = dir + "/root"
            for folder in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
                try FileManager.default.createDirectory(atPath: root + "/" + folder, withIntermediateDirectories: true)
            }
            for file in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
                _ = FileManager.default.createFile(atPath: root + "/" + file, contents: nil)
            }
            let realStatus = try Data(contentsOf: URL(fileURLWithPath: "/var/lib/dpkg/status"))
            let installed = try run("/usr/bin/dpkg", ["--root=" + root, "--force-script-chrootless", "--force-depends", "-i", deb])
            #expect(installed.status == 0, "\(installed)")
            #expect(FileManager.default.fileExists(atPath: root + "/etc/bulwark/credentials")
                    && modeAndOwnerMode(root + "/etc/bulwark/credentials") & 0o777 == 0o700)
            #expect(FileManager.default.isExecutableFile(atPath: root + "/usr/bin/bulwark"))
            let version = try run(root + "/usr/bin/bulwark", ["--version"])
            #expect(version.status == 0 && !version.stdout.isEmpty)
            // What the service leaves in its state directory goes with a purge, and only there.
            try FileManager.default.createDirectory(atPath: root + "/var/lib/bulwark/clone", withIntermediateDirectories: true)
            let purged = try run("/usr/bin/dpkg", ["--root=" + root, "--force-script-chrootless", "--purge", "bulwark"])
            #expect(purged.status == 0, "\(purged)")
            #expect(!FileManager.default.fileExists(atPath: root + "/usr/bin/bulwark"))
            #expect(!FileManager.default.fileExists(atPath: root + "/var/lib/bulwark"))
            #expect(!FileManager.default.fileExists(atPath: root + "/etc/default/bulwark"), "purge removes the conffile")
            // The machine's own package database was never touched.
            #expect(try Data(contentsOf: URL(fileURLWithPath: "/var/lib/dpkg/status")) == realStatus)
        }
    }
}
