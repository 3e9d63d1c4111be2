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
            // As the kernel reads it: `0x0`, `-0` and `00` are the floor 0 as much as `0` is.
            if let floor = Self.floors[key], (Self.kernelDecimal(value) ?? value) == floor.value {
                let read = value == floor.value ? "" : ", which the kernel reads as \(floor.value),"
                return .block("\(key) = \(quotedForMessage(value))\(read) \(floor.why)")
            }
            if let problem = try starves(key, value, changes, root: root) {
                return .block("\(key) = \(quotedForMessage(value)) \(problem)")
            }
            let parts = key.split(separator: ".")
            if parts.count == 5, parts[0] == "net", parts[1] == "ipv6", parts[2] == "conf", parts[4] == "disable_ipv6",
               parts[3] != "default", Self.kernelDecimal(value) != "0" {
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

// MARK: - Sysctl: what would starve the host or cut it off

extension SysctlDriver {
    /// Counts under which the host cannot start a process, open a file or reach the network,
    /// each with what would happen (the value in words) and why the floor is where it is. Far
    /// under any value a hardening guide or the kernel itself chooses: a guide raises these, and
    /// the kernel's own smallest defaults are the floors.
    static let minimums: [String: (floor: UInt64, effect: @Sendable (String) -> String)] = [
        // NR_FILE, the smallest default the kernel picks (a tenth of memory in KiB, at least 8192).
        "fs.file-max": (8192, { "would let the whole host hold at most \($0) open files: past them every process not running as root "
                                + "fails to open one, so no one but root could log in or start a program" }),
        // Below the soft limit every process starts with, pam_limits' and systemd's setrlimit fail.
        "fs.nr_open": (1024, { "would cap every process's open files at \($0): pam_limits and systemd setting the usual limit of 1024 "
                               + "or more would fail, and with them logins, sshd sessions included, and service starts" }),
        // 4096: PID_MAX_DEFAULT of a CONFIG_BASE_SMALL kernel, the smallest any kernel build uses.
        "kernel.pid_max": (4096, { "would leave at most \($0) process ids, which threads use too: once they are taken no new process "
                                   + "could start, sshd sessions included" }),
        // The threads of an idle server's daemons alone come to several hundred.
        "kernel.threads-max": (1024, { "would let at most \($0) threads run on the whole host: once they run no new process could start, "
                                       + "sshd sessions included" }),
        // DEFAULT_MAX_MAP_COUNT: guides raise it (Elasticsearch asks for 262144), none lowers it.
        "vm.max_map_count": (65530, { "would let each process map at most \($0) memory regions, fewer than the kernel's default 65530: "
                                      + "allocations past it fail, and under a few dozen no program could start, sshd sessions included" }),
        // 0 is no limit. 4096: the table a 512 MiB host gets by default.
        "net.netfilter.nf_conntrack_max": (4096, { "would let the connection tracker hold at most \($0) connections: once it is full "
                                                   + "every new connection through the firewall is dropped, SSH included" }),
        "net.nf_conntrack_max": (4096, { "would let the connection tracker hold at most \($0) connections: once it is full "
                                         + "every new connection through the firewall is dropped, SSH included" }),
        // The kernel's default is 64; guides raise it (128, 255). The internet's longest paths are near 30 hops.
        "net.ipv4.ip_default_ttl": (32, { "would let the host's IPv4 packets cross at most \($0) routers (the kernel's default is 64): "
                                          + "its replies would die on the way to whoever is further away, SSH included" }),
        // The kernel's default is 4096; under pty.reserve (1024) another devpts instance (a container's) gets none.
        "kernel.pty.max": (1024, { "would let at most \($0) terminals be open on the whole host: past them no login gets one, "
                                   + "interactive SSH sessions included" }),
        // systemd services with PrivateUsers= (and sandboxes, rootless containers) need a user namespace each, root's included.
        "user.max_user_namespaces": (1, { _ in "would forbid user namespaces to everyone, root included: every systemd service "
                                          + "with PrivateUsers= and every sandbox or rootless container would fail to start" }),
        // 128: the kernel's default until 5.4 (4096 since). Past it, connections a busy daemon has not accepted yet are dropped.
        "net.core.somaxconn": (128, { "would cap every listening socket's queue at \($0) connections not yet accepted (the kernel's "
                                      + "default is 4096, and was 128): a burst of connections, a scanner's included, would have "
                                      + "new ones dropped, SSH included" }),
    ]

    /// Why `key = value`, as the pass leaves the host, would starve it or cut it off, or nil:
    /// a count under its floor (`minimums`, where 0 means no limit for the connection tracker),
    /// memory the kernel would keep from every program (`vm.min_free_kbytes`, huge pages), a
    /// strict overcommit limit under what is committed now (`vm.overcommit_memory` 2 and its
    /// ratio or kbytes, judged as the pair ends: this change, else the host's runtime value,
    /// else the sysctl files'), the network cut short (`starvedNetwork`), and `arp_ignore` 8
    /// (no ARP replies at all). Numbers are read as
    /// the kernel reads them (`0x10`, `020` and `16` are sixteen; only the first word counts);
    /// one the kernel would refuse or ignore (a negative count, more than 64 bits, a word) is
    /// not judged here: its write fails.
    func starves(_ key: String, _ value: String, _ changes: [PropertyDrift], root: HostRoot) throws -> String? {
        if let minimum = Self.minimums[key], let count = Self.kernelCount(value), count < minimum.floor,
           count != 0 || !key.hasSuffix("conntrack_max") {
            return minimum.effect(String(count))
        }
        switch key {
        case "vm.min_free_kbytes", "vm.nr_hugepages", "vm.nr_hugepages_mempolicy":
            return try reservedMemory(changes, root: root)
        case "vm.overcommit_memory", "vm.overcommit_ratio", "vm.overcommit_kbytes":
            return try commitLimit(key, changes, root: root)
        default:
            break
        }
        if let problem = Self.starvedNetwork(key, value) { return problem }
        let parts = key.split(separator: ".")
        if parts.count == 5, parts[0] == "net", parts[1] == "ipv4", parts[2] == "conf", parts[4] == "arp_ignore",
           parts[3] != "lo", Self.kernelCount(value) == 8 {
            let which = switch parts[3] {
            case "all": "every interface"
            case "default": "every interface made from now on (at the next boot, each one made after sysctl.d is read)"
            default: Self.swapped(parts[3])
            }
            return "would have \(which) answer no ARP request: no machine on its network could reach the host over IPv4, SSH included"
        }
        return nil
    }

    /// Why a network parameter of several numbers, or per interface, would cut the host off or
    /// starve it, or nil: an IPv6 hop limit under 32 (as `net.ipv4.ip_default_ttl`'s floor);
    /// TCP's memory (`tcp_mem`, pages) with a most under 1024 pages; a socket's TCP buffer
    /// (`tcp_rmem`, `tcp_wmem`, bytes) with a default or most under 4096 bytes, less than one
    /// page; fewer than 256 local ports for outgoing connections (`ip_local_port_range`).
    /// Numbers as the kernel reads them; a value it would refuse is not judged (its write fails).
    static func starvedNetwork(_ key: String, _ value: String) -> String? {
        let counts = value.split(whereSeparator: { $0 == " " || $0 == "\t" }).map { kernelCount(String($0)) }
        guard !counts.isEmpty, counts.allSatisfy({ $0 != nil }) else { return nil }
        let numbers = counts.map { $0 ?? 0 }
        let parts = key.split(separator: ".")
        if parts.count == 5, parts[0] == "net", parts[1] == "ipv6", parts[2] == "conf", parts[3] != "lo", parts[4] == "hop_limit",
           numbers[0] < 32 {
            let which = switch parts[3] {
            case "all": "every interface"
            case "default": "every interface made from now on"
            default: swapped(parts[3])
            }
            return "would let IPv6 packets from \(which) cross at most \(numbers[0]) routers (the kernel's default is 64): "
                + "replies would die on the way to whoever is further away, SSH included"
        }
        switch key {
        case "net.ipv4.tcp_mem" where numbers.count == 3 && numbers[2] < 1024:
            return "would let all of TCP on the host use at most \(numbers[2]) pages of memory: past them every TCP connection "
                + "stalls and new ones fail, SSH included"
        case "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem":
            guard numbers.count == 3, min(numbers[1], numbers[2]) < 4096 else { return nil }
            return "would give each TCP socket a \(key.hasSuffix("rmem") ? "receive" : "send") buffer of \(min(numbers[1], numbers[2])) "
                + "bytes, less than one page: connections would crawl or stall, SSH included"
        case "net.ipv4.ip_local_port_range" where numbers.count == 2 && numbers[0] <= numbers[1] && numbers[1] - numbers[0] < 255:
            return "would leave the host \(numbers[1] - numbers[0] + 1) local ports for outgoing connections: once they are taken "
                + "(a few DNS queries and connections at once) it could open no more, name lookups and logins through a directory included"
        default:
            return nil
        }
    }

    /// A number as the kernel reads one written to `proc/sys` (`proc_get_long`): the first word
    /// of `value` (blanks C's `isspace` knows around it skipped), a leading `-`, and a leading `+`
    /// as the `kstrto*` parsers some parameters use take it, then base 0: `0x` or `0X`
    /// hexadecimal, a leading `0` octal, else decimal. `0x0`, `-0`, `00` and `+0` are all 0.
    /// Nil for a word that is no number (a path, `on`, `0x`, `08`) or of more than 64 bits.
    static func kernelNumber(_ value: some StringProtocol) -> (negative: Bool, magnitude: UInt64)? {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" || $0 == "\u{0B}" || $0 == "\u{0C}" }
        guard let word = value.split(whereSeparator: blank).first else { return nil }
        var digits = Substring(word), negative = false, radix: UInt64 = 10
        if digits.hasPrefix("-") || digits.hasPrefix("+") {
            negative = digits.hasPrefix("-")
            digits = digits.dropFirst()
        }
        if digits.hasPrefix("0x") || digits.hasPrefix("0X") {
            digits = digits.dropFirst(2)
            radix = 16
        } else if digits.count > 1, digits.hasPrefix("0") {
            digits = digits.dropFirst()
            radix = 8
        }
        guard !digits.isEmpty else { return nil }
        var result: UInt64 = 0
        for character in digits {
            guard character.isASCII, let digit = character.hexDigitValue, UInt64(digit) < radix else { return nil }
            let (shifted, overflow) = result.multipliedReportingOverflow(by: radix)
            let (sum, carry) = shifted.addingReportingOverflow(UInt64(digit))
            guard !overflow, !carry else { return nil }
            result = sum
        }
        return (negative && result != 0, result)
    }

    /// `value`'s first word as the kernel reads it, in decimal (`0x0`, `-0` and `00` are `0`,
    /// `-0x1` is `-1`): the form the floors, the strengths of `HostWeakening` and the in-sync
    /// comparison judge a number in. Nil where it is no number (`kernelNumber`).
    static func kernelDecimal(_ value: some StringProtocol) -> String? {
        kernelNumber(value).map { $0.negative ? "-\($0.magnitude)" : "\($0.magnitude)" }
    }

    /// A count as the kernel reads one (`kernelNumber`). Nil for a negative number (`-0` is 0),
    /// one of more than 64 bits or anything else: the kernel refuses those (a negative unsigned
    /// count it ignores).
    static func kernelCount(_ value: String) -> UInt64? {
        kernelNumber(value).flatMap { $0.negative ? nil : $0.magnitude }
    }

    /// Whether the kernel reads `a` and `b` as the same value: word by word (a parameter of
    /// several numbers, `32768 60999`), each the same text or the same number (`0x2` and `2`).
    /// What `proc/sys` shows is the number in decimal, whatever form was written.
    static func kernelReadsSame(_ a: String, _ b: String) -> Bool {
        if a == b { return true }
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        let (left, right) = (a.split(whereSeparator: blank), b.split(whereSeparator: blank))
        return left.count == right.count && zip(left, right).allSatisfy { x, y in
            x == y || (kernelDecimal(x).map { $0 == kernelDecimal(y) } ?? false)
        }
    }

    /// What the root's `proc/meminfo` says, in bytes (nil where it does not say).
    struct MemoryInfo {
        var total: UInt64?
        var swap: UInt64 = 0
        var hugepageSize: UInt64 = 2 << 20
        var committed: UInt64?
    }

    /// The target's memory, from `proc/meminfo` under its root (the machine's own only where the
    /// root is `/`); nil where the root has none.
    static func memory(_ root: HostRoot) throws -> MemoryInfo? {
        guard let text = try FileIO.readText("proc/meminfo", in: root) else { return nil }
        var info = MemoryInfo()
        for line in text.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == ":" })
            guard fields.count >= 2, let kib = UInt64(fields[1]) else { continue }
            let bytes = saturating(kib, times: 1024)
            switch fields[0] {
            case "MemTotal": info.total = bytes
            case "SwapTotal": info.swap = bytes
            case "Hugepagesize": info.hugepageSize = bytes
            case "Committed_AS": info.committed = bytes
            default: break
            }
        }
        return info
    }

    static func saturating(_ a: UInt64, times b: UInt64) -> UInt64 {
        let (product, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? .max : product
    }

    static func saturating(_ a: UInt64, plus b: UInt64) -> UInt64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : sum
    }

    static func mebibytes(_ bytes: UInt64) -> String { "\(bytes >> 20) MiB" }

    /// `key`'s value once the pass is made: the last of `changes` that sets it, else the host's
    /// runtime value, else the sysctl files' (nil where none has it).
    func ending(_ key: String, _ changes: [PropertyDrift], root: HostRoot) throws -> String? {
        if let change = changes.last(where: { $0.property == key }) { return change.desired }
        return try runtime(key, root) ?? persisted(root)[key]?.value
    }

    /// The memory `vm.min_free_kbytes` and the huge page pool keep from every program, as the
    /// pass leaves them: more than a twentieth of MemTotal kept free (Red Hat's tuning guide warns
    /// already at 5 to 10 %), or more than three quarters reserved together (a database's pool
    /// of huge pages may take most of a dedicated host, not all of it). Where the root has no
    /// `proc/meminfo`: more than 256 MiB kept free (the most the kernel picks itself), more than
    /// 1 GiB reserved (what a host of 2 GiB can spare).
    func reservedMemory(_ changes: [PropertyDrift], root: HostRoot) throws -> String? {
        let memory = try Self.memory(root)
        let count = { (key: String) throws -> UInt64 in try self.ending(key, changes, root: root).flatMap(Self.kernelCount) ?? 0 }
        let free = Self.saturating(try count("vm.min_free_kbytes"), times: 1024)
        let pages = try max(count("vm.nr_hugepages"), count("vm.nr_hugepages_mempolicy"))
        let huge = Self.saturating(pages, times: memory?.hugepageSize ?? 2 << 20)
        let of = memory?.total.map { " of the host's \(Self.mebibytes($0))" } ?? " (the root has no proc/meminfo to say how much the host has)"
        let consequence = "programs would fail to allocate and be killed while it lies unused, sshd sessions included, "
            + "and the host might not boot"
        if changes.contains(where: { $0.property == "vm.min_free_kbytes" }), free > (memory?.total.map { $0 / 20 } ?? 256 << 20) {
            return "would keep \(Self.mebibytes(free))\(of) free for the kernel alone, more than "
                + (memory?.total == nil ? "the 256 MiB the kernel ever keeps itself" : "a twentieth") + ": " + consequence
        }
        let reserved = Self.saturating(free, plus: huge)
        if reserved > (memory?.total.map { $0 / 4 * 3 } ?? 1 << 30) {
            return "would reserve \(Self.mebibytes(huge)) in huge pages and keep \(Self.mebibytes(free)) free for the kernel, "
                + "\(Self.mebibytes(reserved)) together\(of), more than " + (memory?.total == nil ? "1 GiB" : "three quarters")
                + ": " + consequence
        }
        return nil
    }

    /// Strict overcommit (`vm.overcommit_memory` 2) as the pass leaves it, with a limit under
    /// what the host has committed now (`Committed_AS`: every allocation would fail at once) or
    /// under a quarter of MemTotal. The limit is the kernel's (`vm_commit_limit`):
    /// `overcommit_kbytes` where set, else `overcommit_ratio` percent of the memory huge pages
    /// do not hold, plus swap. Writing one of the two sets the other to 0. Where the root has no
    /// `proc/meminfo`: a ratio under 25, or kbytes under 256 MiB (swap not known, not counted).
    func commitLimit(_ key: String, _ changes: [PropertyDrift], root: HostRoot) throws -> String? {
        guard try ending("vm.overcommit_memory", changes, root: root).flatMap(Self.kernelCount) == 2 else { return nil }
        let setsRatio = changes.contains { $0.property == "vm.overcommit_ratio" }
        let setsKbytes = changes.contains { $0.property == "vm.overcommit_kbytes" }
        let kbytesText = try setsRatio && !setsKbytes ? "0" : ending("vm.overcommit_kbytes", changes, root: root) ?? "0"
        guard let kbytes = Self.kernelCount(kbytesText) else { return nil }
        let memory = try Self.memory(root)
        let setting: (key: String, value: UInt64), limit: UInt64
        if kbytes > 0 {
            setting = ("vm.overcommit_kbytes", kbytes)
            limit = Self.saturating(Self.saturating(kbytes, times: 1024), plus: memory?.swap ?? 0)
        } else {
            guard let percent = Self.kernelCount(try ending("vm.overcommit_ratio", changes, root: root) ?? "50") else { return nil }
            setting = ("vm.overcommit_ratio", percent)
            let pages = try max(ending("vm.nr_hugepages", changes, root: root).flatMap(Self.kernelCount) ?? 0,
                                ending("vm.nr_hugepages_mempolicy", changes, root: root).flatMap(Self.kernelCount) ?? 0)
            // Without MemTotal, the ratio of 1 GiB: under a quarter is under 256 MiB.
            let total = memory?.total ?? 1 << 30
            let usable = total - min(total, Self.saturating(pages, times: memory?.hugepageSize ?? 2 << 20))
            limit = Self.saturating(Self.saturating(usable, times: percent) / 100, plus: memory?.swap ?? 0)
        }
        // How the pair ends, said from the key this change sets.
        let others = [("vm.overcommit_memory", "2"), (setting.key, String(setting.value))].filter { $0.0 != key }
        let pair = others.map { other in
            changes.contains(where: { $0.property == other.0 }) ? "with \(other.0) = \(other.1)" : "while \(other.0) is \(other.1)"
        }.joined(separator: " and ")
        let cut = "no new process could start, sshd sessions included"
        guard let total = memory?.total else {
            guard limit < 256 << 20 else { return nil }
            return "\(pair) would let the host commit at most " + (setting.key == "vm.overcommit_ratio"
                ? "\(setting.value) % of its memory" : Self.mebibytes(limit))
                + " (the root has no proc/meminfo to say how much it has): once that is taken \(cut)"
        }
        if let committed = memory?.committed, limit < committed {
            return "\(pair) would let the host commit at most \(Self.mebibytes(limit)), less than the \(Self.mebibytes(committed)) "
                + "committed now: every allocation would fail, so \(cut)"
        }
        if limit < total / 4 {
            return "\(pair) would let the host commit at most \(Self.mebibytes(limit)) of its \(Self.mebibytes(total)), less than "
                + "a quarter: once that is taken \(cut)"
        }
        return nil
    }
}
