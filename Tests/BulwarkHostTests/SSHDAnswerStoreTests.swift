import BulwarkCore
@testable import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

/// sshd's answers kept in the state directory (`SSHDAnswerStore`): the next process asks sshd
/// only about what changed; an answer changed or cut short, older than a day, or in a folder
/// another user could write to is never used. (A folder of Bulwark's own user is trusted as the
/// rest of its state directory is: its checksum holds no secret.)
@Suite(.enabled(if: sshdInstalled)) struct SSHDAnswerStoreTests {
    let root0 = FixtureAccount(name: "root", uid: 0)
    let alice = FixtureAccount(name: "alice", uid: 1001, groups: ["sudo"], key: true)

    /// A host whose sshd configuration no other test has (the in-memory cache of this test
    /// process cannot answer for it), with a drop-in that keeps keys on.
    func host(_ root: String) throws {
        try makeHost(root, [root0, alice])
        try write(root + "/etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\nUsePAM yes\n# \(UUID().uuidString)\n")
        try FileManager.default.createDirectory(atPath: root + "/etc/ssh/sshd_config.d", withIntermediateDirectories: true)
        try write(root + "/etc/ssh/sshd_config.d/10-keys.conf", "PubkeyAuthentication yes\n")
    }

    /// A cache as a new Bulwark process has it, keeping answers in `folder`.
    func process(_ folder: String) -> SSHDProbeCache {
        let cache = SSHDProbeCache(limit: 64)
        #expect(cache.keep(in: folder) == nil)
        return cache
    }

    /// Runs `body` as a process with `cache`; returns how many sshd processes it started.
    func runs(_ cache: SSHDProbeCache, _ body: () async throws -> Void) async rethrows -> Int {
        let counter = SSHDProbeCounter()
        try await SSHDProbeCache.$current.withValue(cache) {
            try await SSHDProbeCounter.$current.withValue(counter) { try await body() }
        }
        return counter.sshdRuns
    }

    func files(_ folder: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: folder).filter { !$0.hasPrefix(".") }.sorted()
    }

    let lockout = resource("SSHDConfig", "s", "AllowUsers: nobody")
    let allowAlice = resource("SSHDConfig", "s", "AllowUsers: alice")

    @Test func theNextProcessIsAnsweredFromTheStateDirectoryAndAChangedDropInIsAskedAgain() async throws {
        try await withTemporaryDirectory { dir in
            let root = dir + "/root", kept = dir + "/state/sshd-answers"
            try FileManager.default.createDirectory(atPath: dir + "/state", withIntermediateDirectories: true)
            try host(root)
            var first = ""
            #expect(try await runs(process(kept)) { first = try await expectBlocked(root, lockout, reason: "no account could log in over SSH") } > 0)
            let written = try files(kept)
            #expect(!written.isEmpty)
            #expect(try FileManager.default.attributesOfItem(atPath: kept)[.posixPermissions] as? Int == 0o700)
            for name in written {
                #expect(try FileManager.default.attributesOfItem(atPath: kept + "/" + name)[.posixPermissions] as? Int == 0o600)
            }

            // A new process: the same candidate, drop-ins and accounts are answered without sshd.
            var second = ""
            #expect(try await runs(process(kept)) { second = try await expectBlocked(root, lockout, reason: "no account could log in over SSH") } == 0)
            #expect(second == first)

            // Keys off in the drop-in: sshd is asked again, and what it says now decides.
            try write(root + "/etc/ssh/sshd_config.d/10-keys.conf", "PubkeyAuthentication no\nPasswordAuthentication no\n")
            var keysOff = ""
            #expect(try await runs(process(kept)) { keysOff = try await expectBlocked(root, allowAlice, reason: "no account could log in over SSH") } > 0)
            #expect(keysOff.contains("alice: no authentication method left"), "\(keysOff)")

            // Keys back: the legitimate change goes through, judged from the kept answers, and
            // sshd -t still checks the candidate before it is written (never answered from disk).
            try write(root + "/etc/ssh/sshd_config.d/10-keys.conf", "PubkeyAuthentication yes\n")
            let twin = dir + "/twin"
            try FileManager.default.copyItem(atPath: root, toPath: twin)
            _ = try await runs(process(kept)) { try await expectApplied(root, allowAlice) }
            let twinRuns = try await runs(process(kept)) { try await expectApplied(twin, allowAlice) }
            #expect(twinRuns == 1)
            #expect(try read(twin + "/etc/ssh/sshd_config").contains("\nAllowUsers alice\n"))
        }
    }

    @Test func aForgedStaleOrForeignAnswerIsNeverUsed() async throws {
        try await withTemporaryDirectory { dir in
            let root = dir + "/root", kept = dir + "/state/sshd-answers"
            try FileManager.default.createDirectory(atPath: dir + "/state", withIntermediateDirectories: true)
            try host(root)
            _ = try await runs(process(kept)) { _ = try await expectBlocked(root, lockout, reason: "no account could log in over SSH") }
            let names = try files(kept)
            #expect(!names.isEmpty)

            // An answer changed on disk (the lockout's AllowUsers made to read alice): its checksum
            // no longer holds, sshd is asked again, and the lockout is still blocked.
            var forged = 0
            for name in names {
                var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: kept + "/" + name)))
                let from = Array("allowusers nobody".utf8), to = Array("allowusers alice ".utf8)
                if let at = (0...(bytes.count - from.count)).first(where: { bytes[$0..<$0 + from.count].elementsEqual(from) }) {
                    bytes.replaceSubrange(at..<at + from.count, with: to)
                    try Data(bytes).write(to: URL(fileURLWithPath: kept + "/" + name))
                    forged += 1
                }
            }
            #expect(forged > 0)
            #expect(try await runs(process(kept)) { _ = try await expectBlocked(root, lockout, reason: "no account could log in over SSH") } > 0)

            // Answers older than a day: asked again.
            let old = Date().addingTimeInterval(-2 * SSHDAnswerStore.lifetime)
            for name in try files(kept) {
                try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: kept + "/" + name)
            }
            #expect(try await runs(process(kept)) { _ = try await expectBlocked(root, lockout, reason: "no account could log in over SSH") } > 0)

            // An answer file others could write: not used.
            _ = try await runs(process(kept)) { _ = try await expectBlocked(root, lockout, reason: "no account could log in over SSH") }
            for name in try files(kept) {
                try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: kept + "/" + name)
            }
            #expect(try await runs(process(kept)) { _ = try await expectBlocked(root, lockout, reason: "no account could log in over SSH") } > 0)

            // A folder others can write to is refused: nothing is read from it (the same candidate
            // its answers are for is asked again) and nothing is written to it.
            _ = try await runs(process(kept)) { _ = try await expectBlocked(root, lockout, reason: "no account could log in over SSH") }
            let shared = dir + "/shared"
            try FileManager.default.copyItem(atPath: kept, toPath: shared)
            #expect(try await runs(process(shared)) { _ = try await expectBlocked(root, lockout, reason: "no account could log in over SSH") } == 0,
                    "the copy answers while it is private")
            try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: shared)
            let refused = SSHDProbeCache(limit: 64)
            let warning = refused.keep(in: shared)
            #expect(warning?.contains("mode 0700, found owner uid \(geteuid()), mode 777") == true, "\(warning ?? "")")
            let before = try files(shared)
            #expect(try await runs(refused) { _ = try await expectBlocked(root, lockout, reason: "no account could log in over SSH") } > 0)
            try write(root + "/etc/ssh/sshd_config.d/20-more.conf", "MaxSessions 4\n")
            #expect(try await runs(refused) { _ = try await expectBlocked(root, lockout, reason: "no account could log in over SSH") } > 0)
            #expect(try files(shared) == before)

            // Nor a link to a private folder.
            try FileManager.default.createSymbolicLink(atPath: dir + "/link", withDestinationPath: kept)
            #expect(SSHDProbeCache(limit: 64).keep(in: dir + "/link") != nil)

            // A candidate sshd rejects is blocked, and its rejection is not kept.
            let count = try files(kept).count
            try write(root + "/etc/ssh/sshd_config.d/30-bad.conf", "NoSuchKeyword yes\n")
            #expect(try await runs(process(kept)) { _ = try await expectBlocked(root, lockout, reason: "could not judge this change") } > 0)
            #expect(try files(kept).count == count)
        }
    }

}

