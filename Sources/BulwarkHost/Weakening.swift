internal import BulwarkCore

/// Which changes of a host kind's desired values move in the less secure direction (see
/// `KindDefinition.weakens`). Each returns why, or nil for a change that is as strict or stricter,
/// or one whose direction cannot be told.
enum HostWeakening {
    // MARK: - sshd

    /// Keywords whose secure value is `no`, and those whose secure value is `yes`.
    static let secureNo: Set<String> = [
        "PermitEmptyPasswords", "PasswordAuthentication", "HostbasedAuthentication", "PermitUserEnvironment",
        "X11Forwarding", "AllowAgentForwarding", "AllowTcpForwarding", "AllowStreamLocalForwarding", "GatewayPorts",
        "PermitTunnel", "KbdInteractiveAuthentication", "ChallengeResponseAuthentication", "GSSAPIAuthentication",
        "KerberosAuthentication", "ExposeAuthInfo",
    ]
    static let secureYes: Set<String> = ["IgnoreRhosts", "IgnoreUserKnownHosts", "StrictModes", "DisableForwarding"]
    /// Integers where a larger value is weaker (0 meaning "no limit" for the client-alive ones).
    static let largerIsWeaker: Set<String> = ["MaxAuthTries", "MaxSessions", "LoginGraceTime", "ClientAliveInterval",
                                              "ClientAliveCountMax"]
    /// Lists where an added entry widens what is allowed.
    static let addedIsWeaker: Set<String> = ["Ciphers", "MACs", "KexAlgorithms", "HostKeyAlgorithms",
                                             "PubkeyAcceptedAlgorithms", "AllowUsers", "AllowGroups", "PermitOpen", "PermitListen"]
    /// Lists where a removed entry widens what is allowed.
    static let removedIsWeaker: Set<String> = ["DenyUsers", "DenyGroups"]

    @Sendable static func sshd(_ keyword: String, _ from: String, _ to: String) -> String? {
        let old = from.lowercased(), new = to.lowercased()
        if keyword == "PermitRootLogin" {
            let rank = ["no": 0, "forced-commands-only": 1, "prohibit-password": 2, "without-password": 2, "yes": 3]
            guard let a = rank[old], let b = rank[new], b > a else { return nil }
            return "allows more root logins"
        }
        if secureNo.contains(keyword), old == "no", new != "no" { return "turns a secure setting off" }
        if secureYes.contains(keyword), old == "yes", new != "yes" { return "turns a secure setting off" }
        if largerIsWeaker.contains(keyword), let a = Int(old), let b = Int(new) {
            let unlimitedBefore = a == 0 && keyword.hasPrefix("ClientAlive")
            if !unlimitedBefore, b > a || (b == 0 && keyword.hasPrefix("ClientAlive") && a != 0) { return "raises a limit" }
            return nil
        }
        if keyword == "LogLevel" {
            let rank = ["quiet": 0, "fatal": 1, "error": 2, "info": 3, "verbose": 4, "debug": 5, "debug1": 5, "debug2": 6, "debug3": 7]
            if let a = rank[old], let b = rank[new], b < a, b < 4 { return "logs less" }
            return nil
        }
        if addedIsWeaker.contains(keyword) {
            let added = entries(to).subtracting(entries(from))
            return added.isEmpty ? nil : "adds \(added.sorted().joined(separator: ", "))"
        }
        if removedIsWeaker.contains(keyword) {
            let removed = entries(from).subtracting(entries(to))
            return removed.isEmpty ? nil : "no longer denies \(removed.sorted().joined(separator: ", "))"
        }
        return nil
    }

    private static func entries(_ list: String) -> Set<String> {
        Set(list.split { $0 == "," || $0 == " " }.map { String($0) })
    }

    // MARK: - file modes

    @Sendable static func fileMode(_ property: String, _ from: String, _ to: String) -> String? {
        switch property {
        case "mode":
            guard let a = UInt32(from, radix: 8), let b = UInt32(to, radix: 8) else { return nil }
            let added = b & ~a
            return added == 0 ? nil : "adds permission bits \(String(added, radix: 8))"
        case "owner", "group":
            return to == "root" || to == "0" ? nil : "hands the file from \(from) to \(to)"
        default:
            return nil
        }
    }

