internal import Foundation
internal import BulwarkCore
internal import Synchronization
// `stat`: in a build where CLinux's header brings it in first, its members are CLinux's.
internal import CLinux

/// The exact input of one sshd probe as bytes, each field length-prefixed so that no two
/// different inputs make the same key.
struct ProbeKey: Hashable, Sendable {
    private(set) var bytes: [UInt8] = []

    mutating func append(_ field: [UInt8]) {
        var length = UInt64(field.count).bigEndian
        withUnsafeBytes(of: &length) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: field)
    }

    mutating func append(_ field: String) { append(Array(field.utf8)) }

    /// The bytes hashed at once: an array's own `hash(into:)` feeds the hasher a byte at a
    /// time, and a key holds the machine's passwd and group and the whole candidate (a
    /// drifted 100-root plan spent 4 % of its time hashing keys).
    func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    static func == (lhs: ProbeKey, rhs: ProbeKey) -> Bool {
        guard lhs.bytes.count == rhs.bytes.count else { return false }
        return lhs.bytes.withUnsafeBytes { l in
            rhs.bytes.withUnsafeBytes { r in
                guard let a = l.baseAddress, let b = r.baseAddress else { return l.count == r.count }
                return memcmp(a, b, l.count) == 0
            }
        }
    }
}

/// `sshd -T` answers within this process, by the probe's exact input (`ProbeKey`: sshd binary,
/// machine account files, every candidate byte and Include, account and connection). Only
/// sshd's output is kept; the verdict is always judged afresh against the root's accounts and
/// keys. Bounded: the oldest answers are dropped first.
final class SSHDProbeCache: Sendable {
    static let shared = SSHDProbeCache(limit: 512)
    /// The cache probes use: the process's, or a test's own (a new process's, in effect).
    @TaskLocal static var current = shared

    private struct Entries {
        /// Each answer with when sshd gave it (for one read from the state directory: when it was written).
        var answers: [ProbeKey: (answer: [String: [String]], at: Date)] = [:]
        var order: [ProbeKey] = []
        /// Probes being run now, by one caller each.
        var running: Set<ProbeKey> = []
    }

    private let limit: Int
    private let entries = Mutex(Entries())
    private let disk = Mutex<SSHDAnswerStore?>(nil)

    init(limit: Int) { self.limit = max(1, limit) }

    /// Keeps answers asked for as `kept` in `folder` too (`SSHDAnswerStore`), for the processes
    /// that follow. Returns why not; answers are then kept in memory only.
    func keep(in folder: String) -> String? {
        do {
            let store = try SSHDAnswerStore.open(folder)
            disk.withLock { $0 = store }
            return nil
        } catch {
            disk.withLock { $0 = nil }
            return error.description
        }
    }

    /// Where answers are kept for the processes that follow, if anywhere.
    var kept: SSHDAnswerStore? { disk.withLock { $0 } }

    /// The answer for `key`: a stored one, else `compute`'s, run by one caller at a time per
    /// key while the others asking for the same key wait for it. A fleet of identical hosts
    /// judged in parallel otherwise started one sshd per host before the first answer was
    /// stored (31 `sshd -T` and 8 `sshd -t` for 100 hosts, where 3 answer them all). A failure
    /// is not stored: a waiter then runs the probe itself (a rejection is never reused).
    /// `kept`: an answer that may come from, and is written to, the state directory's
    /// `SSHDAnswerStore` (`sshd -T`, never the check before a write).
    func answer(_ key: ProbeKey, kept: Bool = false, compute: () throws -> [String: [String]]) throws -> [String: [String]] {
        while true {
            let (known, mine) = entries.withLock { entries -> ([String: [String]]?, Bool) in
                if let known = Self.young(entries.answers[key]) { return (known, false) }
                return (nil, entries.running.insert(key).inserted)
            }
            if let known { return known }
            if mine {
                defer { _ = entries.withLock { $0.running.remove(key) } }
                let disk = kept ? self.kept : nil
                if let found = disk?.read(key) {
                    store(found.answer, at: found.at, for: key)
                    return found.answer
                }
                let computed = try compute()
                store(computed, at: Date(), for: key)
                disk?.write(computed, for: key)
                return computed
            }
            // sshd answers in milliseconds (and is killed after `SSHDProbe.timeout`).
            usleep(1_000)
        }
    }

