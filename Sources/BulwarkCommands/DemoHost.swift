internal import BulwarkRuntime
internal import Foundation

/// A sandbox host tree laid out like `/` with the drift a fresh, unhardened Debian host has:
/// a permissive sshd_config, unhardened kernel parameters, a world-readable shadow file, a
/// guest account with a login shell, weak login.defs.
enum DemoHost {
    static let sshdConfig = """
        # This is the sshd server system-wide configuration file.  See
        # sshd_config(5) for more information.

        Include /etc/ssh/sshd_config.d/*.conf

        #Port 22
        PermitRootLogin yes
        MaxAuthTries 6
        PasswordAuthentication yes
        KbdInteractiveAuthentication no
        UsePAM yes
        X11Forwarding yes
        PrintMotd no
        AcceptEnv LANG LC_*
        Subsystem sftp /usr/lib/openssh/sftp-server

        Match User backup
        \tPasswordAuthentication no
        \tForceCommand internal-sftp

        """

    /// Kernel parameters at runtime (under proc/sys) and their insecure values.
    static let runtime: [String: String] = [
        "net/ipv4/ip_forward": "1",
        "net/ipv4/conf/all/send_redirects": "1", "net/ipv4/conf/default/send_redirects": "1",
        "net/ipv4/conf/all/accept_redirects": "1", "net/ipv4/conf/default/accept_redirects": "1",
        "net/ipv4/conf/all/rp_filter": "0", "net/ipv4/conf/default/rp_filter": "0",
        "net/ipv4/conf/all/log_martians": "0", "net/ipv4/conf/default/log_martians": "0",
        "net/ipv4/tcp_syncookies": "1", "kernel/randomize_va_space": "2", "kernel/yama/ptrace_scope": "0",
        "fs/suid_dumpable": "2",
    ]

    static func create(at root: String) throws {
        let files: [(String, String, mode_t)] = [
            ("etc/ssh/sshd_config", sshdConfig, 0o644),
            ("etc/passwd", """
                root:x:0:0:root:/root:/bin/bash
                daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
                sshd:x:100:65534::/run/sshd:/usr/sbin/nologin
                admin:x:1000:1000:Administrator,,,:/home/admin:/bin/bash
                guest:x:1001:1001:Guest,,,:/home/guest:/bin/bash
                nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin

                """, 0o644),
            ("etc/group", """
                root:x:0:
                daemon:x:1:
                shadow:x:42:
                sudo:x:27:admin
                admin:x:1000:
                guest:x:1001:
                nogroup:x:65534:

                """, 0o644),
            ("etc/shadow", """
                root:$y$j9T$sandboxsaltsandbox$sandboxhashsandboxhashsandboxhashsandbox00:19700:0:99999:7:::
                daemon:*:19700:0:99999:7:::
                sshd:!:19700::::::
                admin:*:19700:0:99999:7:::
                guest:$y$j9T$guestsaltguestsalt$guesthashguesthashguesthashguesthash000:19700:0:99999:7:::
                nobody:*:19700:0:99999:7:::

                """, 0o644),
            ("etc/gshadow", "root:*::\nshadow:*::\nguest:!::\n", 0o644),
            ("etc/login.defs", """
                # /etc/login.defs - Configuration control definitions for the login package.
                MAIL_DIR        /var/mail
                PASS_MAX_DAYS\t99999
                PASS_MIN_DAYS\t0
                PASS_WARN_AGE\t7
                UMASK\t\t022
                ENCRYPT_METHOD SHA512

                """, 0o644),
            ("etc/shells", "# /etc/shells: valid login shells\n/bin/sh\n/bin/bash\n", 0o644),
            // The administrator logs in with a key (a sample public key: the sandbox runs no sshd).
            // Bulwark's sshd guard blocks changes that would leave no such login.
            ("home/admin/.ssh/authorized_keys",
             "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEJ1bHdhcmsgZGVtbyBob3N0IHNhbXBsZSBrZXkgMDAw admin@demo\n", 0o600),
            // Stand-ins for the shells, so the account guard finds the programs it is asked to set.
            ("bin/bash", "#!/bin/sh\n", 0o755), ("bin/sh", "#!/bin/sh\n", 0o755),
            ("usr/sbin/nologin", "#!/bin/sh\nexit 1\n", 0o755),
            ("etc/sysctl.conf", "# /etc/sysctl.conf - Configuration file for setting system variables\nnet.ipv4.ip_forward=1\n", 0o644),
        ]
        let fm = FileManager.default
        for folder in ["etc/ssh/sshd_config.d", "etc/sysctl.d", "usr/lib/sysctl.d", "run", "home/guest"] {
            try fm.createDirectory(atPath: root + "/" + folder, withIntermediateDirectories: true)
        }
        for (path, text, mode) in files {
            let full = root + "/" + path
            try fm.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            guard fm.createFile(atPath: full, contents: Data(text.utf8), attributes: [.posixPermissions: Int(mode)]) else {
                throw CommandError("cannot create \(full)")
            }
        }
        for (key, value) in runtime {
            let full = root + "/proc/sys/" + key
            try fm.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            guard fm.createFile(atPath: full, contents: Data((value + "\n").utf8)) else {
                throw CommandError("cannot create \(full)")
            }
        }
    }
}