    // MARK: - accounts

    @Sendable static func account(_ property: String, _ from: String, _ to: String) -> String? {
        switch property {
        case "locked":
            return from == "true" && to == "false" ? "unlocks the account" : nil
        case "shell":
            let noLogin: Set<String> = ["/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"]
            return noLogin.contains(from) && !noLogin.contains(to) ? "gives the account a login shell" : nil
        case "expires":
            return from != "never" && (to == "never" || to > from) ? "extends the account's life" : nil
        default:
            return nil
        }
    }

    // MARK: - login.defs

    /// Limits whose value says "no limit" where it is not a number to compare: `PASS_MAX_DAYS`
    /// below 0 (a password that never expires, as shadow-utils reads -1), `LOGIN_TIMEOUT` 0 or
    /// below (login waits for ever).
    static func unlimited(_ key: String, _ value: Int) -> Bool {
        switch key {
        case "PASS_MAX_DAYS": value < 0
        case "LOGIN_TIMEOUT": value <= 0
        default: false
        }
    }

    /// The `ENCRYPT_METHOD` values shadow-utils takes, by strength (BCRYPT and SHA512 side by side).
    static let encryptMethods = ["DES": 0, "MD5": 1, "SHA256": 2, "SHA512": 3, "BCRYPT": 3, "YESCRYPT": 4]

    @Sendable static func loginDefs(_ key: String, _ from: String, _ to: String) -> String? {
        let larger = ["PASS_MAX_DAYS", "LOGIN_RETRIES", "LOGIN_TIMEOUT"]
        let smaller = ["PASS_MIN_DAYS", "PASS_WARN_AGE", "PASS_MIN_LEN", "SHA_CRYPT_MIN_ROUNDS", "YESCRYPT_COST_FACTOR"]
        if larger.contains(key), let a = Int(from), let b = Int(to) {
            let (noneBefore, noneAfter) = (unlimited(key, a), unlimited(key, b))
            if noneAfter && !noneBefore { return "removes a limit" }
            if !noneBefore && !noneAfter && b > a { return "raises a limit" }
            return nil
        }
        if smaller.contains(key), let a = Int(from), let b = Int(to), b < a { return "lowers a minimum" }
        if key == "UMASK", let a = UInt32(from, radix: 8), let b = UInt32(to, radix: 8), a & ~b != 0 {
            return "masks fewer permission bits"
        }
        if key == "HOME_MODE", let b = UInt32(to, radix: 8) {
            let added = b & ~(UInt32(from, radix: 8) ?? 0) & 0o077
            if added != 0 { return "gives group or others permission bits \(String(added, radix: 8)) on every new home folder" }
        }
        if key == "ENCRYPT_METHOD" {
            // shadow-utils compares these spellings exactly (`sha512` is none) and hashes with DES for any other.
            guard let b = encryptMethods[to] else {
                return "is no method shadow-utils knows (it takes \(encryptMethods.keys.sorted().joined(separator: ", ")) spelled "
                    + "exactly so) and it would hash new passwords with DES"
            }
            if let a = encryptMethods[from], b < a { return "uses a weaker password hash" }
        }
        return nil
    }

    // MARK: - kernel parameters

    /// Hardening parameters, each with its values from the weakest to the strongest: a change to
    /// an earlier value weakens it, wherever it started (3 → 0 for ptrace_scope as much as 1 → 0).
    /// Where the kernel's values do not grow in strength (`rp_filter` 2 is loose, 1 strict;
    /// `unprivileged_bpf_disabled` 2 can be undone by an administrator, 1 cannot) the list says
    /// their order. A value not listed has no direction.
    static let sysctlStrength: [String: [String]] = [
        "kernel.yama.ptrace_scope": ["0", "1", "2", "3"],
        "kernel.kptr_restrict": ["0", "1", "2"],
        "kernel.dmesg_restrict": ["0", "1"],
        "kernel.unprivileged_bpf_disabled": ["0", "2", "1"],
        "net.core.bpf_jit_harden": ["0", "1", "2"],
        "kernel.randomize_va_space": ["0", "1", "2"],
        "kernel.perf_event_paranoid": ["-1", "0", "1", "2", "3", "4"],
        "kernel.kexec_load_disabled": ["0", "1"],
        "kernel.unprivileged_userns_clone": ["1", "0"],
        "fs.protected_hardlinks": ["0", "1"],
        "fs.protected_symlinks": ["0", "1"],
        "fs.protected_fifos": ["0", "1", "2"],
        "fs.protected_regular": ["0", "1", "2"],
        "fs.suid_dumpable": ["1", "2", "0"],
        "net.ipv4.ip_forward": ["1", "0"],
        "net.ipv4.tcp_syncookies": ["0", "1"],
        "net.ipv4.icmp_echo_ignore_broadcasts": ["0", "1"],
        "net.ipv4.icmp_ignore_bogus_error_responses": ["0", "1"],
        "dev.tty.ldisc_autoload": ["1", "0"],
    ]

