internal import BulwarkCore
internal import Synchronization

/// What one plan (`ObservationScope`; also the verifications of one coalesced write, after the
/// write) keeps of the host targets it reads, so that a target's resources read it as one
/// snapshot without each walking to the same files again:
/// - each target root, opened once and held (at most `rootLimit` at a time: `TargetTurns`
///   observes a few targets at a time), where every read used to open and close it;
/// - the file a path led to (`ContentCache`), found again without a walk while its parse is
///   kept; and the parses of files changed a moment ago, which the cache keeps for no one else;
/// - each root's accounts as the guards read them, with the login shells and key files they
///   looked at (`HostAccounts.reading`), kept even for a file changed a moment ago;
/// - each root's sshd configuration as the plan first read it (`SSHDConfigDriver.read`): a host's
///   sshd resources and the guard's judgements of them read it without a walk each.
///
/// What a path resolves to (`HostRoot.resolve`) is not kept: callers hand that path to calls
/// that follow links, and a folder swapped for a user's link since must count.
///
/// So a plan's guards judge the target as the plan first read it, as its observations do: a few
/// milliseconds earlier than reading again would. The same holds between a plan and its apply;
/// what a fix writes is read again under the lock (and sshd -t checks the whole candidate there).
///
/// Never used under a target's lock: a fix reads afresh, from a still file. Released with the
/// scope, descriptors closed; the next plan, a fix or another write's verifications walk again.
final class PlanReads: Sendable {
    static let rootLimit = 32
    static let pathLimit = 4096

    /// What is kept per root path, at most `rootLimit` roots: the oldest is let go first.
    private struct PerRoot<Value> {
        var values: [String: Value] = [:]
        /// Root paths in the order they were kept.
        var order: [String] = []

        /// Keeps `value` as the root at `path`'s; the one kept already when another thread was first.
        mutating func keep(_ value: Value, for path: String) -> Value {
            if let kept = values[path] { return kept }
            if order.count >= PlanReads.rootLimit { values[order.removeFirst()] = nil }
            values[path] = value
            order.append(path)
            return value
        }
    }

    /// A file's parse by one cache (`ContentCache`). The cache is held, so that no other cache
    /// made while the plan lasts can have its identity.
    private struct ParseKey: Hashable {
        let cache: any AnyObject & Sendable
        let file: ContentKey

        static func == (lhs: ParseKey, rhs: ParseKey) -> Bool { lhs.cache === rhs.cache && lhs.file == rhs.file }

        func hash(into hasher: inout Hasher) {
            hasher.combine(ObjectIdentifier(cache))
            hasher.combine(file)
        }
    }

    private struct State {
        var roots = PerRoot<Directory>()
        var found: [String: ContentKey] = [:]
        var parses: [ParseKey: any Sendable] = [:]
        var accounts = PerRoot<HostAccounts>()
        var sshdConfigs = PerRoot<SSHDConfigDriver.Config>()
    }

    private let state = Mutex(State())

    /// The current plan's, or nil outside a plan.
    static var current: PlanReads? { ObservationScope.current?.slot { PlanReads() } }

    /// The plan's open descriptor of the root at `path`, if it holds one.
    func root(_ path: String) -> Directory? { state.withLock { $0.roots.values[path] } }

    /// Holds `directory` as the root at `path`'s for the rest of the plan; the one held already
    /// when another thread was first (`directory` is then closed when released).
    func hold(_ directory: Directory, as path: String) -> Directory {
        state.withLock { $0.roots.keep(directory, for: path) }
    }

    /// The accounts of the root at `path` as this plan read them.
    func accounts(under path: String) -> HostAccounts? { state.withLock { $0.accounts.values[path] } }

    /// Keeps `accounts` as the root at `path`'s for the rest of the plan; the ones kept already
    /// when another thread was first.
    func keep(_ accounts: HostAccounts, under path: String) -> HostAccounts {
        state.withLock { $0.accounts.keep(accounts, for: path) }
    }

    /// The sshd configuration of the root at `path` as this plan read it.
    func sshdConfig(under path: String) -> SSHDConfigDriver.Config? { state.withLock { $0.sshdConfigs.values[path] } }

    /// Keeps `config` as the root at `path`'s sshd configuration for the rest of the plan; the
    /// one kept already when another thread was first.
    func keep(_ config: SSHDConfigDriver.Config, under path: String) -> SSHDConfigDriver.Config {
        state.withLock { $0.sshdConfigs.keep(config, for: path) }
    }

    /// The parse `cache` made in this plan of the file `file`, changed a moment ago.
    func parse<Value: Sendable>(by cache: ContentCache<Value>, of file: ContentKey) -> Value? {
        state.withLock { $0.parses[ParseKey(cache: cache, file: file)] } as? Value
    }

    /// Keeps `value`, `cache`'s parse of the file `file` (changed a moment ago), for the rest of the plan.
    func keep<Value: Sendable>(_ value: Value, parsedBy cache: ContentCache<Value>, of file: ContentKey) {
        state.withLock { state in
            if state.parses.count >= Self.pathLimit { state.parses.removeAll(keepingCapacity: true) }
            state.parses[ParseKey(cache: cache, file: file)] = value
        }
    }

    /// The file a read of `path` under the root `root` found earlier in this plan.
    func file(_ path: String, under root: String) -> ContentKey? {
        state.withLock { $0.found[root + "\u{0}" + path] }
    }

    /// Remembers that a read of `path` under `root` found the file `key`.
    func found(_ key: ContentKey, at path: String, under root: String) {
        state.withLock { state in
            if state.found.count >= Self.pathLimit { state.found.removeAll(keepingCapacity: true) }
            state.found[root + "\u{0}" + path] = key
        }
    }
}
