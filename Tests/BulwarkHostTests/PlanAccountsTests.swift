@testable import BulwarkHost
@testable import BulwarkCore
import BulwarkTestSupport
import Foundation
import Glibc
import Testing

/// The guards read a root's accounts once per plan (`HostAccounts.reading`), with the login
/// shells and key files they look at: every sshd resource of a host is judged against the same
/// snapshot, even of files changed a moment ago. A fix (under the target's lock), the next plan
/// and a read outside any plan read afresh.
@Suite struct PlanAccountsTests {
    func facts(_ accounts: HostAccounts) -> (users: [String], key: String?, shell: Bool) {
        let admin = accounts.user("admin")
        return (accounts.users.map(\.name), admin.flatMap { accounts.authorizedKeys($0) }, accounts.isLoginShell("/bin/bash"))
    }

    @Test func aPlanReadsARootsAccountsShellsAndKeysOnce() async throws {
        try await withTemporaryDirectory { base in
            // Written just now: a file's parse outside a plan is not kept for such files.
            try makeHost(base, [FixtureAccount(name: "root", uid: 0),
                                FixtureAccount(name: "admin", uid: 1000, groups: ["sudo"], key: true)])
            let root = try HostRoot(base)
            let plan = ObservationScope()
            let first = try ObservationScope.$current.withValue(plan) { facts(try HostAccounts.reading(root)) }
            #expect(first.users == ["root", "admin"])
            #expect(first.key == "/home/admin/.ssh/authorized_keys")
            #expect(first.shell)

            // A person is added, the key removed, the shell no longer executable.
            try write(base + "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nadmin:x:1000:1000:admin:/home/admin:/bin/bash\n"
                      + "bob:x:1001:1001:bob:/home/bob:/bin/bash\n")
            #expect(unlink(base + "/home/admin/.ssh/authorized_keys") == 0)
            #expect(chmod(base + "/bin/bash", 0o644) == 0)

            let same = try ObservationScope.$current.withValue(plan) { facts(try HostAccounts.reading(root)) }
            #expect(same.users == first.users && same.key == first.key && same.shell == first.shell,
                    "the same plan judges its snapshot")
            let fresh: (users: [String], key: String?, shell: Bool) = (["root", "admin", "bob"], nil, false)
            let underLock = try ObservationScope.$current.withValue(plan) {
                let lock = try HostLock(root)
                return try withExtendedLifetime(lock) { facts(try HostAccounts.reading(root)) }
            }
            #expect(underLock.users == fresh.users && underLock.key == nil && !underLock.shell, "a fix reads afresh")
            let next = try ObservationScope.$current.withValue(ObservationScope()) { facts(try HostAccounts.reading(root)) }
            #expect(next.users == fresh.users && next.key == nil && !next.shell, "the next plan reads afresh")
            let outside = facts(try HostAccounts.reading(root))
            #expect(outside.users == fresh.users && outside.key == nil && !outside.shell, "outside a plan: read afresh")
        }
    }

    /// Accounts a plan keeps carry over to `after` (the pass's own account changes) and ask
    /// about each path by itself: a shell the pass gives, present but not executable, gives no
    /// login though the account's own shell was found executable just before.
    @Test func keptAnswersAreAskedPathByPath() async throws {
        try await withTemporaryDirectory { base in
            try makeHost(base, [FixtureAccount(name: "admin", uid: 1000, groups: ["sudo"], key: true)])
            try write(base + "/bin/zsh", "#!/bin/true\n", mode: 0o644)
            let root = try HostRoot(base)
            try ObservationScope.$current.withValue(ObservationScope()) {
                let accounts = try HostAccounts.reading(root)
                #expect(accounts.isLoginShell("/bin/bash"))
                #expect(!accounts.isLoginShell("/bin/zsh"), "present, not executable")
                let spec = ResourceSpec(subject: "admin", properties: [DesiredProperty("shell", "/bin/zsh")])
                let change = AllowedChange(resource: Resource(id: ResourceID(kind: "UserAccount", name: "admin"), spec: spec,
                                                              location: BulwarkCore.SourceLocation(file: "accounts.yaml", line: 1)),
                                           changes: [PropertyDrift(property: "shell", desired: "/bin/zsh", observed: "/bin/bash")])
                let after = try HostAccounts.reading(root).after([change])
                #expect(after.user("admin")?.shell == "/bin/zsh")
                #expect(after.noLoginPath(after.user("admin")!)?.contains("/bin/zsh") == true)
                #expect(accounts.noLoginPath(accounts.user("admin")!) == nil, "the plan's own accounts are unchanged")
            }
        }
    }

    /// Two roots in one plan keep their own accounts and key files.
    @Test func twoRootsInOnePlanKeepTheirOwn() async throws {
        try await withTemporaryDirectory { first in
            try await withTemporaryDirectory { second in
                try makeHost(first, [FixtureAccount(name: "admin", uid: 1000, groups: ["sudo"], key: true)])
                try makeHost(second, [FixtureAccount(name: "admin", uid: 1000, groups: ["sudo"], key: false),
                                      FixtureAccount(name: "bob", uid: 1001)])
                let a = try HostRoot(first), b = try HostRoot(second)
                try ObservationScope.$current.withValue(ObservationScope()) {
                    for _ in 0..<2 {
                        let one = facts(try HostAccounts.reading(a)), two = facts(try HostAccounts.reading(b))
                        #expect(one.users == ["admin"] && one.key == "/home/admin/.ssh/authorized_keys")
                        #expect(two.users == ["admin", "bob"] && two.key == nil)
                    }
                }
            }
        }
    }
}

/// An authorized_keys file read as sshd reads it: lines from their first character that is not
/// a space or a tab, blank lines and comments skipped, a key's type after its options.
@Suite struct AuthorizedKeysTests {
    @Test func blankLinesAndCommentsAreNoKeyAndAnIndentedKeyWithOptionsIs() async throws {
        try await withTemporaryDirectory { base in
            try makeHost(base, [FixtureAccount(name: "admin", uid: 1000, groups: ["sudo"], key: true)])
            let path = base + "/home/admin/.ssh/authorized_keys"
            let accounts = try HostAccounts(root: HostRoot(base))
            let admin = try #require(accounts.user("admin"))

            try write(path, "\n   \n\t\n# ssh-ed25519 AAAA old key\n  \t# ssh-rsa AAAA indented comment\n\u{A0}\u{A0}\n", mode: 0o600)
            #expect(accounts.authorizedKeys(admin) == nil, "blank lines and comments are no key")
            #expect(accounts.authorizedKeyTypes(admin).isEmpty)

            try write(path, "# keys\n \t from=\"10.0.0.1\",no-pty ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMSjTqz5s24GTHzS+4+9MR6z1oAyZ4k4c+pofQCnCb9Nmz4AARwkV6oIjKBDiL8UbIJR3+zO6yODUZMkzScunss= admin@laptop\n", mode: 0o600)
            #expect(accounts.authorizedKeys(admin) == "/home/admin/.ssh/authorized_keys", "an indented key after a comment")
            #expect(accounts.authorizedKeyTypes(admin) == ["ecdsa-sha2-nistp256"], "its type, after its options")
        }
    }
}