    /// Whether an answer for `key` is stored or being computed by another caller now; one kept
    /// in the state directory (`kept`, as `answer`) is read into this cache.
    func isAnsweredOrRunning(_ key: ProbeKey, kept: Bool = false) -> Bool {
        if entries.withLock({ Self.young($0.answers[key]) != nil || $0.running.contains(key) }) { return true }
        guard kept, let found = self.kept?.read(key) else { return false }
        store(found.answer, at: found.at, for: key)
        return true
    }

    /// An answer still young enough to use: none older than `SSHDAnswerStore.lifetime`, so that
    /// a daemon sees within a day what no key names (a library sshd loads), as a new process does.
    private static func young(_ entry: (answer: [String: [String]], at: Date)?) -> [String: [String]]? {
        guard let entry, Date().timeIntervalSince(entry.at) < SSHDAnswerStore.lifetime else { return nil }
        return entry.answer
    }

    private func store(_ answer: [String: [String]], at: Date, for key: ProbeKey) {
        entries.withLock { entries in
            if entries.answers.updateValue((answer, at), forKey: key) == nil { entries.order.append(key) }
            while entries.order.count > limit {
                entries.answers[entries.order.removeFirst()] = nil
            }
        }
    }
}

/// The throwaway host key sshd needs to start a probe, made once per process with
/// `ssh-keygen` in a private folder (mode 0700; as root 0750 and the key 0640, owner root and
/// group nobody, so the unprivileged sshd can read it and nobody else can), shared by all
/// probes, removed at exit. A key that vanished (a temporary-folder cleaner) is made again.
///
/// A process killed outside its control (SIGKILL, the OOM killer) never reaches its exit
/// handler: its folder's name carries its pid namespace and pid, and the next Bulwark that makes
/// a key removes the folders of this naming whose process is gone, where they are its own user's
/// real folders in its own pid namespace (a container sharing the temporary folder sees other
/// pids, or none, for the same numbers).
enum SSHDHostKey {
    private static let folder = Mutex<String?>(nil)
    /// The folder being made right now (under `folder`'s lock), for the exit handler, which
    /// cannot take that lock while a key is being made.
    private static let making = Mutex<String?>(nil)
    private static let cleanup: Void = { atexit { SSHDHostKey.remove() } }()
    static let prefix = "bulwark-sshd-key-"

