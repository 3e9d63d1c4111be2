import BulwarkCore
@testable import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

/// Fuzzes the host file parsers through the drivers, on a real root: a mutated `sshd_config`,
/// `passwd`, `shadow`, `group`, `login.defs` or `sysctl.d` file is observed, fixed and observed
/// again. Whatever the file holds: no trap; a refusal is a `HostError` on one line; a fix either
/// fails with a `HostError` or leaves every line it did not mean to change byte for byte, adds no
/// control or line-break character, never adds a passwd or shadow field, and reads back as the
/// desired value (parse → render → parse).
struct HostFuzzBench {
    let root: String
    let state: DesiredState
    let target: Target

    /// A root in /dev/shm when there is one (writes are fsynced; tmpfs makes that free).
    static func makeRoot() throws -> String {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        var template = Array((base + "/bulwark-fuzz-XXXXXX").utf8CString)
        guard mkdtemp(&template) != nil else { throw SupportError("mkdtemp failed") }
        return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    init(_ manifests: String) throws {
        root = try Self.makeRoot()
        state = try hostState(root: root, manifests)
        target = try #require(state.targets["sandbox"])
    }

    func remove() { try? FileManager.default.removeItem(atPath: root) }

    func resource(_ name: String) throws -> Resource {
        try #require(state.resources.values.first { $0.id.name == name })
    }

    func put(_ relative: String, _ bytes: [UInt8], mode: Int = 0o644) throws {
        let path = root + "/" + relative
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: path)
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes), attributes: [.posixPermissions: mode]) else {
            throw SupportError("cannot write \(path)")
        }
    }

    func bytes(_ relative: String) -> [UInt8] {
        FileManager.default.contents(atPath: root + "/" + relative).map(Array.init) ?? []
    }

    /// Observes, fixes what drifted, observes again. Returns the outcome's signature, or throws
    /// when a property does not hold. `checkFile` judges the rendered file against the original.
    func converge(_ driver: () -> some ResourceDriver, _ resource: Resource,
                  file: String, checkFile: ([UInt8], [UInt8], [PropertyDrift]) throws -> Void) async throws -> String {
        let before = bytes(file)
        let observation: Observation
        do {
            observation = try await driver().observe(resource, on: target)
        } catch {
            return try refusal(error, "observe")
        }
        let changes = resource.spec.properties.compactMap { property -> PropertyDrift? in
            guard let observed = observation.values[property.name] else { return nil }  // does not apply here
            return observed == property.value ? nil : PropertyDrift(property: property.name, desired: property.value, observed: observed)
        }
        guard !changes.isEmpty else { return "in sync" }
        // The guard reads the same files: it judges or blocks, never traps.
        _ = await driver().assess(changes, to: resource, on: target)
        do {
            try await driver().apply(changes, to: resource, on: target)
        } catch {
            try fuzzRequire(bytes(file) == before, "a failed fix changed \(file)")
            return try refusal(error, "apply")
        }
        try checkFile(before, bytes(file), changes)
        let again = try await driver().observe(resource, on: target)
        for change in changes {
            try fuzzRequire(again.values[change.property] == .some(change.desired),
                            "\(change.property) reads back as \(String(describing: again.values[change.property])) after the fix to \(change.desired)")
        }
        return "fixed \(changes.map(\.property).sorted())"
    }

    func refusal(_ error: any Error, _ step: String) throws -> String {
        guard let error = error as? HostError else { throw FuzzPropertyFailure("\(step) threw \(type(of: error)): \(error)") }
        try fuzzRequire(!error.description.unicodeScalars.contains(where: isLineBreaking),
                        "a message with a control or line break: \(error.description.debugDescription)")
        try fuzzRequire(error.description.unicodeScalars.count <= 2048 + 1, "a \(error.description.unicodeScalars.count)-scalar message")
        return "\(step) refused: " + String(error.message.unicodeScalars.filter { !("0"..."9").contains($0) }.prefix(40))
    }
}

// MARK: - File properties

enum RenderedFile {
    static func lines(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        var result: [ArraySlice<UInt8>] = []
        var start = bytes.startIndex
        for index in bytes.indices where bytes[index] == 0x0A {
            result.append(bytes[start...index])
            start = index + 1
        }
        if start < bytes.endIndex { result.append(bytes[start...]) }
        return result
    }

    /// Line-breaking and control scalars other than line endings and the tab (a separator
    /// login.defs writes), counting invalid bytes as nothing.
    static func breaks(_ line: ArraySlice<UInt8>) -> Int {
        var content = Array(line)
        while content.last == 0x0A || content.last == 0x0D { content.removeLast() }
        return String(decoding: content, as: UTF8.self).unicodeScalars.filter { isLineBreaking($0) && $0 != "\t" }.count
    }