    /// Hardening parameters whose values are numbers, not a short list: `vm.mmap_min_addr` is
    /// weaker lower (0 lets a kernel NULL pointer dereference map user memory there), and
    /// `kernel.sysrq` a mask (1 enables every function, 0 none) weaker with a function added.
    /// Read as the kernel reads them; a value it would refuse has no direction.
    static func numericSysctl(_ key: String, _ from: String, _ to: String) -> String? {
        guard let a = SysctlDriver.kernelCount(from), let b = SysctlDriver.kernelCount(to) else { return nil }
        switch key {
        case "vm.mmap_min_addr" where b < a:
            return "lowers the lowest address a program may map from \(a) to \(b)\(b == 0 ? ": a kernel NULL pointer dereference becomes a way to root" : "")"
        case "kernel.sysrq":
            // Bit 0 (the value 1) enables all; the functions are bits 1 to 8.
            let functions = { (mask: UInt64) -> UInt64 in mask == 1 ? 0x1FE : mask & 0x1FE }
            let added = functions(b) & ~functions(a)
            return added == 0 ? nil : "enables more magic SysRq functions from the keyboard or /proc/sysrq-trigger (\(quotedForMessage(to)))"
        default:
            return nil
        }
    }

    /// The values `numericSysctl`'s parameters are judged from when no earlier revision set them:
    /// the kernel's default on x86-64 for `vm.mmap_min_addr`, Debian's for `kernel.sysrq`.
    static let numericSysctlUnset = ["vm.mmap_min_addr": "65536", "kernel.sysrq": "438"]

    /// The same, for the per-interface parameters of `net.ipv4.conf.<interface>.` and
    /// `net.ipv6.conf.<interface>.` (`all`, `default` or one interface).
    static let interfaceStrength: [String: [String]] = [
        "rp_filter": ["0", "2", "1"],
        "log_martians": ["0", "1"],
        "accept_redirects": ["1", "0"],
        "secure_redirects": ["1", "0"],
        "send_redirects": ["1", "0"],
        // IPv4 takes 1 or 0; IPv6 also -1 (no routing header at all) and 0 (type 2 only).
        "accept_source_route": ["1", "0", "-1"],
        "accept_ra": ["2", "1", "0"],
        "forwarding": ["1", "0"],
        "proxy_arp": ["1", "0"],
        "bootp_relay": ["1", "0"],
    ]

    /// The strengths of `key`'s values, weakest first (`sysctlStrength`, `interfaceStrength`).
    static func strengths(_ key: String) -> [String]? {
        if let known = sysctlStrength[key] { return known }
        let parts = key.split(separator: ".")
        guard parts.count == 5, parts[0] == "net", parts[1] == "ipv4" || parts[1] == "ipv6", parts[2] == "conf" else { return nil }
        return interfaceStrength[String(parts[4])]
    }

