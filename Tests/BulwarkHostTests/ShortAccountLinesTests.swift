import BulwarkCore
import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

/// Lines shorter than passwd(5) and shadow(5) make them: Bulwark writes only into a whole line
/// of the account it manages, says which line stops it, and keeps every other line, short or
/// not, byte for byte.
@Suite struct ShortAccountLinesTests {
    let passwd = "root:x:0:0:root:/root:/bin/bash\nguest:x:1001:1001:Guest:/home/guest:/bin/bash\n"
    let root0 = "root:$y$root-hash:19700:0:99999:7:::\n"

    /// guest's own shadow line with two to eight fields (of which glibc reads the old form of
    /// five, and eight ending in the expiry), and its passwd line with three: the resource fails
    /// naming the file and the line, and nothing is written. Eight fields with the expiry
    /// emptied was written, a line glibc skips: guest had no shadow entry left.
    @Test(arguments: ["guest:$y$h", "guest:$y$h:19700", "guest:$y$h:19700:0", "guest:$y$h:19700:0:99999",
                      "guest:$y$h:19700:0:99999:7", "guest:$y$h:19700:0:99999:7:", "guest:$y$h:19700:0:99999:7::20000",
                      "passwd guest:x:1001"])
    func aShortLineOfTheAccountIsRefusedNamingIt(_ line: String) async throws {
        try await withTemporaryDirectory { root in
            let inPasswd = line.hasPrefix("passwd ")
            let passwd = inPasswd ? "root:x:0:0:root:/root:/bin/bash\n\(line.dropFirst(7))\n" : passwd
            let shadow = root0 + (inPasswd ? "guest:$y$h:19700:0:99999:7::20000:" : line) + "\n"
            try write(root + "/etc/passwd", passwd)
            try write(root + "/etc/shadow", shadow, mode: 0o640)
            let (plan, outcome) = try await reconcile(try hostState(root: root, resource("UserAccount", "g", "name: guest\nlocked: true\nexpires: never")))
            let failures = plan.failures.map(\.message) + outcome.failed.compactMap(\.record.error)
            let file = inPasswd ? "etc/passwd" : "\(root)/etc/shadow"
            #expect(failures.count == 1 && failures.allSatisfy { $0.contains("\(file): account guest's line in") && $0.contains("(line 2)") },
                    "\(failures)")
            #expect(try read(root + "/etc/shadow") == shadow && read(root + "/etc/passwd") == passwd)
        }
    }

    /// Other accounts' short lines (passwd lines of two, three and five fields, shadow lines of
    /// two to eight, one CRLF, the last without a line feed) do not stop a fix of guest's whole
    /// lines, and stay byte for byte.
    @Test func otherAccountsShortLinesStayByteForByte() async throws {
        try await withTemporaryDirectory { root in
            let others = "p2:x\np3:x:1002\np5:x:1003:1003:Five\n"
            let shortShadow = "s2:h\ns3:h:1\ns4:h:1:0\ns5:h:1:0:99999\ns6:h:1:0:99999:7\r\ns7:h:1:0:99999:7:\ns8:h:1:0:99999:7::20000"
            try write(root + "/etc/passwd", passwd + others)
            try write(root + "/etc/shadow", root0 + "guest:$y$h:19700:0:99999:7::20000:\n" + shortShadow, mode: 0o640)
            try write(root + "/usr/sbin/nologin", "#!/bin/true\n", mode: 0o755)
            let (_, outcome) = try await reconcile(try hostState(root: root, resource("UserAccount", "g",
                                                                                      "name: guest\nlocked: true\nshell: /usr/sbin/nologin\nexpires: never")))
            #expect(outcome.entries.first?.record.result == .verified, "\(outcome.entries.first?.record.error ?? "")")
            #expect(try read(root + "/etc/passwd") == passwd.replacingOccurrences(of: "/home/guest:/bin/bash", with: "/home/guest:/usr/sbin/nologin") + others)
            #expect(try read(root + "/etc/shadow") == root0 + "guest:!$y$h:19700:0:99999:7:::\n" + shortShadow)
        }
    }

    /// A fix of guest's shell and lock whose shadow line Bulwark will not write (eight fields):
    /// refused, recorded failed naming the line, and passwd is left as it was too. Both files
    /// are made before the first is renamed into place (the rename is the fix's first change,
    /// marked tried there); passwd was written first before, and the failed fix had changed the
    /// shell. The twin, both lines whole, is `otherAccountsShortLinesStayByteForByte`.
    @Test func aShadowLineRefusedLeavesPasswdAsItWas() async throws {
        try await withTemporaryDirectory { root in
            let shadow = root0 + "guest:$y$h:19700:0:99999:7::20000\n"
            try write(root + "/etc/passwd", passwd)
            try write(root + "/etc/shadow", shadow, mode: 0o640)
            try write(root + "/usr/sbin/nologin", "#!/bin/true\n", mode: 0o755)
            let (_, outcome) = try await reconcile(try hostState(root: root, resource("UserAccount", "g",
                                                                                      "name: guest\nlocked: true\nshell: /usr/sbin/nologin")))
            let failures = outcome.failed.compactMap(\.record.error)
            #expect(failures.count == 1 && failures.allSatisfy { $0.contains("account guest's line in shadow (line 2) has 8 fields") },
                    "\(failures)")
            #expect(try read(root + "/etc/passwd") == passwd, "the shell is not changed either")
            #expect(try read(root + "/etc/shadow") == shadow)
        }
    }
}