    /// Every original line is kept byte for byte and in place, except at most `edited` lines
    /// (changed or commented out in place) and one block of at most `added` new lines; the
    /// rendered file has no more control or line-break characters than the original.
    static func check(before: [UInt8], after: [UInt8], edited: Int, added: Int) throws {
        let old = lines(before)
        let new = lines(after)
        let inserted = new.count - old.count
        try fuzzRequire(inserted >= 0 && inserted <= added, "\(old.count) lines became \(new.count)")
        // A last line without its newline gets one when a line is appended after it.
        func same(_ a: ArraySlice<UInt8>, _ b: ArraySlice<UInt8>) -> Bool {
            a.elementsEqual(b) || (a.last != 0x0A && b.last == 0x0A && b.dropLast().elementsEqual(a))
        }
        // The fewest changed lines over every place the new block could be.
        var before = [0]
        for i in old.indices { before.append(before[i] + (same(old[i], new[i]) ? 0 : 1)) }
        var after = Array(repeating: 0, count: old.count + 1)
        for i in old.indices.reversed() { after[i] = after[i + 1] + (same(old[i], new[i + inserted]) ? 0 : 1) }
        let changed = (0...old.count).map { before[$0] + after[$0] }.min() ?? 0
        try fuzzRequire(changed <= edited, "\(changed) original lines changed; \(edited) were meant to")
        try fuzzRequire(new.map(breaks).reduce(0, +) <= old.map(breaks).reduce(0, +), "the fix added a control or line-break character")
    }

    /// The colon-separated field count of each line of a passwd-like file.
    static func fieldCounts(_ bytes: [UInt8]) -> [Int] {
        lines(bytes).map { $0.filter { $0 == 0x3A }.count }
    }
}

// MARK: - Seeds

enum HostSeeds {
    static let sshd = [
        """
        # Hardened
        Include /etc/ssh/sshd_config.d/*.conf
        Port 22
        PermitRootLogin yes
        PasswordAuthentication yes
        maxauthtries=6
        ClientAliveInterval 1m30s
        Banner none
        Match User alice
            PasswordAuthentication no

        """,
        "permitrootlogin prohibit-password\r\nPermitRootLogin yes\r\nChallengeResponseAuthentication no\r\nBanner \"/etc/issue\"\r\n",
        "\tPermitRootLogin\t=\tno # comment\nMatch all\nMaxAuthTries 2\n# Added by Bulwark\nBanner /x",
        "# caf\u{E9} \u{FF} comment\nLoginGraceTime 9223372036854775807w\nClientAliveInterval 99999999999999999999\n",
    ]
    static let sshdDictionary = ["PermitRootLogin", "MaxAuthTries", "Banner", "ClientAliveInterval", "Match ", "Include ",
                                 "# Added by Bulwark\n", "=", " ", "\t", "\"", "\n", "\r\n", "challengeresponseauthentication"]

    static let passwd = [
        "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\nalice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n",
        "alice:x:1000:1000::/home/alice:/bin/sh:extra:fields\r\nroot:x:0:0::/root:\n+::::::\n",
        "# comment\nalice:x:4294967296:-1::/home/alice:/bin/sh\nbob:x:1001:1001::/home/bob",
    ]
    static let shadow = [
        "root:*:19000:0:99999:7:::\nalice:$6$salt$hash:19000:0:99999:7:::\n",
        "alice:!$6$x:19000:0:99999:7::9223372036854775807:\nroot:!::::::\n",
        "alice::19000::::::\r\nalice2:*:1:2:3:4:5:-99999999:\n",
    ]
    static let group = [
        "root:x:0:\nsudo:x:27:alice,bob\nalice:x:1000:\n",
        "sudo:x:27: alice , ,\nwheel:x:4294967295:alice\nadmin::x:\n",
    ]
    static let accountDictionary = [":", "::", "alice", "root", "!", "*", "$6$", "sudo", "wheel", "/bin/sh", "\n", "\r\n", "0"]

    static let loginDefs = [
        "# login.defs\nMAIL_DIR /var/mail\nPASS_MAX_DAYS\t99999\nPASS_MIN_DAYS 0\nUMASK 022\nUID_MIN 1000\n",
        "PASS_MAX_DAYS 30\r\nPASS_MAX_DAYS 60\r\nUMASK 0777777777777\r\nUID_MIN 9223372036854775807",
        "  PASS_MAX_DAYS   7   # trailing\n#PASS_MAX_DAYS 1\nPASS_MAX_DAYS",
    ]
    static let loginDefsDictionary = ["PASS_MAX_DAYS", "UMASK", "UID_MIN", "GID_MIN", " ", "\t", "#", "\n", "\r\n"]

