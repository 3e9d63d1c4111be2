@testable import BulwarkCommands
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// Fuzzes manifest validation as `bulwark validate` runs it (every adapter's kinds): a mutated
/// policy file is loaded with the seeded controllers and targets. Whatever it holds: no trap; a
/// refusal lists a bounded number of errors, each on one line; and a revision that validates
/// holds no value for a line-oriented host file with a control or line-break character, and no
/// passwd field with a `:`.
enum ManifestFuzz {
    static let controllers = """
        apiVersion: bulwark/v1
        kind: Target
        metadata: {name: web-1, labels: {role: web}}
        spec: {adapter: host, root: /srv/sandbox}
        ---
        apiVersion: bulwark/v1
        kind: Target
        metadata: {name: fw}
        spec: {adapter: nftables, root: /srv/fw, management: [192.0.2.0/24]}
        ---
        apiVersion: bulwark/v1
        kind: Target
        metadata: {name: db}
        spec: {adapter: postgres, host: 127.0.0.1, port: 5432, user: postgres, database: postgres, passwordEnv: PGPASSWORD, sslmode: disable}
        ---
        apiVersion: bulwark/v1
        kind: Target
        metadata: {name: cloud}
        spec: {adapter: aws, region: eu-west-1}
        ---
        apiVersion: bulwark/v1
        kind: Controller
        metadata: {name: all}
        spec:
          kinds: [SSHDConfig, Sysctl, FileMode, LoginDefs, UserAccount, FirewallBlocklist, AllowedIngress, Quarantine,
                  PostgresSetting, PostgresRole, PostgresPrivilege, PostgresSuperusers, SecurityGroupIngress,
                  S3PublicAccessBlock, IAMAccessKey, EBSDefaultEncryption]
          interval: 5m
          mode: enforce
          maxChangesPerCycle: 50
          maxTargetShare: 25%
          windows:
            - {days: [sat, sun], start: "02:00", end: "05:00", timeZone: Europe/Berlin}
          flapBreaker: {count: 3, period: 1h}
        ---
        apiVersion: bulwark/v1
        kind: GlobalLimits
        metadata: {name: limits}
        spec: {maxChangesPerCycle: 200}
        ---
        apiVersion: bulwark/v1
        kind: Notifier
        metadata: {name: chat}
        spec: {urlEnv: CHAT_URL, format: slack, on: [held, failed]}

        """

    static let seeds: [String] = [
        """
        apiVersion: bulwark/v1
        kind: SSHDConfig
        metadata: {name: root-login, labels: {benchmark: cis}, annotations: {cis: "5.1.20", severity: critical}}
        targets: {selector: {role: web}}
        spec:
          PermitRootLogin: "no"
          MaxAuthTries: 4
          ClientAliveInterval: 5m
          Banner: /etc/issue.net
        ---
        apiVersion: bulwark/v1
        kind: Sysctl
        metadata: {name: k}
        spec: {net.ipv4.ip_forward: 0, kernel.dmesg_restrict: 1}
        ---
        apiVersion: bulwark/v1
        kind: LoginDefs
        metadata: {name: l}
        spec: {PASS_MAX_DAYS: 365, UMASK: "027"}
        ---
        apiVersion: bulwark/v1
        kind: UserAccount
        metadata: {name: guest}
        spec: {name: guest, locked: true, shell: /usr/sbin/nologin, expires: 2025-01-01}
        ---
        apiVersion: bulwark/v1
        kind: FileMode
        metadata: {name: shadow}
        spec: {path: /etc/shadow, mode: "0640", owner: root, group: shadow}

        """,
        """
        apiVersion: bulwark/v1
        kind: FirewallBlocklist
        metadata: {name: bad}
        spec: {addresses: [203.0.113.7, 198.51.100.0/24, "2001:db8:bad::/48"]}
        ---
        apiVersion: bulwark/v1
        kind: AllowedIngress
        metadata: {name: in}
        spec: {tcp: [22, 443], udp: [53], from: [192.0.2.0/24]}
        ---
        apiVersion: bulwark/v1
        kind: Quarantine
        metadata: {name: q}
        spec: {hosts: [fw], allow: [192.0.2.0/24], expires: 2026-12-31}

        """,
        """
        apiVersion: bulwark/v1
        kind: PostgresSetting
        metadata: {name: s}
        spec: {settings: {log_connections: "on", log_statement: ddl}}
        ---
        apiVersion: bulwark/v1
        kind: PostgresRole
        metadata: {name: eve}
        spec: {role: eve, superuser: false, login: true, connectionLimit: 9223372036854775807, validUntil: 2027-01-01}
        ---
        apiVersion: bulwark/v1
        kind: SecurityGroupIngress
        metadata: {name: sg}
        spec: {groups: all, forbid: [{cidr: 0.0.0.0/0, ports: [22, 3389]}]}
        ---
        apiVersion: bulwark/v1
        kind: IAMAccessKey
        metadata: {name: keys}
        spec: {maxUnusedDays: 45, maxAgeDays: 90}

        """,
        """
        apiVersion: bulwark/v1
        kind: Waiver
        metadata: {name: w}
        spec: {match: {kind: Sysctl, property: net.ipv4.ip_forward, targets: [web-1]}, reason: routes, owner: a@example.org, expires: 2027-01-31}
        ---
        apiVersion: bulwark/v1
        kind: SSHDConfig
        metadata: {name: dup}
        spec: {PermitRootLogin: "no", permitrootlogin: "yes", ChallengeResponseAuthentication: "no", LoginGraceTime: 9223372036854775807w}
        ---
        apiVersion: bulwark/v1
        kind: UserAccount
        metadata: {name: evil}
        spec: {name: evil, shell: "/bin/sh\\r\\nroot2::0:0::/root:/bin/sh"}

        """,
    ]