/// The answer file's form, and which machines' answers are kept: no sshd needed.
@Suite struct SSHDAnswerFileTests {
    @Test func aKeptAnswerReadsBackAsWrittenAndACutFileDoesNot() {
        var key = ProbeKey()
        key.append("sshd -T")
        let digest = SSHDAnswerStore.digest(key)
        #expect(SSHDAnswerStore.name(digest).count == 64)
        let answer = ["allowusers": ["alice bob"], "banner": [""], "hostkey": ["/a", "/b"], "port": ["22"]]
        let bytes = SSHDAnswerStore.encode(answer, digest: digest)
        #expect(bytes.flatMap { SSHDAnswerStore.decode($0, digest: digest) } == answer)
        var other = ProbeKey()
        other.append("sshd -T ")
        #expect(SSHDAnswerStore.digest(other) != digest)
        #expect(bytes.flatMap { SSHDAnswerStore.decode($0, digest: SSHDAnswerStore.digest(other)) } == nil)
        #expect(bytes.flatMap { SSHDAnswerStore.decode(Array($0.dropLast()), digest: digest) } == nil)
        #expect(SSHDAnswerStore.encode(["a b": ["x"]], digest: digest) == nil)
        #expect(SSHDAnswerStore.encode(["a": ["x\ny"]], digest: digest) == nil)
        #expect(SSHDAnswerStore.encode(["ciphers": []], digest: digest) == nil, "no value would read back as no keyword")
    }

