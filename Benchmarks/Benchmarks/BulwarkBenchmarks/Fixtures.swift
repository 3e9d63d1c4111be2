import BulwarkCore
import BulwarkGit
import BulwarkHost
import Foundation
import Synchronization

enum Fixtures {
    static let targets = 500
    /// Resources bound to every target: 20 × 500 = 10,000 resources under management.
    static let resourcesPerTarget = 20

    private static let cache = Mutex<[String: String]>([:])

    /// A folder made once per process and reused by every iteration.
    static func folder(_ name: String, create: (String) throws -> Void) throws -> String {
        if let existing = cache.withLock({ $0[name] }) { return existing }
        let path = NSTemporaryDirectory() + "/bulwark-bench-\(name)-\(getpid())"
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try create(path)
        cache.withLock { $0[name] = path }
        return path
    }

    static func removeAll() {
        for path in cache.withLock({ Array($0.values) }) { try? FileManager.default.removeItem(atPath: path) }
    }

    // MARK: - A fleet of sandbox hosts

    static let sshd = "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\nMaxAuthTries 6\nX11Forwarding yes\nUsePAM yes\n\nMatch User backup\n\tPermitRootLogin no\n"

    /// Writes the drifted state of every host tree (again), as a fresh unhardened host has it.
    static func drift(fleet: String) throws {
        for index in 0..<targets {
            let root = "\(fleet)/host-\(index)"
            let files: [(String, String, Int)] = [
                ("etc/ssh/sshd_config", sshd, 0o644),
                ("etc/login.defs", "PASS_MAX_DAYS\t99999\nPASS_MIN_DAYS\t0\nPASS_WARN_AGE\t3\nUMASK\t022\n", 0o644),
                ("etc/sysctl.conf", "net.ipv4.ip_forward=1\n", 0o644),
                ("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n", 0o666),
                ("etc/group", "root:x:0:\nshadow:x:42:\n", 0o666),
                ("etc/shadow", "root:*:19700:0:99999:7:::\n", 0o644),
                ("etc/gshadow", "root:*::\n", 0o644),
                ("proc/sys/net/ipv4/ip_forward", "1\n", 0o644),
                ("proc/sys/net/ipv4/tcp_syncookies", "0\n", 0o644),
                ("proc/sys/fs/suid_dumpable", "2\n", 0o644),
            ]
            try? FileManager.default.removeItem(atPath: root + "/etc/sysctl.d")
            for folder in ["etc/ssh/sshd_config.d", "etc/sysctl.d", "proc/sys/net/ipv4", "proc/sys/fs"] {
                try FileManager.default.createDirectory(atPath: root + "/" + folder, withIntermediateDirectories: true)
            }
            for (path, text, mode) in files {
                let full = root + "/" + path
                try? FileManager.default.removeItem(atPath: full)
                guard FileManager.default.createFile(atPath: full, contents: Data(text.utf8), attributes: [.posixPermissions: mode]) else {
                    throw BenchmarkSetupError("cannot write \(full)")
                }
            }
        }
    }

