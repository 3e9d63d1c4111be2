internal import BulwarkCore
internal import Foundation
internal import CLinux

/// Whether an operator's command (a `ConfigFile`'s `validate` or `reload`, which Bulwark runs as
/// itself, root, on the machine) may run. The policy in git chooses the command, so what it may
/// choose is bounded here, on the machine:
///
/// - The executable, every folder on the way to it and every link followed belong to root (or
///   to the user Bulwark runs as) and are not writable by group or others, as `sshd`'s
///   StrictModes judges a key file: whoever could write one of them could run code as root. A
///   folder writable by all with the sticky bit (`/tmp`) passes only where the entry in it
///   belongs to root. Links are followed one step at a time, each step checked, never to a
///   place that fails.
/// - A shell, an interpreter or a launcher (`sh`, `python3`, `env`, `find`, `sudo`, …) is
///   refused, whatever its arguments: it runs code written in its arguments or in a file
///   (the candidate `{file}` itself, whose text the policy writes). Write the command as a
///   script owned by root instead, and name it. The one exception is Bulwark's own PyYAML check
///   (`pyyamlCheck`), matched exactly, whose code ships in Bulwark rather than in git.
///
/// The list of launchers cannot be complete: the second person who approves a new or changed
/// command (`HostWeakening.configFile`) is what stands between one author and root.
enum CommandTrust {
    /// The validation the shipped baseline uses: PyYAML (what LiteLLM reads its file with) reads
    /// the candidate. Its code is this text, in Bulwark, not in git.
    static let pyyamlCheck = ["/usr/bin/python3", "-c", "import sys, yaml; yaml.safe_load(open(sys.argv[1]))", "{file}"]

    /// Executables (by name, a version suffix aside: `python3.11`, `perl5.36`) that run code
    /// given to them or run another command.
    static let launchers: Set<String> = [
        "sh", "bash", "dash", "zsh", "ksh", "mksh", "pdksh", "ash", "csh", "tcsh", "fish", "rbash", "busybox", "toybox",
        "python", "pypy", "perl", "ruby", "irb", "node", "nodejs", "deno", "bun", "php", "php-cgi", "lua", "luajit", "tclsh",
        "wish", "expect", "awk", "gawk", "mawk", "nawk", "sed", "ed", "vi", "vim", "nvim", "ex", "emacs", "gdb", "R", "Rscript",
        "julia", "guile", "racket", "osascript", "pwsh", "env", "xargs", "find", "sudo", "su", "doas", "runuser", "pkexec",
        "setpriv", "nice", "nohup", "timeout", "setsid", "stdbuf", "chroot", "unshare", "nsenter", "flock", "ionice", "taskset",
        "chrt", "systemd-run", "script", "watch", "time", "strace", "ltrace", "make", "git", "tar", "rsync", "ssh", "socat",
        "nc", "ncat", "run-parts", "at", "batch", "crontab", "install", "cp", "mv", "dd", "tee", "ln", "chmod", "chown",
    ]

    /// Why `argv` may not run (nil: it may), judged on its text and on the file system now.
    static func problem(_ argv: [String]) -> String? {
        guard let executable = argv.first else { return "an empty command" }
        switch resolve(executable) {
        case .refused(let problem):
            return problem
        case .file(let resolved):
            if argv == pyyamlCheck { return nil }
            for name in [executable, resolved] {
                let base = launcherName(name)
                if launchers.contains(base) {
                    return "\(executable) is \(base == launcherName(executable) ? "" : "(through a link) ")\(base), which runs code given "
                        + "in its arguments or in a file; name a script owned by root instead"
                }
            }
            // A program named in the arguments is one the command may run: `setarch x86_64
            // /bin/sh -c …`, `prlimit -- sh -c …`, `ip netns exec ns sh` pass any list of
            // launchers. An argument that is an executable's path, or a launcher's name, is
            // refused; the script named first runs what it runs.
            for argument in argv.dropFirst() where Self.namesAProgram(argument) {
                return "its argument \(argument) is a program, which \(launcherName(executable)) may run: a command that runs "
                    + "another is a launcher; name a script owned by root that runs it instead"
            }
            return nil
        }
    }

