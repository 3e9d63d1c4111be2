package import Foundation

/// One controller replica process: the name its restarts share (its audit ref, its share of the
/// targets) and a nonce made when the process starts. Two live processes given the same name (a
/// cloned VM or volume carries the state directory's instance name; `--replica ctl` on two
/// machines) differ in their nonce, so the lease store can refuse the second instead of letting
/// both hold every lease of that name.
package struct ReplicaIdentity: Sendable, Hashable {
    package var name: String
    /// Random, made once per process; not a secret (it tells processes apart, it proves nothing).
    package var nonce: String
    /// Where the process runs (`pid 4242 on ctl-1`), shown to whoever is refused the name.
    package var process: String

    package init(name: String, nonce: String, process: String) {
        self.name = name
        self.nonce = nonce
        self.process = process
    }

    /// `name` for this process: a fresh 128-bit nonce, and this process's pid and host name.
    package static func thisProcess(name: String) -> ReplicaIdentity {
        var generator = SystemRandomNumberGenerator()
        let nonce = (0..<2).map { _ in String(generator.next() as UInt64, radix: 16) }.joined(separator: "-")
        // gethostname, not ProcessInfo.hostName, which may ask DNS.
        var buffer = [CChar](repeating: 0, count: 256)
        let host = gethostname(&buffer, buffer.count) == 0
            ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "an unknown host"
        return ReplicaIdentity(name: name, nonce: nonce, process: "pid \(ProcessInfo.processInfo.processIdentifier) on \(host)")
    }
}

/// The live heartbeat of another process under a replica's name, as the lease store has it.
package struct ReplicaHeartbeat: Sendable, Equatable {
    package var name: String
    package var process: String
    /// When it expires unless renewed (the store's clock), and how long that is from the store's now.
    package var expiresAt: Date
    package var expiresIn: Duration

    package init(name: String, process: String, expiresAt: Date, expiresIn: Duration) {
        self.name = name
        self.process = process
        self.expiresAt = expiresAt
        self.expiresIn = expiresIn
    }
}