    /// The policy's files: 500 targets, one controller, 20 resources that bind to every target.
    static func manifests(fleet: String) -> [SourceFile] {
        var targets = ""
        for index in 0..<Self.targets {
            targets += "---\napiVersion: bulwark/v1\nkind: Target\nmetadata: {name: host-\(index), labels: {role: web, exposure: \(index % 2 == 0 ? "internet" : "internal")}}\nspec: {adapter: host, root: \(fleet)/host-\(index)}\n"
        }
        let controller = """
            apiVersion: bulwark/v1
            kind: Controller
            metadata: {name: hosts}
            spec: {kinds: [SSHDConfig, Sysctl, FileMode, LoginDefs, UserAccount], mode: enforce}
            ---
            apiVersion: bulwark/v1
            kind: GlobalLimits
            metadata: {name: limits}
            spec: {maxChangesPerCycle: 100000}

            """
        var resources: [(String, String)] = []
        for (key, value) in [("PermitRootLogin", "\"no\""), ("MaxAuthTries", "4"), ("X11Forwarding", "\"no\""),
                             ("PermitEmptyPasswords", "\"no\""), ("HostbasedAuthentication", "\"no\""), ("IgnoreRhosts", "\"yes\""),
                             ("PermitUserEnvironment", "\"no\""), ("LoginGraceTime", "60")] {
            resources.append(("SSHDConfig", "\(key): \(value)"))
        }
        for (path, mode) in [("/etc/ssh/sshd_config", "0600"), ("/etc/passwd", "0644"), ("/etc/group", "0644"),
                             ("/etc/shadow", "0640"), ("/etc/gshadow", "0640")] {
            resources.append(("FileMode", "path: \(path)\n  mode: \"\(mode)\""))
        }
        for (key, value) in [("PASS_MAX_DAYS", "365"), ("PASS_MIN_DAYS", "1"), ("PASS_WARN_AGE", "7"), ("UMASK", "\"027\"")] {
            resources.append(("LoginDefs", "\(key): \(value)"))
        }
        for (key, value) in [("net.ipv4.ip_forward", "0"), ("net.ipv4.tcp_syncookies", "1"), ("fs.suid_dumpable", "0")] {
            resources.append(("Sysctl", "\(key): \(value)"))
        }
        precondition(resources.count == resourcesPerTarget)
        let desired = resources.enumerated().map { index, resource in
            let severity = ["low", "medium", "high", "critical"][index % 4]
            return "---\napiVersion: bulwark/v1\nkind: \(resource.0)\nmetadata: {name: r-\(index), annotations: {severity: \(severity)}}\nspec:\n  \(resource.1)\n"
        }.joined()
        return [
            SourceFile(path: "controllers/targets.yaml", contents: Array(targets.utf8)),
            SourceFile(path: "controllers/controller.yaml", contents: Array(controller.utf8)),
            SourceFile(path: "desired-state/hosts.yaml", contents: Array(desired.utf8)),
        ]
    }

    /// The registry the benchmarks use. `sshd -t` is left out of the apply benchmark: it is a
    /// separate process per candidate (about 5 ms each) and would measure sshd, not Bulwark.
    static func registry(validateSSHD: Bool) -> Registry {
        Registry([HostAdapter.definition(sshd: validateSSHD ? .system : SSHDValidator(executable: nil))])
    }

    // MARK: - An audit branch with 100,000 records

    static let seededRecords = 100_000

    static func auditRepository() throws -> String {
        try folder("audit") { path in
            let repo = try Repository.create(at: path + "/repo.git", bare: true)
            var files: [String: [UInt8]] = [:]
            let start = Date(timeIntervalSince1970: 1_767_225_600)  // 2026-01-01
            for index in 0..<seededRecords {
                let when = start.addingTimeInterval(Double(index) * 315)  // spread over a year
                let record = sampleRecord(id: AuditID.ulid(at: when), at: when)
                files[record.path] = record.json()
            }
            let seed = try repo.writeCommit(adding: files, parent: nil, message: "seed: 100,000 audit records\n",
                                            author: Signature(name: "Bulwark", email: "bulwark@localhost"))
            try repo.updateReference("refs/heads/bulwark/audit", to: seed, expected: nil, message: "seed")
        }
    }

    static func sampleRecord(id: String, at date: Date) -> AuditRecord {
        AuditRecord(id: id, controller: "host-hardening", target: "host-17", resource: "SSHDConfig/cis-5.1.20-permit-root-login",
                    kind: "SSHDConfig", name: "cis-5.1.20-permit-root-login", severity: .critical, risk: 12, mode: .enforce,
                    decision: .applied, result: .verified, reason: nil,
                    changes: [.init(property: "PermitRootLogin", desired: "no", observedBefore: "yes", observedAfter: "no")],
                    detectedAt: Timestamp.format(date), appliedAt: Timestamp.format(date),
                    verifiedAt: Timestamp.format(date.addingTimeInterval(0.002)), desiredCommit: String(repeating: "a", count: 40),
                    approver: nil, error: nil)
    }
}

/// Counts records without writing them, to measure the reconcile loop on its own.
final class CountingSink: AuditSink {
    let count = Mutex(0)
    func contains(recordID: String) async throws -> Bool { false }
    func write(_ record: AuditRecord) async throws -> String {
        count.withLock { $0 += 1 }
        return record.id
    }
}

struct BenchmarkSetupError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