    static let dictionary = ["\n  ", ": ", "- ", "spec: ", "kind: ", "metadata: {name: x}\n", "---\napiVersion: bulwark/v1\n",
                             "PermitRootLogin", "shell: ", "interval: ", "expires: ", "\"\\r\\n\"", "\"\\u2028\"", "\"a:b\""]

    static let registry = Bulwark.registry()
    static let now = Date(timeIntervalSince1970: 1_790_000_000)
    static let lineFileKinds: Set<String> = ["SSHDConfig", "Sysctl", "LoginDefs", "UserAccount"]

    static func check(_ bytes: [UInt8]) throws -> String {
        let files = [SourceFile(path: "controllers/c.yaml", contents: Array(controllers.utf8)),
                     SourceFile(path: "desired-state/r.yaml", contents: bytes)]
        let state: DesiredState
        do {
            state = try DesiredStateLoader(registry: registry, now: now).load(files, revision: "fuzz")
        } catch {
            let shown = error.shown
            try fuzzRequire(!shown.isEmpty && shown.count <= ValidationFailure.maxShown, "\(shown.count) errors shown")
            for problem in shown {
                try fuzzRequire(!problem.description.unicodeScalars.contains(where: isLineBreaking),
                                "an error that is not one line: \(problem.description.debugDescription)")
                // A message is cut at 4096 scalars, a field and a resource at 512 each.
                try fuzzRequire(problem.description.unicodeScalars.count <= 4096 + 2 * 512 + 400, "a \(problem.description.unicodeScalars.count)-scalar error")
                try fuzzRequire(problem.location.line >= 1, "error at line \(problem.location.line)")
            }
            try fuzzRequire(error.description.unicodeScalars.count <= 6000 * (ValidationFailure.maxShown + 2), "\(error.description.unicodeScalars.count) scalars of errors")
            return "refused " + String(shown[0].message.unicodeScalars.filter { !("0"..."9").contains($0) }.prefix(30))
        }
        for resource in state.resources.values where lineFileKinds.contains(resource.id.kind) {
            for property in resource.spec.properties {
                try fuzzRequire(!property.value.unicodeScalars.contains(where: isLineBreaking),
                                "\(resource.id) \(property.name) holds a control or line break: \(property.value.debugDescription)")
                try fuzzRequire(!property.name.unicodeScalars.contains(where: isLineBreaking),
                                "\(resource.id) property name holds a control or line break: \(property.name.debugDescription)")
                if resource.id.kind == "UserAccount" {
                    try fuzzRequire(!property.value.contains(":"), "\(resource.id) \(property.name) holds ':': \(property.value)")
                }
            }
        }
        for controller in state.controllers.values {
            try fuzzRequire(controller.interval > .zero, "controller \(controller.name) interval \(controller.interval)")
        }
        return "valid \(min(state.resources.count, 20))"
    }
}

@Suite struct ManifestFuzzTests {
    @Test func manifestValidationUnderMutation() async {
        let summary = await Fuzzer(target: "manifest", ciIterations: 1_500, dictionary: ManifestFuzz.dictionary)
            .run(seeds: ManifestFuzz.seeds.map { Array($0.utf8) }, check: ManifestFuzz.check)
        #expect(summary.failures == 0, "\(summary)\n\(summary.messages.joined(separator: "\n"))")
        #expect(summary.outcomes > 20, "\(summary)")
    }

    @Test func theCorpusOfEarlierFindingsStillHolds() async throws {
        let (count, failures) = try await Fuzzer.replayCorpus("manifest", check: ManifestFuzz.check)
        #expect(count > 0, "Tests/Corpus/manifest holds inputs")
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }
}