    /// Whether `argument` names a program: an absolute path to an executable file, or the bare
    /// name of a launcher (`sh`, `python3`; a service name such as `litellm` in `systemctl
    /// reload litellm` is not one).
    static func namesAProgram(_ argument: String) -> Bool {
        if argument.hasPrefix("/") {
            var info = stat()
            return stat(argument, &info) == 0 && info.st_mode & S_IFMT == S_IFREG && info.st_mode & 0o111 != 0
        }
        return !argument.contains("/") && launchers.contains(launcherName(argument))
    }

    /// The file's name without a version suffix (`python3.11` → `python`, `perl5.36` → `perl`).
    static func launcherName(_ path: String) -> String {
        let base = path.split(separator: "/").last.map(String.init) ?? path
        let trimmed = base.reversed().drop { $0.isNumber || $0 == "." }.reversed()
        return trimmed.isEmpty ? base : String(trimmed)
    }

    /// The file `path` names, every link followed, each folder, link and the file checked; or why not.
    /// Where an executable's path leads: the file, or why it may not run.
    enum Resolution { case file(String), refused(String) }

    static func resolve(_ path: String) -> Resolution {
        guard path.hasPrefix("/") else { return .refused("\(path) is not an absolute path") }
        var pending = Array(path.split(separator: "/").map(String.init).reversed())
        var current = "/"
        var hops = 0
        if let problem = checkFolder("/") { return .refused(problem) }
        while let component = pending.popLast() {
            if component == "." { continue }
            if component == ".." {
                current = (current as NSString).deletingLastPathComponent
                continue
            }
            let next = current == "/" ? "/" + component : current + "/" + component
            var info = stat()
            guard lstat(next, &info) == 0 else { return .refused("\(next) does not exist (\(String(cString: strerror(errno))))") }
            if let problem = checkOwner(next, info) { return .refused(problem) }
            switch info.st_mode & S_IFMT {
            case S_IFLNK:
                hops += 1
                guard hops <= 40 else { return .refused("\(path): too many links") }
                var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let count = readlink(next, &buffer, Int(PATH_MAX))
                guard count > 0 else { return .refused("cannot read the link \(next)") }
                let target = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if target.hasPrefix("/") { current = "/" }
                pending.append(contentsOf: target.split(separator: "/").map(String.init).reversed())
            case S_IFDIR:
                if let problem = checkFolder(next) { return .refused(problem) }
                current = next
            case S_IFREG:
                guard pending.isEmpty else { return .refused("\(next) is a file, not a folder") }
                guard info.st_mode & 0o111 != 0 else { return .refused("\(next) is not executable") }
                guard info.st_mode & 0o6000 == 0 || info.st_uid == 0 else { return .refused("\(next) is set-id and not root's") }
                return .file(next)
            default:
                return .refused("\(next) is not a regular file")
            }
        }
        return .refused("\(path) names a folder, not an executable")
    }

    /// A folder on the way: trusted owner, not writable by group or others unless sticky.
    private static func checkFolder(_ path: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else { return "cannot read \(path)" }
        guard let doubt = StrictModes.folderDoubt(info) else { return nil }
        return "the folder \(path) \(doubt): \(StrictModes.trusted(info.st_uid) ? "they" : "its owner") could replace the command"
    }

    /// An entry (file or link) in `folder`: trusted owner; a file not writable by group or others.
    private static func checkOwner(_ path: String, _ info: stat) -> String? {
        guard StrictModes.trusted(info.st_uid) else { return "\(path) belongs to uid \(info.st_uid), not root: its owner could change what runs as root" }
        // A folder's own mode is judged by `checkFolder` (a sticky one may be writable by all).
        if info.st_mode & S_IFMT == S_IFREG, info.st_mode & 0o022 != 0 {
            return "\(path) is writable by group or others (mode \(String(info.st_mode & 0o7777, radix: 8))): they could change what runs as root"
        }
        return nil
    }
}
