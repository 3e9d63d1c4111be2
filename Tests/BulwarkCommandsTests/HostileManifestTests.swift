@testable import BulwarkCommands
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// A manifest an attacker (or a tired operator) could push, and what `bulwark` must say about it.
struct HostileManifest: Sendable, CustomTestStringConvertible {
    var name: String
    /// The policy folder the file goes in.
    var folder: String
    var text: String
    /// Part of the one clear error the revision is refused with.
    var expect: String

    init(_ name: String, _ folder: String, _ text: String, expect: String) {
        self.name = name
        self.folder = folder
        self.text = text
        self.expect = expect
    }

    var testDescription: String { name }
    var path: String { folder + "/zz-hostile.yaml" }

    static let all: [HostileManifest] = [
        HostileManifest("account shell with a colon", "desired-state", "apiVersion: bulwark/v1\nkind: UserAccount\nmetadata: {name: h}\nspec: {name: guest, shell: \"/bin/sh:x\"}\n",
                        expect: "a shell in etc/passwd cannot contain ':' (the field separator)"),
        HostileManifest("account shell that is relative", "desired-state", "apiVersion: bulwark/v1\nkind: UserAccount\nmetadata: {name: h}\nspec: {name: guest, shell: bin/sh}\n",
                        expect: "spec.shell: expected an absolute path inside the target root"),
        HostileManifest("account shell with NUL", "desired-state", "apiVersion: bulwark/v1\nkind: UserAccount\nmetadata: {name: h}\nspec: {name: guest, shell: \"/bin/sh\\0x\"}\n",
                        expect: "spec.shell: expected an absolute path; the value contains the control or line-separator character U+0000"),
        HostileManifest("account shell with ESC", "desired-state", "apiVersion: bulwark/v1\nkind: UserAccount\nmetadata: {name: h}\nspec: {name: guest, shell: \"/bin/sh\\e[31m\"}\n",
                        expect: "U+001B"),
        HostileManifest("account shell with DEL", "desired-state", "apiVersion: bulwark/v1\nkind: UserAccount\nmetadata: {name: h}\nspec: {name: guest, shell: \"/bin/sh\\x7F\"}\n",
                        expect: "U+007F"),
        HostileManifest("account name with a colon", "desired-state", "apiVersion: bulwark/v1\nkind: UserAccount\nmetadata: {name: h}\nspec: {name: \"ev:il\", locked: true}\n",
                        expect: "spec.name: expected an account name such as guest, got 'ev:il'"),
        HostileManifest("account name that is a number", "desired-state", "apiVersion: bulwark/v1\nkind: UserAccount\nmetadata: {name: h}\nspec: {name: \"1000\", locked: true}\n",
                        expect: "spec.name: expected an account name such as guest, got '1000'"),
        HostileManifest("account name with a newline", "desired-state", "apiVersion: bulwark/v1\nkind: UserAccount\nmetadata: {name: h}\nspec: {name: \"guest\\nroot\", locked: true}\n",
                        expect: "spec.name: expected an account name such as guest, got 'guest\\nroot'"),
        HostileManifest("account expiry on 30 February", "desired-state", "apiVersion: bulwark/v1\nkind: UserAccount\nmetadata: {name: h}\nspec: {name: guest, expires: 2026-02-30}\n",
                        expect: "spec.expires: expected a date (YYYY-MM-DD) or never, got '2026-02-30'"),
        HostileManifest("account expiry in year 99999", "desired-state", "apiVersion: bulwark/v1\nkind: UserAccount\nmetadata: {name: h}\nspec: {name: guest, expires: 99999-01-01}\n",
                        expect: "spec.expires: expected a date (YYYY-MM-DD) or never, got '99999-01-01'"),
        HostileManifest("account locked that is not a boolean", "desired-state", "apiVersion: bulwark/v1\nkind: UserAccount\nmetadata: {name: h}\nspec: {name: guest, locked: \"yes please\"}\n",
                        expect: "spec.locked: expected true or false, got 'yes please'"),
        HostileManifest("account password field", "desired-state", "apiVersion: bulwark/v1\nkind: UserAccount\nmetadata: {name: h}\nspec: {name: guest, password: \"$6$x\"}\n",
                        expect: "spec.password: unknown field 'password'"),
        HostileManifest("login.defs key in lower case", "desired-state", "apiVersion: bulwark/v1\nkind: LoginDefs\nmetadata: {name: h}\nspec: {pass_max_days: 30}\n",
                        expect: "'pass_max_days' is not a login.defs key"),
        HostileManifest("login.defs value with a space", "desired-state", "apiVersion: bulwark/v1\nkind: LoginDefs\nmetadata: {name: h}\nspec: {PASS_MAX_DAYS: \"1 2\"}\n",
                        expect: "spec.PASS_MAX_DAYS: expected a single word or number, got '1 2'"),
        HostileManifest("login.defs umask that is not octal", "desired-state", "apiVersion: bulwark/v1\nkind: LoginDefs\nmetadata: {name: h}\nspec: {UMASK: \"0999\"}\n",
                        expect: "spec.UMASK: expected an octal umask such as 027, got '0999'"),
        HostileManifest("login.defs umask that overflows", "desired-state", "apiVersion: bulwark/v1\nkind: LoginDefs\nmetadata: {name: h}\nspec: {UMASK: \"7777777777777777777777777\"}\n",
                        expect: "spec.UMASK: expected an octal umask such as 027, got '7777777777777777777777777'"),
        HostileManifest("login.defs value with U+2029", "desired-state", "apiVersion: bulwark/v1\nkind: LoginDefs\nmetadata: {name: h}\nspec: {PASS_MAX_DAYS: \"30\\PUID_MIN 0\"}\n",
                        expect: "U+2029; login.defs is one setting per line"),
        HostileManifest("login.defs value with FF", "desired-state", "apiVersion: bulwark/v1\nkind: LoginDefs\nmetadata: {name: h}\nspec: {PASS_MAX_DAYS: \"30\\fUID_MIN 0\"}\n",
                        expect: "U+000C; login.defs is one setting per line"),
        HostileManifest("sshd unknown keyword", "desired-state", "apiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata: {name: h}\nspec: {PermitRootLogin2: \"no\"}\n",
                        expect: "unknown or unsupported sshd keyword 'PermitRootLogin2'"),
        HostileManifest("sshd keyword sshd allows many times", "desired-state", "apiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata: {name: h}\nspec: {Port: 2222}\n",
                        expect: "unknown or unsupported sshd keyword 'Port'"),
        HostileManifest("sshd Banner with LF", "desired-state", "apiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata: {name: h}\nspec: {Banner: \"/etc/issue\\nPermitRootLogin yes\"}\n",
                        expect: "U+000A; sshd_config is one setting per line"),
        HostileManifest("sshd Banner with NEL", "desired-state", "apiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata: {name: h}\nspec: {Banner: \"/etc/issue\\NPermitRootLogin yes\"}\n",
                        expect: "U+0085; sshd_config is one setting per line"),
        HostileManifest("sshd keyword with a newline in it", "desired-state", "apiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata: {name: h}\nspec: {\"PermitRootLogin\\nPermitEmptyPasswords\": \"yes\"}\n",
                        expect: "unknown or unsupported sshd keyword 'PermitRootLogin\\nPermitEmptyPasswords'"),
        HostileManifest("sshd MaxAuthTries past Int", "desired-state", "apiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata: {name: h}\nspec: {MaxAuthTries: 9223372036854775808}\n",
                        expect: "spec.MaxAuthTries: expected an integer from 1 to 1000, got '9223372036854775808'"),
        HostileManifest("sshd MaxAuthTries negative", "desired-state", "apiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata: {name: h}\nspec: {MaxAuthTries: -1}\n",
                        expect: "spec.MaxAuthTries: expected an integer from 1 to 1000, got '-1'"),
        HostileManifest("sshd LoginGraceTime that overflows", "desired-state", "apiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata: {name: h}\nspec: {LoginGraceTime: 9223372036854775807w}\n",
                        expect: "spec.LoginGraceTime: expected a time such as 60, 30s, 2m or 1h, got '9223372036854775807w'"),
        HostileManifest("sshd ClientAliveInterval that overflows in a sum", "desired-state", "apiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata: {name: h}\nspec: {ClientAliveInterval: 1h106751991167300d}\n",
                        expect: "spec.ClientAliveInterval: expected a time such as 60, 30s, 2m or 1h, got '1h106751991167300d'"),
        HostileManifest("sshd alias and keyword together", "desired-state", "apiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata: {name: h}\nspec: {ChallengeResponseAuthentication: \"no\", KbdInteractiveAuthentication: \"yes\"}\n",
                        expect: "'KbdInteractiveAuthentication' is the same sshd setting as 'ChallengeResponseAuthentication'"),
        HostileManifest("sshd choice that does not exist", "desired-state", "apiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata: {name: h}\nspec: {PermitRootLogin: maybe}\n",
                        expect: "spec.PermitRootLogin: expected one of yes, no, prohibit-password"),
        HostileManifest("sysctl key with slashes", "desired-state", "apiVersion: bulwark/v1\nkind: Sysctl\nmetadata: {name: h}\nspec: {net/ipv4/ip_forward: 0}\n",
                        expect: "'net/ipv4/ip_forward' is not a kernel parameter name"),
        HostileManifest("sysctl key climbing out of proc", "desired-state", "apiVersion: bulwark/v1\nkind: Sysctl\nmetadata: {name: h}\nspec: {\"..\": 0, \"net...x\": 1}\n",
                        expect: "'..' is not a kernel parameter name"),
        HostileManifest("sysctl key of one component", "desired-state", "apiVersion: bulwark/v1\nkind: Sysctl\nmetadata: {name: h}\nspec: {kernel: 1}\n",
                        expect: "'kernel' is not a kernel parameter name"),
        HostileManifest("sysctl key with sysctl's ignore-errors dash", "desired-state", "apiVersion: bulwark/v1\nkind: Sysctl\nmetadata: {name: h}\nspec: {\"-kernel.core_pattern\": \"|/tmp/evil %p\"}\n",
                        expect: "'-kernel.core_pattern' starts with '-', which sysctl reads as the line of 'kernel.core_pattern' with its errors ignored"),
        HostileManifest("sysctl key with the dash under a floor", "desired-state", "apiVersion: bulwark/v1\nkind: Sysctl\nmetadata: {name: h}\nspec: {\"-fs.protected_symlinks\": \"0\"}\n",
                        expect: "'-fs.protected_symlinks' starts with '-'"),
        HostileManifest("sysctl value with CR", "desired-state", "apiVersion: bulwark/v1\nkind: Sysctl\nmetadata: {name: h}\nspec: {net.ipv4.ip_forward: \"0\\rnet.ipv4.conf.all.rp_filter = 0\"}\n",
                        expect: "U+000D; sysctl.d files are one setting per line"),
        HostileManifest("sysctl value with U+2028", "desired-state", "apiVersion: bulwark/v1\nkind: Sysctl\nmetadata: {name: h}\nspec: {net.ipv4.ip_forward: \"0\\Lx\"}\n",
                        expect: "U+2028; sysctl.d files are one setting per line"),
        HostileManifest("file mode path that is relative", "desired-state", "apiVersion: bulwark/v1\nkind: FileMode\nmetadata: {name: h}\nspec: {path: etc/shadow, mode: \"0640\"}\n",
                        expect: "spec.path: expected an absolute path inside the target root without '.', '..' or '//', such as /etc/shadow, got 'etc/shadow'"),
        HostileManifest("file mode path climbing out of the root", "desired-state", "apiVersion: bulwark/v1\nkind: FileMode\nmetadata: {name: h}\nspec: {path: /etc/../../outside, mode: \"0640\"}\n",
                        expect: "got '/etc/../../outside'"),
        HostileManifest("file mode that is not octal", "desired-state", "apiVersion: bulwark/v1\nkind: FileMode\nmetadata: {name: h}\nspec: {path: /etc/shadow, mode: \"8888\"}\n",
                        expect: "spec.mode: expected an octal mode from 0000 to 7777 such as \"0640\", got '8888'"),
        HostileManifest("file mode past Int", "desired-state", "apiVersion: bulwark/v1\nkind: FileMode\nmetadata: {name: h}\nspec: {path: /etc/shadow, mode: \"99999999999999999999999\"}\n",
                        expect: "got '99999999999999999999999'"),
        HostileManifest("file owner with a newline", "desired-state", "apiVersion: bulwark/v1\nkind: FileMode\nmetadata: {name: h}\nspec: {path: /etc/shadow, owner: \"root\\nx\"}\n",
                        expect: "spec.owner: expected a user or group name or number, got 'root\\nx'"),
        HostileManifest("controller interval that overflows", "controllers", "apiVersion: bulwark/v1\nkind: Controller\nmetadata: {name: extra}\nspec: {kinds: [Sysctl], interval: 9223372036854775807w}\n",
                        expect: "spec.interval: duration too large; at most 3650d"),
        HostileManifest("controller interval of zero", "controllers", "apiVersion: bulwark/v1\nkind: Controller\nmetadata: {name: extra}\nspec: {kinds: [Sysctl], interval: 0s}\n",
                        expect: "spec.interval: expected a duration from 10s to 1d such as 30s, 5m or 1h, got '0s'"),
        HostileManifest("controller change limit past Int", "controllers", "apiVersion: bulwark/v1\nkind: Controller\nmetadata: {name: extra}\nspec: {kinds: [Sysctl], maxChangesPerCycle: 9223372036854775808}\n",
                        expect: "spec.maxChangesPerCycle: expected an integer from 0 to 1000000, got '9223372036854775808'"),
        HostileManifest("controller target share above 100%", "controllers", "apiVersion: bulwark/v1\nkind: Controller\nmetadata: {name: extra}\nspec: {kinds: [Sysctl], maxTargetShare: 250%}\n",
                        expect: "spec.maxTargetShare: expected a percentage from 1% to 100%, got '250%'"),
        HostileManifest("controller flap period that overflows", "controllers", "apiVersion: bulwark/v1\nkind: Controller\nmetadata: {name: extra}\nspec: {kinds: [Sysctl], flapBreaker: {count: 3, period: 9223372036854775807w}}\n",
                        expect: "spec.flapBreaker.period: duration too large"),
        HostileManifest("controller window at 25:00", "controllers", "apiVersion: bulwark/v1\nkind: Controller\nmetadata: {name: extra}\nspec: {kinds: [Sysctl], windows: [{days: [sat], start: \"25:00\", end: \"05:00\"}]}\n",
                        expect: "spec.windows[0].start: expected a time of day such as 02:00, got '25:00'"),
        HostileManifest("global limit past Int", "controllers", "apiVersion: bulwark/v1\nkind: GlobalLimits\nmetadata: {name: limits}\nspec: {maxChangesPerCycle: 99999999999999999999}\n",
                        expect: "spec.maxChangesPerCycle: expected an integer from 0 to 10000000, got '99999999999999999999'"),
        HostileManifest("target root that climbs", "controllers", "apiVersion: bulwark/v1\nkind: Target\nmetadata: {name: other}\nspec: {adapter: host, root: /srv/../etc}\n",
                        expect: "spec.root: expected an absolute path (the folder that stands for /; / for the machine itself), got '/srv/../etc'"),
        HostileManifest("waiver that never expires", "waivers", "apiVersion: bulwark/v1\nkind: Waiver\nmetadata: {name: w}\nspec: {match: {kind: Sysctl}, reason: r, owner: a@example.org, expires: 9999-12-31}\n",
                        expect: "spec.expires: a waiver may last at most a year"),
        HostileManifest("exact duplicate keys", "desired-state", "apiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata: {name: h}\nspec:\n  PermitRootLogin: \"no\"\n  PermitRootLogin: \"yes\"\n",
                        expect: "YAML: duplicate key (first at line 5)"),
        HostileManifest("merge key", "desired-state", "base: &b {PermitRootLogin: \"no\"}\n---\napiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata: {name: h}\nspec:\n  <<: *b\n",
                        expect: "YAML: merge keys (<<) are not supported"),
        HostileManifest("nesting 100 levels deep", "desired-state", "apiVersion: bulwark/v1\nkind: SSHDConfig\nmetadata: {name: h}\nspec: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
                        expect: "YAML: nested deeper than 64 levels"),
        HostileManifest("postgres password in clear text to a remote host", "controllers", "apiVersion: bulwark/v1\nkind: Target\nmetadata: {name: db}\nspec: {adapter: postgres, host: db.example.org, user: postgres, passwordEnv: PGPASSWORD, sslmode: disable}\n",
                        expect: "sslmode: disable would send the password in clear text to db.example.org"),
        HostileManifest("postgres password from another tool's variable", "controllers", "apiVersion: bulwark/v1\nkind: Target\nmetadata: {name: db}\nspec: {adapter: postgres, host: db.example.org, user: postgres, passwordEnv: AWS_RDS_PASSWORD}\n",
                        expect: "spec.passwordEnv: 'AWS_RDS_PASSWORD' is not a variable for a database password"),
        HostileManifest("postgres password of another target", "controllers", "apiVersion: bulwark/v1\nkind: Target\nmetadata: {name: staging}\nspec: {adapter: postgres, host: db.example.org, user: postgres, passwordEnv: BULWARK_PROD_PASSWORD}\n",
                        expect: "spec.passwordEnv: 'BULWARK_PROD_PASSWORD' is not this target's password variable: target staging reads BULWARK_STAGING_PASSWORD"),
        HostileManifest("postgres password variable named by two targets", "controllers", "apiVersion: bulwark/v1\nkind: Target\nmetadata: {name: prod}\nspec: {adapter: postgres, host: db.example.org, user: postgres, passwordEnv: PGPASSWORD}\n---\napiVersion: bulwark/v1\nkind: Target\nmetadata: {name: staging}\nspec: {adapter: postgres, host: staging.example.org, user: postgres, passwordEnv: PGPASSWORD}\n",
                        expect: "spec.passwordEnv: the password in PGPASSWORD is already managed by Target 'prod'"),
        HostileManifest("postgres password file of another target", "controllers", "apiVersion: bulwark/v1\nkind: Target\nmetadata: {name: staging}\nspec: {adapter: postgres, host: db.example.org, user: postgres, passwordFile: prod}\n",
                        expect: "spec.passwordFile: 'prod' is not this target's password file: target staging reads a file named staging or bulwark_staging"),
        HostileManifest("postgres password file of Bulwark's own", "controllers", "apiVersion: bulwark/v1\nkind: Target\nmetadata: {name: db}\nspec: {adapter: postgres, host: db.example.org, user: postgres, passwordFile: /run/secrets/signing-key}\n",
                        expect: "spec.passwordFile: '/run/secrets/signing-key' is named as one of Bulwark's own credentials"),
        HostileManifest("firewall blocklist of everything", "controllers", "apiVersion: bulwark/v1\nkind: Target\nmetadata: {name: fw}\nspec: {adapter: nftables, root: /srv/fw, management: [0.0.0.0/0]}\n",
                        expect: "0.0.0.0/0 is every address: a prefix length of 0 is refused"),
    ]
}

