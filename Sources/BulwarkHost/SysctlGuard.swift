internal import Foundation
internal import BulwarkCore
internal import CLinux

// MARK: - Sysctl

extension SysctlDriver {
    /// Parameters whose value names a program the kernel runs as root with every capability:
    /// `kernel.core_pattern` when it starts with `|` (at every crash, which any user can cause),
    /// `kernel.modprobe` (at a request for a module, which any user can trigger by opening a
    /// socket of an unloaded family), `kernel.hotplug` (at every device event) and
    /// `kernel.poweroff_cmd` (at an orderly power-off). Each takes arguments after the program
    /// except modprobe and hotplug, whose whole value is the path.
    static let programKeys: [String: (pipeOnly: Bool, arguments: Bool)] = [
        "kernel.core_pattern": (true, true), "kernel.modprobe": (false, false),
        "kernel.hotplug": (false, false), "kernel.poweroff_cmd": (false, true),
    ]

    /// Values that switch off a kernel defence against a local user becoming root: the floor,
    /// like FileMode's, that policy does not go below without a person's approval.
    static let floors: [String: (value: String, why: String)] = [
        "kernel.unprivileged_bpf_disabled": ("0", "would let every user load BPF programs into the kernel, the way in of many local root exploits"),
        "fs.protected_hardlinks": ("0", "would let users hard-link files they cannot read, such as etc/shadow, into folders they own"),
        "fs.protected_symlinks": ("0", "would let users' links in sticky folders such as /tmp send root's writes elsewhere"),
        "kernel.randomize_va_space": ("0", "would turn address space randomization off for every program, setuid ones included"),
        "fs.suid_dumpable": ("1", "would let users make setuid programs dump core, with root's memory, as themselves"),
    ]

    /// Blocks what the kernel would run as root from a place someone else can write (`programKeys`,
    /// `trustedProgram`), a value under a defence's floor (`floors`), and IPv6 disabled on an
    /// interface that has a global address now (`net.ipv6.conf.all` or that interface's
    /// `disable_ipv6 = 1`): whoever reaches the host over IPv6, over SSH included, would be cut
    /// off. `net.ipv6.conf.default` is left alone: it is for interfaces made later. Forwarding is
    /// not judged: turning it off is the baseline's hardening, and turning it on is a weakening
    /// (`HostWeakening.sysctl`), held for a second person.
    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async -> GuardVerdict {
        judging("kernel parameter") { try verdict(changes, root: try HostRoot(target: target)) }
    }

    func verdict(_ changes: [PropertyDrift], root: HostRoot) throws -> GuardVerdict {
        for change in changes {
            let key = change.property, value = change.desired
            if let (pipeOnly, arguments) = Self.programKeys[key] {
                var program = Substring(value)
                if pipeOnly {
                    guard program.hasPrefix("|") else { continue }
                    program = program.dropFirst().drop { $0 == " " || $0 == "\t" }
                }
                var rest: [Substring] = []
                if arguments {
                    rest = Array(program.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst())
                    program = program.prefix { $0 != " " && $0 != "\t" }
                }
                // An empty hotplug or poweroff helper runs nothing.
                guard !program.isEmpty || pipeOnly else { continue }
                // A helper that runs a program its arguments name is a launcher (`|/usr/bin/setarch x86_64 /bin/sh`).
                if let named = rest.first(where: { CommandTrust.namesAProgram(String($0)) }) {
                    return .block("\(key) = \(value) would have the kernel run \(named) through \(program) as root: a helper "
                                  + "that runs a program its arguments name is a launcher")
                }
                if let problem = try Self.untrustedProgram(String(program), root: root) {
                    return .block("\(key) = \(value) would have the kernel run \(program.isEmpty ? "nothing" : String(program)) as root "
                                  + "with every capability\(pipeOnly ? " at every crash, which any user can cause" : ""): \(problem)")
                }
            }
            if let floor = Self.floors[key], value == floor.value {
                return .block("\(key) = \(value) \(floor.why)")
            }
            let parts = key.split(separator: ".")
            if parts.count == 5, parts[0] == "net", parts[1] == "ipv6", parts[2] == "conf", parts[4] == "disable_ipv6",
               parts[3] != "default", value != "0" {
                // sysctl writes a dot inside an interface's name as `/`.
                let interface = parts[3] == "all" ? nil : Self.swapped(parts[3])
                if let (name, address) = try Self.globalIPv6(on: interface, root: root) {
                    return .block("\(key) = \(value) would take IPv6 off \(name), which has the address \(address) now: "
                                  + "whoever reaches the host over IPv6, over SSH included, would be cut off")
                }
            }
        }
        return .allow
    }

