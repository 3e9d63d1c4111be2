internal import Foundation

/// Runs an operator's command (a `ConfigFile`'s validation or reload) with a time limit: killed
/// when it runs longer, its output kept to a bounded tail read from a private file (never a pipe
/// a grandchild could hold open), and anything in it that looks like a key redacted before it
/// reaches a message or a record.
///
/// Not `BulwarkProcess.BoundedProcess`: that one waits through Foundation's `Process`, which
/// learns of a child's exit through a descriptor the child's own children inherit, so a reload
/// command that starts a daemon would be waited for until the daemon exits (seen with the LiteLLM
/// proxy). When `BoundedProcess` spawns this way too, this can forward to it.
struct BoundedCommand: Sendable {
    var arguments: [String]
    var timeout: Duration

    static let outputLimit = 600

    struct Outcome: Sendable {
        var status: Int32
        var timedOut: Bool
        var output: String
    }

    /// Runs the command with `{file}` in any argument replaced by `file`. Spawned with
    /// `posix_spawn` and reaped with `waitpid` rather than through Foundation's `Process`: a reload
    /// command that starts a daemon must not hold Bulwark up until that daemon exits (Foundation
    /// watches a child through descriptors its grandchildren inherit), and the child gets no
    /// descriptor of Bulwark's but its output file.
    func run(file: String? = nil) throws -> Outcome {
        guard let executable = arguments.first else { throw HostError("empty command") }
        let argv = arguments.map { argument in file.map { argument.replacingOccurrences(of: "{file}", with: $0) } ?? argument }
        var template = Array((NSTemporaryDirectory() + "/bulwark-command-XXXXXX").utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { throw HostError("cannot create a file for the command's output: \(errnoText())") }
        defer { close(fd) }
        unlink(String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fd, 1)
        posix_spawn_file_actions_adddup2(&actions, fd, 2)
        // Every other descriptor is closed in the child (those open now; glibc ignores a close of
        // one that another thread closed meanwhile).
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            if let open = Int32(name), open > 2 { posix_spawn_file_actions_addclose(&actions, open) }
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own process group, so that a timeout kills what it started too.
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        var cArguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for pointer in cArguments { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, &attributes, &cArguments, environ)
        guard spawned == 0 else { throw HostError("cannot run \(executable): \(errnoText(spawned))") }
        let deadline = ContinuousClock.now + timeout
        var timedOut = false
        var status: Int32 = 0
        while true {
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == pid { break }
            if reaped < 0, errno != EINTR { throw HostError("cannot wait for \(executable): \(errnoText())") }
            if !timedOut, ContinuousClock.now >= deadline {
                timedOut = true
                kill(-pid, SIGKILL)
                kill(pid, SIGKILL)
            }
            usleep(20_000)
        }
        let exit: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let size = lseek(fd, 0, SEEK_END)
        let start = max(0, Int(size) - 4096)
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = pread(fd, &buffer, buffer.count, off_t(start))
        let tail = String(decoding: buffer[0..<max(0, count)], as: UTF8.self)
        return Outcome(status: exit, timedOut: timedOut, output: Self.redacted(tail, file: file))
    }

    /// One bounded line: the candidate's path shown as `<candidate>`, and every word that could be
    /// a key (16 or more characters mixing letters and digits, or starting `sk-`) redacted.
    static func redacted(_ text: String, file: String?) -> String {
        var text = text
        if let file { text = text.replacingOccurrences(of: file, with: "<candidate>") }
        let words = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "'" || $0 == "\"" })
        var result = ""
        var index = text.startIndex
        for word in words {
            result += text[index..<word.startIndex]
            let letters = word.contains(where: \.isLetter)
            let digits = word.contains(where: \.isNumber)
            if word.hasPrefix("sk-") || (word.count >= 16 && letters && digits && !word.contains("/")) {
                result += "<redacted>"
            } else {
                result += word
            }
            index = word.endIndex
        }
        result += text[index...]
        let line = HostError.oneLine(result.trimmingCharacters(in: .whitespacesAndNewlines), limit: outputLimit)
        return line
    }
}