    static let sysctl = [
        "kernel.dmesg_restrict = 0\nnet.ipv4.ip_forward=1\n# comment\n; comment\n",
        "-kernel/dmesg_restrict=0\r\n net.ipv4.ip_forward = 1 2 3\nkernel.dmesg_restrict",
        "kernel.dmesg_restrict = 18446744073709551616\nkernel.dmesg_restrict =\n=\n",
    ]
    static let sysctlDictionary = ["kernel.dmesg_restrict", "net.ipv4.ip_forward", "kernel/dmesg_restrict", "=", " = ", "-", "#", ";", "\n"]
}

// MARK: - The tests

@Suite struct HostParserFuzzTests {
    static let ci = 150

    func expectClean(_ summary: Fuzzer.Summary) {
        #expect(summary.failures == 0, "\(summary)\n\(summary.messages.joined(separator: "\n"))")
        #expect(summary.inputs > 0)
    }

    // sshd_config

    func sshdBench() throws -> HostFuzzBench {
        try HostFuzzBench(resource("SSHDConfig", "base", """
            PermitRootLogin: "no"
            MaxAuthTries: 3
            ClientAliveInterval: 5m
            Banner: /etc/issue.net
            """))
    }

    func sshdCheck(_ bench: HostFuzzBench) throws -> ([UInt8]) async throws -> String {
        let resource = try bench.resource("base")
        return { input in
            try bench.put("etc/ssh/sshd_config", input, mode: 0o600)
            return try await bench.converge({ SSHDConfigDriver(validator: SSHDValidator(executable: nil)) }, resource,
                                            file: "etc/ssh/sshd_config") { before, after, changes in
                // A keyword Bulwark adds comes with its marker and a blank line before a Match block.
                try RenderedFile.check(before: before, after: after, edited: changes.count, added: changes.count + 2)
            }
        }
    }

    @Test func sshdConfigUnderMutation() async throws {
        let bench = try sshdBench()
        defer { bench.remove() }
        let summary = await Fuzzer(target: "sshd_config", ciIterations: Self.ci, dictionary: HostSeeds.sshdDictionary, maxSize: 16 << 10)
            .run(seeds: HostSeeds.sshd.map { Array($0.utf8) }, check: try sshdCheck(bench))
        expectClean(summary)
    }

    // passwd, shadow, group

    func accountBench() throws -> HostFuzzBench {
        let bench = try HostFuzzBench(resource("UserAccount", "alice", "name: alice\nlocked: true\nshell: /usr/sbin/nologin\nexpires: 2030-01-01"))
        try bench.put("usr/sbin/nologin", Array("#!/bin/sh\n".utf8), mode: 0o755)
        try bench.put("bin/sh", Array("#!/bin/sh\n".utf8), mode: 0o755)
        try bench.put("etc/shells", Array("/bin/sh\n/bin/bash\n".utf8))
        return bench
    }

    /// A fix of alice's account with one of the three files mutated and the others as seeded.
    func accountCheck(_ bench: HostFuzzBench, fuzzing file: String) throws -> ([UInt8]) async throws -> String {
        let resource = try bench.resource("alice")
        return { input in
            let files = ["etc/passwd": HostSeeds.passwd[0], "etc/shadow": HostSeeds.shadow[0], "etc/group": HostSeeds.group[0]]
            for (path, text) in files { try bench.put(path, path == file ? input : Array(text.utf8), mode: path == "etc/shadow" ? 0o640 : 0o644) }
            let passwd = bench.bytes("etc/passwd")
            let shadow = bench.bytes("etc/shadow")
            return try await bench.converge({ UserAccountDriver() }, resource, file: file) { _, _, _ in
                for (path, before) in [("etc/passwd", passwd), ("etc/shadow", shadow)] {
                    let after = bench.bytes(path)
                    // One line changed in place: no line and no field added anywhere.
                    try RenderedFile.check(before: before, after: after, edited: 1, added: 0)
                    // passwd's shell is the rest of its line after the sixth `:` (as glibc reads it),
                    // and a shell fix replaces all of it: the one line it edits has seven fields.
                    let (counts, countsAfter) = (RenderedFile.fieldCounts(before), RenderedFile.fieldCounts(after))
                    let changed = zip(counts, countsAfter).filter { $0 != $1 }
                    try fuzzRequire(counts.count == countsAfter.count
                                    && (changed.isEmpty || path == "etc/passwd" && changed.count == 1 && changed[0].1 == 6 && changed[0].0 > 6),
                                    "\(path): fields per line changed from \(counts) to \(countsAfter)")
                }
            }
        }
    }

