import BulwarkCore
import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

/// One account line set for a sandbox host: passwd, shadow (`*` no password, `!` locked, a
/// hash) and the groups it is in.
struct FixtureAccount {
    var name: String
    var uid: Int
    var shell = "/bin/bash"
    var hash = "*"
    var groups: [String] = []
    var key = false

    var home: String { uid == 0 ? "/root" : "/home/\(name)" }
}

/// A whole ed25519 public key (its 32 bytes spell a note, not a point anyone holds the private key of).
let sampleKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEJ1bHdhcmsgZ3VhcmQgZml4dHVyZTogbm90IHJlYWwu fixture\n"

/// Lays out the account files of a host under `root`: etc/passwd, etc/shadow (0640), etc/group
/// (with sudo, wheel, shadow), etc/shells, executable bin/bash, bin/sh and usr/sbin/nologin,
/// and authorized_keys for the accounts that have a key.
func makeHost(_ root: String, _ accounts: [FixtureAccount]) throws {
    var passwd = "", shadow = "", members: [String: [String]] = [:]
    var groups = "root:x:0:\nshadow:x:42:\n"
    for account in accounts {
        passwd += "\(account.name):x:\(account.uid):\(account.uid):\(account.name):\(account.home):\(account.shell)\n"
        shadow += "\(account.name):\(account.hash):19700:0:99999:7:::\n"
        if account.uid != 0 { groups += "\(account.name):x:\(account.uid):\n" }
        for group in account.groups { members[group, default: []].append(account.name) }
        if account.key {
            try write(root + account.home + "/.ssh/authorized_keys", sampleKey, mode: 0o600)
        }
    }
    for (group, gid) in [("sudo", 27), ("wheel", 10), ("users", 100)] {
        groups += "\(group):x:\(gid):\((members[group] ?? []).joined(separator: ","))\n"
    }
    try write(root + "/etc/passwd", passwd)
    try write(root + "/etc/shadow", shadow, mode: 0o640)
    try write(root + "/etc/group", groups)
    try write(root + "/etc/shells", "# /etc/shells: valid login shells\n/bin/sh\n/bin/bash\n")
    for program in ["/bin/bash", "/bin/sh", "/usr/sbin/nologin", "/bin/false"] {
        try write(root + program, "#!/bin/true\n", mode: 0o755)
    }
}

/// The usual host: root with no password and no key, `admin` (uid 1000, in sudo) with a key.
func makeAdminHost(_ root: String) throws {
    try makeHost(root, [FixtureAccount(name: "root", uid: 0), FixtureAccount(name: "admin", uid: 1000, groups: ["sudo"], key: true)])
}

/// Every regular file under `root` with its bytes, mode and owner, to show a host unchanged.
func snapshot(_ root: String) throws -> [String: String] {
    var result: [String: String] = [:]
    let enumerator = FileManager.default.enumerator(atPath: root)
    while let relative = enumerator?.nextObject() as? String {
        // Bulwark's own per-target lock is not part of the host's state.
        if relative == "run" || relative.hasPrefix("run/bulwark") { continue }
        // Nor is shadow-utils' lock, which a write of the account files takes as lckpwdf does.
        if relative == "etc/.pwd.lock" { continue }
        let path = root + "/" + relative
        let info = modeAndOwner(path)
        // A binary file (a real program or library) by its base64: decoding megabytes of bytes
        // that are not UTF-8 took seconds a file.
        let bytes = FileManager.default.contents(atPath: path).map { String(validating: $0, as: UTF8.self) ?? "base64:" + $0.base64EncodedString() } ?? "<folder>"
        result[relative] = "\(String(info.mode, radix: 8)) \(info.uid):\(info.gid) \(bytes)"
    }
    return result
}

/// Plans and applies once, expecting one blocked remediation: the plan shows it blocked with a
/// reason containing `reason`, apply records it blocked once, a second pass records nothing
/// new, and no file under the root changed; with `restApplied`, the pass carries out the other
/// remediations instead, each verified. Returns the block reason.
@discardableResult
func expectBlocked(_ root: String, _ manifests: String, reason: String, restApplied: Bool = false,
                   sourceLocation: Testing.SourceLocation = #_sourceLocation) async throws -> String {
    let before = try snapshot(root)
    let state = try hostState(root: root, manifests)
    let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
    let plan = try await reconciler.plan(state)
    let blocked = plan.remediations.filter { $0.decision == .blocked }
    #expect(blocked.count == 1, "plan: \(plan.remediations.map { "\($0.decision) \($0.reason ?? "")" }) failures: \(plan.failures)", sourceLocation: sourceLocation)
    let text = blocked.first?.reason ?? ""
    #expect(text.contains(reason), "reason: \(text)", sourceLocation: sourceLocation)
    let sink = RecordingSink()
    let first = await reconciler.apply(plan, state: state, audit: sink)
    let records = first.entries.filter { $0.record.decision == .blocked }
    #expect(records.count == 1 && records.first?.alreadyRecorded == false, sourceLocation: sourceLocation)
    #expect(records.first?.record.commitMessage.contains("Bulwark-Decision: blocked") == true, sourceLocation: sourceLocation)
    if restApplied {
        #expect(first.entries.filter { $0.record.decision != .blocked }.allSatisfy { $0.record.result == .verified },
                "results: \(first.entries.map { "\($0.record.decision) \(String(describing: $0.record.result)) \($0.record.error ?? "")" })",
                sourceLocation: sourceLocation)
    }
    let second = await reconciler.apply(try await reconciler.plan(state), state: state, audit: sink)
    let again = second.entries.filter { $0.record.decision == .blocked }
    #expect(again.count == 1 && again.allSatisfy { $0.alreadyRecorded }, "recorded once", sourceLocation: sourceLocation)
    if !restApplied {
        #expect(try snapshot(root) == before, "the host is byte-identical", sourceLocation: sourceLocation)
    }
    return text
}

/// Plans `manifests` (one remediation, which the plan allows), lets `between` change the host as
/// another writer would, then applies that plan: the record of its one remediation.
func planThenApply(_ root: String, _ manifests: String, between: () throws -> Void,
                   sourceLocation: Testing.SourceLocation = #_sourceLocation) async throws -> AuditRecord {
    let state = try hostState(root: root, manifests)
    let reconciler = Reconciler(registry: Registry([HostAdapter.definition()]))
    let plan = try await reconciler.plan(state)
    #expect(plan.remediations.map(\.decision) == [.applied], sourceLocation: sourceLocation)
    try between()
    let outcome = await reconciler.apply(plan, state: state, audit: RecordingSink())
    return try #require(outcome.entries.first?.record, sourceLocation: sourceLocation)
}

/// Plans and applies once, expecting the change to go through and verify.
func expectApplied(_ root: String, _ manifests: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) async throws {
    let state = try hostState(root: root, manifests)
    let (plan, outcome) = try await reconcile(state)
    #expect(plan.remediations.allSatisfy { $0.decision == .applied },
            "plan: \(plan.remediations.map { "\($0.decision) \($0.reason ?? "")" }) failures: \(plan.failures)", sourceLocation: sourceLocation)
    #expect(!outcome.entries.isEmpty && outcome.entries.allSatisfy { $0.record.result == .verified },
            "results: \(outcome.entries.map { "\(String(describing: $0.record.result)) \($0.record.error ?? "")" })", sourceLocation: sourceLocation)
}

let sshdInstalled = FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd")
