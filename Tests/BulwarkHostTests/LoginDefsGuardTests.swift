@testable import BulwarkHost
import BulwarkCore
import BulwarkTestSupport
import Foundation
import Testing

/// Review (session 38): login.defs keys that choose what runs as root were applied as any other:
/// `USERDEL_CMD /tmp/evil` (userdel runs it as root), `ENV_SUPATH PATH=/tmp:…` (su gives root a
/// PATH whose first folder anyone writes). Each is blocked and recorded once; root-owned
/// programs and PATHs of root's folders (one not made yet, where only root can make it) go
/// through.
@Suite struct LoginDefsGuardTests {
    func host(_ root: String) throws {
        try write(root + "/etc/login.defs", "PASS_MAX_DAYS 99999\n")
        try write(root + "/usr/sbin/userdel-local", "#!/bin/true\n", mode: 0o755)
        try write(root + "/tmp/evil", "#!/bin/true\n", mode: 0o755)
        try FileManager.default.createDirectory(atPath: root + "/usr/bin", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/srv/tools", withIntermediateDirectories: true)
        chmod(root + "/tmp", 0o1777)
        chmod(root + "/srv/tools", 0o777)
    }

    @Test func whatWouldRunAsRootFromAPlaceOthersCanWriteIsBlocked() async throws {
        try await withTemporaryDirectory { root in
            try host(root)
            try await expectBlocked(root, resource("LoginDefs", "l", "USERDEL_CMD: /tmp/evil"),
                                    reason: "USERDEL_CMD /tmp/evil names a program userdel runs as root for every account it removes: "
                                        + "group or others can write /tmp")
            try await expectBlocked(root, resource("LoginDefs", "l", "USERDEL_CMD: /bin/sh"), reason: "sh runs whatever its arguments")
            try await expectBlocked(root, resource("LoginDefs", "l", "ENV_SUPATH: \"PATH=/tmp:/usr/bin\""),
                                    reason: "ENV_SUPATH PATH=/tmp:/usr/bin is the PATH su gives root: group or others can write /tmp")
            try await expectBlocked(root, resource("LoginDefs", "l", "ENV_ROOTPATH: \"/usr/bin:/srv/tools/bin\""),
                                    reason: "group or others can write /srv/tools")
            try await expectBlocked(root, resource("LoginDefs", "l", "ENV_SUPATH: \"LD_PRELOAD=/tmp/evil.so\""),
                                    reason: "it sets the variable LD_PRELOAD, not PATH")
            try await expectBlocked(root, resource("LoginDefs", "l", "ENV_PATH: \"PATH=/usr/bin::/bin\""),
                                    reason: "an empty entry is the folder the command is run in")
            try await expectBlocked(root, resource("LoginDefs", "l", "ENV_PATH: \"PATH=bin:/usr/bin\""),
                                    reason: "bin is relative to the folder the command is run in")
            #expect(try read(root + "/etc/login.defs") == "PASS_MAX_DAYS 99999\n")
        }
    }

    @Test func rootOwnedProgramsAndPathsAreApplied() async throws {
        try await withTemporaryDirectory { root in
            try host(root)
            try await expectApplied(root, resource("LoginDefs", "l", """
                USERDEL_CMD: /usr/sbin/userdel-local
                ENV_SUPATH: "PATH=/usr/local/sbin:/usr/bin"
                ENV_ROOTPATH: "/usr/bin"
                ENV_PATH: "PATH=/usr/bin:/usr/games"
                """))
            let text = try read(root + "/etc/login.defs")
            #expect(text.contains("\nUSERDEL_CMD\t/usr/sbin/userdel-local\n") && text.contains("\nENV_SUPATH\tPATH=/usr/local/sbin:/usr/bin\n"), "\(text)")
        }
    }
}