    /// Why the kernel should not run `path` as root, or nil: it must be an absolute path to a
    /// regular executable file inside the root, not a launcher (`CommandTrust.launchers`), and it and every
    /// folder on the way to it, as written and where links lead, owned by root and writable by
    /// neither group nor others. Under a root that is not `/` (a sandbox tree an unprivileged
    /// Bulwark made), its own files count as root's.
    static func untrustedProgram(_ path: String, root: HostRoot) throws -> String? {
        guard PathText.isAbsolute(path) else { return "it is not an absolute path" }
        // The one list of shells, interpreters and launchers (`CommandTrust.launchers`, which
        // ConfigFile's commands are judged by too), a version suffix aside (`python3.11`).
        let name = PathText.components(path).last ?? ""
        if CommandTrust.launchers.contains(CommandTrust.launcherName(name)) {
            return "\(name) runs whatever its arguments or the files they name say"
        }
        if let problem = try rootsAlone(path, root: root) { return problem }
        let real = try root.resolve(path)
        var info = stat()
        guard stat(real, &info) == 0, info.st_mode & FileType.mask == FileType.regular, info.st_mode & 0o111 != 0 else {
            return "\(path) is not an executable file"
        }
        return nil
    }

    /// Why `path` is not root's alone, or nil: it and every folder on the way to it, as written
    /// (a link there is replaced by whoever writes the folder it is in) and where links lead,
    /// must be owned by root and writable by neither group nor others. Under a root that is not
    /// `/` (a sandbox tree an unprivileged Bulwark made), its own files count as root's.
    /// `mayBeMissing`: a path that does not exist is fine where the folder it would be made in is
    /// root's alone (nobody else can make it), as a folder of a search PATH.
    static func rootsAlone(_ path: String, root: HostRoot, mayBeMissing: Bool = false) throws -> String? {
        let owners: Set<uid_t> = [0, root.path == "/" ? 0 : geteuid()]
        var missing = false
        func unsafe(_ full: String, _ shown: String) -> String? {
            var info = stat()
            guard stat(full, &info) == 0 else {
                missing = mayBeMissing
                return mayBeMissing ? nil : "\(shown) does not exist"
            }
            guard owners.contains(info.st_uid) else { return "\(shown) is owned by uid \(info.st_uid), not root" }
            guard info.st_mode & 0o022 == 0 else { return "group or others can write \(shown)" }
            return nil
        }
        let components = PathText.components(path)
        for count in 0...components.count {
            let shown = "/" + components.prefix(count).joined(separator: "/")
            if let problem = unsafe(try root.resolve(shown), shown) { return problem }
            if missing { return nil }
        }
        let real = try root.resolve(path)
        var folder = PathText.components(String(Substring(real.utf8.dropFirst(root.path == "/" ? 0 : root.path.utf8.count))))
        while !folder.isEmpty {
            folder.removeLast()
            let shown = "/" + folder.joined(separator: "/")
            if let problem = unsafe(try root.resolve(shown), "\(shown) (where \(path) really is)") { return problem }
        }
        return nil
    }

    /// An interface with a global IPv6 address (scope 0 in the root's `proc/net/if_inet6`), and
    /// that address: `interface`, or any but loopback when nil. Nil where there is none, or the
    /// kernel has no IPv6 (no such file).
    static func globalIPv6(on interface: String?, root: HostRoot) throws -> (name: String, address: String)? {
        guard let text = try FileIO.readText("proc/net/if_inet6", in: root) else { return nil }
        for line in text.split(separator: "\n") {
            // address (32 hex digits), index, prefix length, scope, flags, name.
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 6, fields[0].count == 32, fields[3] == "00", fields[5] != "lo" else { continue }
            if let interface, fields[5] != interface { continue }
            let groups = stride(from: 0, to: 32, by: 4).map { offset -> String in
                let start = fields[0].index(fields[0].startIndex, offsetBy: offset)
                let group = fields[0][start..<fields[0].index(start, offsetBy: 4)].drop { $0 == "0" }
                return group.isEmpty ? "0" : String(group)
            }
            return (String(fields[5]), groups.joined(separator: ":"))
        }
        return nil
    }
}
