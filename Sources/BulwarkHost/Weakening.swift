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

    @Sendable static func loginDefs(_ key: String, _ from: String, _ to: String) -> String? {
        let larger = ["PASS_MAX_DAYS", "LOGIN_RETRIES", "LOGIN_TIMEOUT"]
        let smaller = ["PASS_MIN_DAYS", "PASS_WARN_AGE", "PASS_MIN_LEN", "SHA_CRYPT_MIN_ROUNDS", "YESCRYPT_COST_FACTOR"]
        if larger.contains(key), let a = Int(from), let b = Int(to), b > a { return "raises a limit" }
        if smaller.contains(key), let a = Int(from), let b = Int(to), b < a { return "lowers a minimum" }
        if key == "UMASK", let a = UInt32(from, radix: 8), let b = UInt32(to, radix: 8), a & ~b != 0 {
            return "masks fewer permission bits"
        }
        if key == "ENCRYPT_METHOD" {
            let rank = ["DES": 0, "MD5": 1, "SHA256": 2, "SHA512": 3, "YESCRYPT": 4]
            if let a = rank[from.uppercased()], let b = rank[to.uppercased()], b < a { return "uses a weaker password hash" }
        }
        return nil
    }

    // MARK: - kernel parameters

    /// The shipped baseline's values: moving a parameter away from one is weaker.
    static let secureSysctl: [String: String] = [
        "net.ipv4.ip_forward": "0", "net.ipv4.conf.all.send_redirects": "0", "net.ipv4.conf.default.send_redirects": "0",
        "net.ipv4.conf.all.accept_redirects": "0", "net.ipv4.conf.default.accept_redirects": "0",
        "net.ipv4.conf.all.rp_filter": "1", "net.ipv4.conf.default.rp_filter": "1",
        "net.ipv4.conf.all.log_martians": "1", "net.ipv4.conf.default.log_martians": "1",
        "net.ipv4.tcp_syncookies": "1", "kernel.randomize_va_space": "2", "kernel.yama.ptrace_scope": "1",
        "fs.suid_dumpable": "0", "net.ipv4.conf.all.accept_source_route": "0", "net.ipv4.conf.default.accept_source_route": "0",
        "net.ipv6.conf.all.accept_ra": "0", "net.ipv6.conf.default.accept_ra": "0", "kernel.kptr_restrict": "2",
        "kernel.dmesg_restrict": "1", "fs.protected_hardlinks": "1", "fs.protected_symlinks": "1",
    ]

    @Sendable static func sysctl(_ key: String, _ from: String, _ to: String) -> String? {
        guard let secure = secureSysctl[key], from == secure, to != secure else { return nil }
        return "moves away from the baseline value \(secure)"
    }
}
