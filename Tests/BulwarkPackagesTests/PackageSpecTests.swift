import BulwarkCore
@testable import BulwarkPackages
import BulwarkTestSupport
import Foundation
import Testing

@Suite struct PackageSpecTests {
    func load(_ spec: String) throws -> DesiredState {
        try DesiredStateLoader(registry: packageRegistry).load([
            SourceFile(path: "controllers/c.yaml", contents: Array("""
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: sandbox}
                spec: {adapter: host, root: /nonexistent}
                ---
                apiVersion: bulwark/v1
                kind: Controller
                metadata: {name: packages}
                spec: {kinds: [DebianPackage]}
                """.utf8)),
            SourceFile(path: "desired-state/r.yaml", contents: Array(package("p", spec).utf8)),
        ], revision: "test")
    }

    @Test func aSpecBecomesStateVersionAndRestart() throws {
        let resource = try #require(try load("name: openssh-server, minVersion: \"1:9.2p1-2+deb12u3\", restart: ssh").resources.values.first)
        #expect(resource.spec.subject == "package:openssh-server")
        #expect(resource.spec.properties == [DesiredProperty("state", "present"), DesiredProperty("version", ">= 1:9.2p1-2+deb12u3"),
                                             DesiredProperty("restart", "ssh")])
        let absent = try #require(try load("name: telnetd, state: absent").resources.values.first)
        #expect(absent.spec.properties == [DesiredProperty("state", "absent")])
    }

    @Test func badSpecsAreRefusedNamingTheField() {
        let cases: [(String, String)] = [
            ("name: Bad_Name", "expected a Debian package name"),
            ("name: x; rm -rf", "expected a Debian package name"),
            ("name: telnetd, state: absent, minVersion: \"1.0\"", "minVersion needs state: present"),
            ("name: dummy, minVersion: \"a1.0\"", "does not start with a digit"),
            ("name: dummy, minVersion: \"1.0 -1\"", "embedded spaces"),
            ("name: dummy, state: purged", "purged"),
            ("name: dummy, restart: \"ssh; reboot\"", "expected a service name"),
            ("name: dummy, version: \"1.0\"", "version"),
        ]
        for (spec, message) in cases {
            #expect { _ = try load(spec) } throws: { "\($0)".contains(message) }
        }
    }

    @Test func loweringTheMinimumOrBringingBackARemovedPackageWeakens() {
        #expect(DebianPackageDriver.weakens("version", ">= 1.1", ">= 1.0") == "lowers the minimum version")
        #expect(DebianPackageDriver.weakens("version", ">= 1.1", ">= 1.1~rc1") != nil)
        #expect(DebianPackageDriver.weakens("version", ">= 1.1", ">= 1:0.1") == nil)
        #expect(DebianPackageDriver.weakens("state", "absent", "present") != nil)
        #expect(DebianPackageDriver.weakens("state", "present", "absent") == nil)
    }

    @Test func aptIsConfinedToTheRootByItsConfiguration() throws {
        let apt = try Apt(root: "/srv/images/web1/")
        #expect(apt.root == "/srv/images/web1" && apt.sandboxed)
        let configuration = apt.configuration
        for line in ["Dir \"/srv/images/web1/\";", "Dir::Etc::parts \"/dev/null\";", "Dir::Etc::main \"/dev/null\";",
                     "Dir::State::status \"/srv/images/web1/var/lib/dpkg/status\";", "\"--root=/srv/images/web1\";",
                     "APT::Sandbox::User \"root\";", "Acquire::Languages \"none\";"] {
            #expect(configuration.contains(line), "\(line)")
        }
        #expect(try !Apt(root: "/").sandboxed)
        // A root apt's configuration cannot carry is refused rather than quoted wrongly.
        #expect(throws: PackagesError.self) { _ = try Apt(root: "/srv/a\";Dir \"/") }
        #expect(throws: PackagesError.self) { _ = try Apt(root: "/srv/../etc") }
    }

    @Test func aptOutputIsRead() throws {
        let policy = Apt.parsePolicy("""
            dummy:
              Installed: 1.0
              Candidate: 1.1
              Version table:
                 1.1 500
                    500 file:/tmp/repo ./ Packages
                    100 http://deb.debian.org/debian bookworm/main amd64 Packages
             *** 1.0 100
                    100 /tmp/root/var/lib/dpkg/status
            """)
        #expect(policy.candidate?.text == "1.1")
        #expect(policy.available.map(\.version.text) == ["1.1", "1.0"])
        #expect(policy.sources(of: try DebianVersion("1.1")) == ["file:/tmp/repo ./ Packages", "http://deb.debian.org/debian bookworm/main amd64 Packages"])
        #expect(policy.available.map(\.priority) == [500, 100])
        #expect(policy.choice(minimum: try DebianVersion("1.1")) == .install(try DebianVersion("1.1")))
        // A version only a source pinned to -1 offers is never chosen, whatever the minimum.
        let pinned = Apt.parsePolicy("""
            dummy:
              Installed: 1.0
              Candidate: 1.0
              Version table:
                 1.1 -1
                    -1 file:/tmp/thirdparty ./ Packages
             *** 1.0 500
                    500 file:/tmp/repo ./ Packages
                    100 /tmp/root/var/lib/dpkg/status
            """)
        #expect(pinned.available.map(\.priority) == [-1, 500])
        #expect(pinned.choice(minimum: try DebianVersion("1.1")) == .pinnedOut(try DebianVersion("1.1"), priority: -1))
        #expect(pinned.choice(minimum: try DebianVersion("1.0")) == .install(try DebianVersion("1.0")))
        let simulation = Apt.parseSimulation("Remv games [1.0]\nInst dummy [1.0] (1.1 localhost [all])\nInst new (2.0 repo [all])\nConf dummy (1.1 repo [all])\n")
        #expect(simulation.removes == ["games"])
        #expect(simulation.installs.map { "\($0.name) \($0.from ?? "-") \($0.to)" } == ["dummy 1.0 1.1", "new - 2.0"])
        #expect(Apt.fetched("Get:1 file:/tmp/repo ./ dummy 1.1 [768 B]\nHit:2 x\n") == ["file:/tmp/repo ./ dummy 1.1"])
    }
}

@Suite struct PackageRedactionTests {
    @Test func aSourceURLsCredentialsNeverReachAMessage() {
        let error = PackagesError("Failed to fetch https://deploy:s3cr3t@mirror.example.org/debian/dists/x", subject: "apt-get")
        #expect(!error.description.contains("s3cr3t"))
        #expect(error.description.contains("https://deploy:<redacted>@mirror.example.org/debian"))
    }
}