    static func path() throws -> String {
        try folder.withLock { (folder: inout String?) throws -> String in
            if let folder, FileManager.default.fileExists(atPath: folder + "/host_key") { return folder + "/host_key" }
            if let stale = folder { try? FileManager.default.removeItem(atPath: stale) }
            folder = nil
            let namespace = pidNamespace()
            if let namespace { removeLeftovers(in: NSTemporaryDirectory(), namespace: namespace) }
            _ = cleanup
            var template = Array((NSTemporaryDirectory() + "/\(prefix)\(namespace ?? "unknown")-\(getpid())-XXXXXX").utf8CString)
            guard mkdtemp(&template) != nil else { throw HostError("cannot create a temporary folder: \(errnoText())") }
            let directory = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
            making.withLock { $0 = directory }
            defer { making.withLock { $0 = nil } }
            do {
                let key = directory + "/host_key"
                let keygen = try SSHDProbe.run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "bulwark-guard", "-f", key],
                                               in: directory)
                guard keygen.status == 0 else { throw HostError("ssh-keygen failed: \(SSHDProbe.messageLines(keygen.errors))") }
                if geteuid() == 0 {
                    for path in [key, key + ".pub"] {
                        guard chown(path, 0, SSHDProbe.unprivileged.gid) == 0, chmod(path, 0o640) == 0 else {
                            throw HostError("cannot share the probe host key with sshd: \(errnoText())", path: path)
                        }
                    }
                    guard chown(directory, 0, SSHDProbe.unprivileged.gid) == 0, chmod(directory, 0o750) == 0 else {
                        throw HostError("cannot share the probe host key folder with sshd: \(errnoText())", path: directory)
                    }
                }
                folder = directory
                return key
            } catch {
                try? FileManager.default.removeItem(atPath: directory)
                throw error
            }
        }
    }

    /// This process's pid namespace (the inode `/proc/self/ns/pid` names), or nil where it
    /// cannot be read: then no folder is ever taken for a gone process's.
    static func pidNamespace() -> String? {
        guard let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/pid"),
              link.hasPrefix("pid:["), link.hasSuffix("]") else { return nil }
        return UInt64(link.dropFirst(5).dropLast()).map(String.init)
    }

    /// Removes the key folders in `temporary` that processes now gone left behind: named
    /// `bulwark-sshd-key-NAMESPACE-PID-…` in this process's pid namespace with no process PID,
    /// real folders (not links) owned by this process's user. A live process with that pid
    /// (another Bulwark, or one that reused it) keeps its folder; another user's, or another pid
    /// namespace's, is never touched.
    static func removeLeftovers(in temporary: String, namespace: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: temporary) else { return }
        for name in names where name.hasPrefix(prefix + namespace + "-") {
            let rest = name.dropFirst(prefix.count + namespace.count + 1)
            guard let dash = rest.firstIndex(of: "-"), let pid = pid_t(rest[..<dash]), pid > 0,
                  kill(pid, 0) != 0, errno == ESRCH else { continue }
            let path = temporary + "/" + name
            var info = stat()
            guard lstat(path, &info) == 0, info.st_mode & FileType.mask == FileType.directory, info.st_uid == geteuid() else { continue }
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    /// At exit: removes the folder, or the one another thread is making right now.
    private static func remove() {
        let done: Void? = folder.withLockIfAvailable { folder in
            if let folder { try? FileManager.default.removeItem(atPath: folder) }
        }
        if done == nil, let directory = making.withLock({ $0 }) { try? FileManager.default.removeItem(atPath: directory) }
    }
}

/// Counts the sshd processes Bulwark starts (the guard's probes, the checks before a write) in
/// the current task and its child tasks, for tests: `SSHDProbeCounter.$current.withValue(counter) { … }`.
public final class SSHDProbeCounter: Sendable {
    @TaskLocal public static var current: SSHDProbeCounter?

    private let runs = Mutex((started: 0, running: 0, peak: 0))
    private let judged = Atomic(0)
    private let meeting: Int

    /// With `meetingAt` n, each of the first n sshd processes waits (up to 10 s) until n have
    /// started before it runs: probes that are made at once then overlap however busy the
    /// machine is, and probes made one after the other never do (the first waits out the 10 s
    /// alone), so `peakConcurrentRuns` tells the two apart without depending on timing.
    public init(meetingAt: Int = 0) { meeting = meetingAt }

    /// sshd processes started so far (`sshd -t` and `sshd -T`).
    public var sshdRuns: Int { runs.withLock { $0.started } }

    /// The most sshd processes that ran at once.
    public var peakConcurrentRuns: Int { runs.withLock { $0.peak } }

    func started() {
        let count = runs.withLock { runs in
            runs.started += 1
            runs.running += 1
            runs.peak = max(runs.peak, runs.running)
            return runs.started
        }
        guard count < meeting else { return }
        let deadline = ContinuousClock.now + .seconds(10)
        while runs.withLock({ $0.started }) < meeting, ContinuousClock.now < deadline { usleep(1_000) }
    }

    func ended() { runs.withLock { $0.running -= 1 } }

    /// Candidates the sshd guard judged so far (a verdict a plan already had is not counted).
    public var candidatesJudged: Int { judged.load(ordering: .relaxed) }

    func judging() { judged.add(1, ordering: .relaxed) }
}

/// Files of a probe's private folder, and the key of sshd's verdict on a file's exact bytes.
enum ProbeFile {
    /// Creates `path` (mode 0600, never following a link, never over an existing file) holding
    /// `bytes`. Not synced: the folder is private and thrown away after the probe, so a sync
    /// per candidate file would only make every probe wait for the disk.
    static func write(_ bytes: [UInt8], to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw HostError("cannot write the candidate configuration: \(errnoText())", path: path) }
        defer { close(fd) }
        guard Descriptor.writeAll(fd, bytes) else {
            throw HostError("cannot write the candidate configuration: \(errnoText())", path: path)
        }
    }
}