/// Hostile manifests beyond the list, each through the real binary: `validate` exits 1
/// with the one clear error on its own line, and `apply` of a revision holding it exits 1 with the
/// same error, records the refusal once and leaves the host byte-identical.
@Suite struct HostileManifestTests {
    @Test(arguments: HostileManifest.all)
    func validateRefusesItWithAClearErrorOnOneLine(_ hostile: HostileManifest) async throws {
        try await withTemporaryDirectory { dir in
            try write(dir + "/controllers/c.yaml", """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: local}
                spec: {adapter: host, root: \(dir)/host}
                ---
                apiVersion: bulwark/v1
                kind: Controller
                metadata: {name: host}
                spec: {kinds: [SSHDConfig, Sysctl, FileMode, LoginDefs, UserAccount]}
                """)
            try write(dir + "/" + hostile.path, hostile.text)
            let result = try bulwark(["validate", dir])
            #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
            let lines = result.stderr.split(separator: "\n")
            #expect(lines.first?.hasPrefix("desired state is invalid") == true, "\(result.stderr)")
            #expect(lines.contains { $0.contains(hostile.path + ":") && $0.contains(hostile.expect) },
                    "expected '\(hostile.expect)' on one line of: \(result.stderr)")
            #expect(!result.stderr.unicodeScalars.contains { isLineBreaking($0) && $0 != "\n" }, "\(result.stderr.debugDescription)")
        }
    }

    @Test func applyRefusesEachWholeRecordsItOnceAndWritesNothing() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            let before = try s.snapshot()
            var previous: String?
            for (index, hostile) in HostileManifest.all.enumerated() {
                try s.replacePolicyFile(previous, with: hostile.path, hostile.text, message: "hostile: \(hostile.name)")
                previous = hostile.path
                let apply = try s.run("apply")
                #expect(apply.status == 1, "\(hostile.name): \(apply.stderr)")
                #expect(apply.stderr.contains(hostile.expect), "\(hostile.name): \(apply.stderr)")
                #expect(try s.snapshot() == before, "\(hostile.name): the host changed")
                #expect(try s.trailers("Bulwark-Decision") == Array(repeating: "refused", count: index + 1),
                        "\(hostile.name): recorded once as refused")
            }
            let message = try git("--git-dir", s.origin, "log", "-1", "--format=%B", "bulwark/audit")
            #expect(message.contains(HostileManifest.all.last?.expect ?? "-"))
        }
    }

    /// A blob of 256 MiB of zeros is a quarter of a megabyte in a pack: pushed without a
    /// signature, it was inflated whole into memory each time the revision's files were read,
    /// before anything was verified. Its size is now read from the object's header: the
    /// revision is refused for the size, and a pass that fetches nothing stays small. (The
    /// fetch that brings it holds it once; `git` CLI's index-pack streams it.)
    @Test func aHugeBlobIsRefusedForItsSizeWithoutBeingRead() async throws {
        try await withTemporaryDirectory { dir in
            let s = try Scenario(in: dir)
            _ = try s.run("plan")  // the state clone, made before the push: the blob comes by a fetch
            let work = dir + "/work"
            try git("clone", "-q", s.origin, work)
            let blob = try run("/bin/sh", ["-c", "head -c 268435456 /dev/zero | git hash-object -w --stdin"], in: work)
            #expect(blob.status == 0, "\(blob.stderr)")
            try git("update-index", "--add", "--cacheinfo", "100644,\(blob.stdout.trimmingCharacters(in: .whitespacesAndNewlines)),desired-state/huge.yaml",
                    in: work)
            try git("commit", "-qm", "a huge file", in: work)
            try git("push", "-q", "origin", "main", in: work)
            // Fetched (the pass that holds it once), then read again: that pass's peak resident
            // set, as the kernel counts it for a child that has ended.
            #expect(try s.run("plan").stderr.contains("file is 268435456 bytes"))
            let measured = try run("/usr/bin/python3", ["-c", """
                import resource, subprocess, sys
                result = subprocess.run(sys.argv[1:], capture_output=True, text=True)
                print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
                sys.stderr.write(result.stderr)
                """, try bulwarkExecutable(), "plan", "--repo", s.origin, "--state-dir", s.state])
            #expect(measured.stderr.contains("desired-state/huge.yaml") && measured.stderr.contains("file is 268435456 bytes"),
                    "\(measured.stderr)")
            let peakKiB = Int(measured.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? .max
            #expect(peakKiB < 128 << 10, "peak RSS \(peakKiB) KiB")
        }
    }
}

extension Scenario {
    /// Commits `text` at `path` after removing `old` (the previous hostile file), as a person would.
    func replacePolicyFile(_ old: String?, with path: String, _ text: String, message: String) throws {
        let work = dir + "/work-\(UUID().uuidString.prefix(8))"
        try git("clone", "-q", origin, work)
        defer { try? FileManager.default.removeItem(atPath: work) }
        if let old { try? FileManager.default.removeItem(atPath: work + "/" + old) }
        try write(work + "/" + path, text)
        try git("add", "-A", in: work)
        try git("commit", "-qm", message, in: work)
        try git("push", "-q", "origin", "main", in: work)
    }
}