    /// Parameters some hardening guides set that turn a fault the kernel survives into a crash
    /// of the whole host, or that cannot be undone before a reboot: each value's rank (how far
    /// it goes, 0 for the kernel's default; nil for one the kernel refuses) and why a move to a
    /// higher rank is held for a second person. Numbers are read as the kernel reads them
    /// (`SysctlDriver.kernelNumber`: `0x1` is 1, `-0` is 0).
    static let sysctlDrastic: [String: (rank: @Sendable (String) -> Int?, why: String)] = {
        // Any number but 0 is on, `-1` included (`panic_on_oops` takes it and panics).
        let on: @Sendable (String) -> Int? = { SysctlDriver.kernelNumber($0).map { $0.magnitude == 0 ? 0 : 1 } }
        return [
            "kernel.panic_on_oops": (on, "would crash the host at any kernel oops instead of killing the one process that hit it"),
            "kernel.panic_on_warn": (on, "would crash the host at any kernel warning, which it otherwise logs and carries on from"),
            "vm.panic_on_oom": ({ SysctlDriver.kernelCount($0).map { $0 == 0 ? 0 : $0 == 2 ? 2 : 1 } },
                                "would crash the host when memory runs out (at 2 even where only one cgroup's runs out) "
                                + "instead of killing one process"),
            "kernel.hung_task_panic": (on, "would crash the host whenever a task waits longer than hung_task_timeout_secs (a slow disk, "
                                       + "a hung NFS server) instead of logging it"),
            "kernel.softlockup_panic": (on, "would crash the host at a soft lockup instead of logging it"),
            "kernel.hardlockup_panic": (on, "would crash the host at a hard lockup instead of logging it"),
            "kernel.panic_on_rcu_stall": (on, "would crash the host at an RCU stall instead of logging it"),
            "kernel.yama.ptrace_scope": ({ SysctlDriver.kernelCount($0).map { $0 == 3 ? 1 : 0 } },
                                         "would forbid ptrace to everyone, root included (debuggers, strace, crash dumps), and "
                                         + "cannot be set back without a reboot"),
            "kernel.modules_disabled": (on, "would stop every kernel module from loading (the driver of a disk or network card added "
                                        + "later, a firewall's or file system's module) and cannot be set back to 0 without a reboot"),
            // 0: a host that panics stays down; a number of seconds, or below 0 at once, reboots it.
            "kernel.panic": ({ SysctlDriver.kernelNumber($0).map { $0.magnitude == 0 ? 1 : 0 } }, "would leave a host that panics hung until someone power-cycles it, instead of rebooting it"),
        ]
    }()

    /// Where `value` stands in `order` (`strengths`), read as the kernel reads it
    /// (`SysctlDriver.kernelDecimal`: `0x0`, `-0` and `00` are `0`). In a list of `0` and `1`
    /// alone every other number is `1`: the kernel takes any number but 0 as on there
    /// (`ip_forward` 2 forwards), or refuses it.
    static func strength(_ value: String, in order: [String]) -> Int? {
        let read = SysctlDriver.kernelDecimal(value) ?? value
        if let index = order.firstIndex(of: read) { return index }
        guard Set(order) == ["0", "1"], SysctlDriver.kernelNumber(value) != nil else { return nil }
        return order.firstIndex(of: "1")
    }

    @Sendable static func sysctl(_ key: String, _ from: String, _ to: String) -> String? {
        if let order = strengths(key), let a = strength(from, in: order), let b = strength(to, in: order), b < a {
            let read = to == order[b] ? "" : SysctlDriver.kernelDecimal(to) == order[b] ? ", which the kernel reads as \(order[b])"
                : ", which the kernel takes as \(order[b])"
            return "moves from \(quotedForMessage(from)) to the weaker \(quotedForMessage(to))\(read)"
        }
        if let why = numericSysctl(key, from, to) { return why }
        // A value before that the kernel refused set nothing: judged as the default.
        if let drastic = sysctlDrastic[key], let b = drastic.rank(to), b > drastic.rank(from) ?? 0 {
            return drastic.why
        }
        return nil
    }

    // MARK: - values no earlier revision set

    /// A property no earlier revision set is judged as if it had been off (`KindDefinition.weakensNew`):
    /// by the kind's own rule above, from the value each kind names here. One rule per property,
    /// so a value held when edited to is held when added, under a new name or in a new resource.
    static func judgedNew(_ why: String?, from unset: String) -> String? {
        why.map { "\($0), judged against \(unset) as no earlier revision set it" }
    }

