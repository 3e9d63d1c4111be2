@testable import BulwarkPackages
import BulwarkTestSupport
import Foundation
import Testing

@Suite struct DpkgStatusTests {
    static let sample = """
        Package: openssh-server
        Status: install ok installed
        Priority: optional
        Architecture: amd64
        Version: 1:9.2p1-2+deb12u3
        Pre-Depends: init-system-helpers (>= 1.54~)
        Depends: libc6 (>= 2.36), libssl3 (>= 3.0.0) | libssl1.1, openssh-client (= 1:9.2p1-2+deb12u3), procps
        Description: secure shell (SSH) server
         This is the portable version of OpenSSH.
         .
         Status: install ok installed
        Conffiles:
         /etc/ssh/moduli 0123

        Package: base-files
        Essential: yes
        Status: hold ok installed
        Priority: required
        Version: 12.4+deb12u5

        Package: telnetd
        Status: deinstall ok config-files
        Version: 0.17+2.4-2

        Package: broken
        Status: install reinstreq half-configured
        Version: 1.0

        Package: libc6
        Status: install ok installed
        Architecture: amd64
        Version: 2.36-9
        Provides: libc6-dev-helper

        Package: libc6
        Status: install ok installed
        Architecture: i386
        Version: 2.35-1

        """

    @Test func entriesFieldsAndContinuationLinesAreRead() throws {
        let status = try DpkgStatus.parse(Array(Self.sample.utf8))
        let ssh = try #require(status.installed("openssh-server"))
        #expect(ssh.version?.text == "1:9.2p1-2+deb12u3")
        #expect(ssh.preDepends == [["init-system-helpers"]])
        #expect(ssh.depends == [["libc6"], ["libssl3", "libssl1.1"], ["openssh-client"], ["procps"]])
        // A description line that looks like a field is part of the description.
        #expect(status.entries("openssh-server").count == 1)
        let base = try #require(status.installed("base-files"))
        #expect(base.essential && base.priority == "required" && base.isHeld)
        #expect(status.installed("telnetd") == nil && status.entries("telnetd").first?.isAbsent == true)
        #expect(status.installed("broken") == nil && status.entries("broken").first?.isAbsent == false)
        // Two architectures: the older decides.
        #expect(status.installed("libc6")?.version?.text == "2.35-1")
        #expect(status.installed("libc6")?.provides == [])
        #expect(status.entries("libc6").first?.provides == ["libc6-dev-helper"])
    }

    @Test func hostileInputIsRefusedWithTheLine() {
        let cases: [(String, String)] = [
            (" continuation first\n", "line 1: a continuation line with no field above it"),
            ("Package: a1\nno colon here\n", "line 2: expected 'Field: value'"),
            ("Package: a1\nStatus: install ok installed\nStatus: purge ok installed\n", "line 3: field 'status' appears twice"),
            ("Package: a1\nStatus: installed\n", "'Status' is not 'want flag state'"),
            ("Package: ../../etc\nStatus: install ok installed\n", "missing or invalid 'Package'"),
            ("Status: install ok installed\n", "missing or invalid 'Package'"),
        ]
        for (text, message) in cases {
            #expect {
                _ = try DpkgStatus.parse(Array(text.utf8), file: "/status")
            } throws: { error in
                "\(error)".contains(message) && "\(error)".hasPrefix("/status: ")
            }
        }
        // One entry larger than the bound is refused, without reading the rest.
        let huge = "Package: a1\nStatus: install ok installed\nDescription: x\n" + String(repeating: " line\n", count: (4 << 20) / 6 + 10)
        #expect(throws: PackagesError.self) { _ = try DpkgStatus.parse(Array(huge.utf8)) }
    }

    /// The machine's own database, read (never written): every package dpkg-query lists as
    /// installed is installed here, at the same version.
    @Test func theMachinesDatabaseReadsAsDpkgQueryReadsIt() throws {
        let status = try DpkgStatus.read(root: "/")
        let listed = try run("/usr/bin/dpkg-query", ["-W", "-f", "${Package} ${Version} ${db:Status-Status}\n"])
        try #require(listed.status == 0, "\(listed.stderr)")
        var compared = 0
        for line in listed.stdout.split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            guard words.count == 3, words[2] == "installed" else { continue }
            let ours = status.entries(words[0]).filter(\.isInstalled).compactMap(\.version?.text)
            #expect(ours.contains(words[1]), "\(words[0]) \(words[1]) vs \(ours)")
            compared += 1
        }
        #expect(compared > 50)
    }

    @Test func mutatedDatabasesNeverTrapAndFailOnOneLine() async throws {
        let summary = await Fuzzer(target: "dpkg-status", ciIterations: 1500,
                                   dictionary: ["Package: ", "Status: ", "install ok installed", "\n\n", "\n ", ":", "Depends: ", "|", ","],
                                   maxSize: 16 << 10)
            .run(seeds: [Array(Self.sample.utf8)]) { input in
                do {
                    let status = try DpkgStatus.parse(input)
                    for entries in status.packages.values {
                        for entry in entries { try fuzzRequire(DpkgStatus.isPackageName(entry.name), "accepted name \(entry.name)") }
                    }
                    return "ok"
                } catch {
                    try fuzzRequire(!"\(error)".contains("\n"), "a message on more than one line")
                    return String("\(error)".split(separator: ":").dropFirst().first ?? "error")
                }
            }
        #expect(summary.failures == 0, "\(summary.messages)")
    }
}