    @Test func answersAreKeptOnlyWhereAccountsAreTheMachinesFiles() {
        #expect(SSHDProbe.accountsAreLocal(nsswitch: nil))
        #expect(SSHDProbe.accountsAreLocal(nsswitch: "# passwd: ldap\npasswd:         files systemd\ngroup:          files systemd\nhosts: files dns\n"))
        #expect(SSHDProbe.accountsAreLocal(nsswitch: "passwd: files [NOTFOUND=return] systemd\ngroup: files\n"))
        #expect(SSHDProbe.accountsAreLocal(nsswitch: " \tpasswd :files\ngroup\tfiles\nshadow: ldap\nnetgroup: nis"))
        #expect(!SSHDProbe.accountsAreLocal(nsswitch: "passwd: files sss\ngroup: files sss\n"))
        #expect(!SSHDProbe.accountsAreLocal(nsswitch: "passwd: files\ngroup:\tfiles ldap\n"))
        #expect(!SSHDProbe.accountsAreLocal(nsswitch: "passwd: files\ngroup: files\ninitgroups: sss files\n"))
        // As glibc reads the file (each of these made glibc 2.36 load libnss_ldap):
        #expect(!SSHDProbe.accountsAreLocal(nsswitch: "passwd: files systemd # sss\n"), "a # after the name is a source")
        #expect(!SSHDProbe.accountsAreLocal(nsswitch: "passwd files ldap\n"), "the colon may be missing")
        #expect(!SSHDProbe.accountsAreLocal(nsswitch: "passwd: files ldap[NOTFOUND=continue]\n"), "a source ends at [")
        #expect(!SSHDProbe.accountsAreLocal(nsswitch: "\u{0B}passwd\u{0B}: files ldap\n"), "blanks are C's isspace")
        #expect(!SSHDProbe.accountsAreLocal(nsswitch: "Group: files ldap\n"))
        // compat's + entries come from elsewhere; an action never closed, or no source, is not read as local.
        #expect(!SSHDProbe.accountsAreLocal(nsswitch: "passwd: compat\ngroup: compat\n"))
        #expect(!SSHDProbe.accountsAreLocal(nsswitch: "passwd: files [NOTFOUND=return ldap\n"))
        #expect(!SSHDProbe.accountsAreLocal(nsswitch: "group:\n"))
    }
}