    /// sshd keywords as if unset: a switch off (`no` where that is the secure value, `yes` where
    /// `yes` is), no root login, and sshd's own default for a limit or the log level
    /// (`ClientAliveInterval` 0 has none weaker). Lists that only narrow sshd's defaults need none.
    static let sshdUnset: [String: String] = {
        var unset: [String: String] = ["PermitRootLogin": "no", "MaxAuthTries": "6", "MaxSessions": "10",
                                       "LoginGraceTime": "120", "ClientAliveCountMax": "3", "LogLevel": "info"]
        for keyword in secureNo { unset[keyword] = "no" }
        for keyword in secureYes { unset[keyword] = "yes" }
        return unset
    }()

    /// Algorithm lists whose `+` (append to sshd's defaults) or `^` (put first, ahead of them)
    /// form adds algorithms to what sshd offers; a plain list only replaces them.
    static let algorithmLists: Set<String> = ["Ciphers", "MACs", "KexAlgorithms", "HostKeyAlgorithms", "PubkeyAcceptedAlgorithms"]

    @Sendable static func sshdNew(_ keyword: String, _ value: String) -> String? {
        if let unset = sshdUnset[keyword] { return judgedNew(sshd(keyword, unset, value), from: unset) }
        if algorithmLists.contains(keyword), value.hasPrefix("+") || value.hasPrefix("^") {
            return judgedNew(sshd(keyword, "", value), from: "sshd's defaults")
        }
        return nil
    }

    /// A file as if unset: root's, readable and writable by root alone. Permission bits for group
    /// or others, and another owner or group, are grants (`0644` on `/root/.ssh/id_ed25519`).
    @Sendable static func fileModeNew(_ property: String, _ value: String) -> String? {
        let unset = property == "mode" ? "0700" : "root"
        return judgedNew(fileMode(property, unset, value), from: unset)
    }

    /// An account as if unset: locked, without a login shell, and ending on a date (`never` then
    /// extends its life; a date does not).
    @Sendable static func accountNew(_ property: String, _ value: String) -> String? {
        let unset: [String: String] = ["locked": "true", "shell": "/usr/sbin/nologin", "expires": "9999-12-31"]
        guard let from = unset[property] else { return nil }
        return judgedNew(account(property, from, value), from: property == "expires" ? "a date" : from)
    }

    /// login.defs keys as if unset: the shipped baseline's values (CIS) where it sets one, else
    /// shadow-utils' defaults; `ENCRYPT_METHOD` SHA512; `HOME_MODE` 0750, what the baseline's `UMASK` 027 gives a home.
    static let loginDefsUnset: [String: String] = [
        "PASS_MAX_DAYS": "365", "PASS_MIN_DAYS": "1", "PASS_WARN_AGE": "7", "UMASK": "027", "LOGIN_RETRIES": "5",
        "LOGIN_TIMEOUT": "60", "PASS_MIN_LEN": "5", "SHA_CRYPT_MIN_ROUNDS": "5000", "YESCRYPT_COST_FACTOR": "5",
        "ENCRYPT_METHOD": "SHA512", "HOME_MODE": "0750",
    ]

    @Sendable static func loginDefsNew(_ key: String, _ value: String) -> String? {
        guard let unset = loginDefsUnset[key] else { return nil }
        return judgedNew(loginDefs(key, unset, value), from: unset)
    }

    /// Kernel parameters as if unset: the value just above the weak end of `strengths` (a new
    /// `kernel.kptr_restrict: 0` or `net.ipv4.ip_forward: 1` is held, `kernel.yama.ptrace_scope: 1`
    /// is not), or the kernel's own default where that is stronger still.
    static let sysctlUnset: [String: String] = ["kernel.randomize_va_space": "2", "kernel.perf_event_paranoid": "2"]

    @Sendable static func sysctlNew(_ key: String, _ value: String) -> String? {
        // The kernel's default is 0 for each (`kernel.panic` 0 is then no move).
        // Not ptrace_scope, whose new value is judged by its strengths (its 3 is drastic from there).
        if sysctlDrastic[key] != nil, strengths(key) == nil { return judgedNew(sysctl(key, "0", value), from: "0") }
        if let unset = numericSysctlUnset[key] { return judgedNew(sysctl(key, unset, value), from: unset) }
        guard let order = strengths(key), order.count > 1 else { return nil }
        let unset = sysctlUnset[key] ?? order[1]
        return judgedNew(sysctl(key, unset, value), from: unset)
    }
}