    @Test(arguments: ["etc/passwd", "etc/shadow", "etc/group"])
    func accountFilesUnderMutation(file: String) async throws {
        let bench = try accountBench()
        defer { bench.remove() }
        let seeds = file == "etc/passwd" ? HostSeeds.passwd : file == "etc/shadow" ? HostSeeds.shadow : HostSeeds.group
        let target = String(file.dropFirst(4))
        let summary = await Fuzzer(target: target, ciIterations: Self.ci, dictionary: HostSeeds.accountDictionary, maxSize: 16 << 10)
            .run(seeds: seeds.map { Array($0.utf8) }, check: try accountCheck(bench, fuzzing: file))
        expectClean(summary)
    }

    // login.defs

    func loginDefsBench() throws -> HostFuzzBench {
        try HostFuzzBench(resource("LoginDefs", "l", "PASS_MAX_DAYS: 90\nUMASK: \"027\"\nENCRYPT_METHOD: SHA512"))
    }

    func loginDefsCheck(_ bench: HostFuzzBench) throws -> ([UInt8]) async throws -> String {
        let resource = try bench.resource("l")
        return { input in
            try bench.put("etc/login.defs", input)
            return try await bench.converge({ LoginDefsDriver() }, resource, file: "etc/login.defs") { before, after, changes in
                // A changed key's line, and any other line naming the key (in any case) commented out.
                let naming = RenderedFile.lines(before).filter { line in
                    let upper = String(decoding: line.map { (97...122).contains($0) ? $0 - 32 : $0 }, as: UTF8.self)
                    return changes.contains { upper.contains($0.property) }
                }.count
                try RenderedFile.check(before: before, after: after, edited: changes.count + naming, added: changes.count)
            }
        }
    }

    @Test func loginDefsUnderMutation() async throws {
        let bench = try loginDefsBench()
        defer { bench.remove() }
        let summary = await Fuzzer(target: "login.defs", ciIterations: Self.ci, dictionary: HostSeeds.loginDefsDictionary, maxSize: 16 << 10)
            .run(seeds: HostSeeds.loginDefs.map { Array($0.utf8) }, check: try loginDefsCheck(bench))
        expectClean(summary)
    }

    // sysctl

    func sysctlBench() throws -> HostFuzzBench {
        let bench = try HostFuzzBench(resource("Sysctl", "k", "kernel.dmesg_restrict: 1\nnet.ipv4.ip_forward: 0"))
        return bench
    }

    func sysctlCheck(_ bench: HostFuzzBench) throws -> ([UInt8]) async throws -> String {
        let resource = try bench.resource("k")
        return { input in
            try? FileManager.default.removeItem(atPath: bench.root + "/etc")
            try bench.put("proc/sys/kernel/dmesg_restrict", Array("0\n".utf8))
            try bench.put("proc/sys/net/ipv4/ip_forward", Array("1\n".utf8))
            try bench.put("etc/sysctl.d/10-local.conf", input)
            return try await bench.converge({ SysctlDriver() }, resource, file: "etc/sysctl.d/10-local.conf") { before, after, _ in
                // Bulwark's own file is separate: here a line is only ever commented out in place.
                try RenderedFile.check(before: before, after: after, edited: RenderedFile.lines(before).count, added: 0)
                try fuzzRequire(RenderedFile.lines(after).count == RenderedFile.lines(before).count, "lines added or removed")
            }
        }
    }

    @Test func sysctlUnderMutation() async throws {
        let bench = try sysctlBench()
        defer { bench.remove() }
        let summary = await Fuzzer(target: "sysctl", ciIterations: Self.ci, dictionary: HostSeeds.sysctlDictionary, maxSize: 16 << 10)
            .run(seeds: HostSeeds.sysctl.map { Array($0.utf8) }, check: try sysctlCheck(bench))
        expectClean(summary)
    }

    // The corpus

    @Test(arguments: ["sshd_config", "passwd", "shadow", "group", "login.defs", "sysctl"])
    func theCorpusOfEarlierFindingsStillHolds(target: String) async throws {
        let bench: HostFuzzBench
        let check: ([UInt8]) async throws -> String
        switch target {
        case "sshd_config": bench = try sshdBench(); check = try sshdCheck(bench)
        case "login.defs": bench = try loginDefsBench(); check = try loginDefsCheck(bench)
        case "sysctl": bench = try sysctlBench(); check = try sysctlCheck(bench)
        default: bench = try accountBench(); check = try accountCheck(bench, fuzzing: "etc/" + target)
        }
        defer { bench.remove() }
        let (count, failures) = try await Fuzzer.replayCorpus(target, check: check)
        #expect(count > 0, "Tests/Corpus/\(target) holds inputs")
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }
}
