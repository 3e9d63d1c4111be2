internal import Foundation
internal import Glibc

/// systemd's service notification protocol (sd_notify(3)), without libsystemd: one datagram of
/// newline-separated `KEY=value` assignments to the socket `$NOTIFY_SOCKET` names (a path, or
/// an abstract socket written `@name`). Under `Type=notify` systemd holds the unit in
/// "activating" until `READY=1`, restarts it when `WATCHDOG=1` stops arriving within
/// `WatchdogSec=`, and shows `STATUS=` in `systemctl status`.
package struct SystemdNotifier: Sendable {
    package enum Problem: Error, CustomStringConvertible, Equatable {
        case address(String)
        case send(Int32)

        package var description: String {
            switch self {
            case .address(let why): "NOTIFY_SOCKET: \(why)"
            case .send(let code): "cannot notify systemd: \(String(cString: strerror(code)))"
            }
        }
    }

    /// The socket's address: a path, or `@name` for the abstract namespace.
    package let address: String
    /// How often systemd expects `WATCHDOG=1`, when it asked for it and for this process.
    package let watchdog: Duration?

    /// The notifier systemd set up for this process, or nil when it did not (`NOTIFY_SOCKET`
    /// unset: not started by systemd, or not `Type=notify`).
    /// - Parameter pid: this process, to honour `WATCHDOG_PID` (the watchdog is meant for the
    ///   main process only).
    package init?(environment: [String: String], pid: Int32 = getpid()) throws {
        guard let address = environment["NOTIFY_SOCKET"], !address.isEmpty else { return nil }
        guard address.hasPrefix("/") || address.hasPrefix("@") else {
            throw Problem.address("'\(address)' is neither a path nor an abstract socket (@name)")
        }
        guard address.utf8.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path) else {
            throw Problem.address("the socket path is longer than a Unix socket address can hold")
        }
        self.address = address
        watchdog = Self.watchdogInterval(environment: environment, pid: pid)
    }

    /// `WATCHDOG_USEC` when `WATCHDOG_PID` is unset or names `pid`; nil otherwise or when invalid.
    package static func watchdogInterval(environment: [String: String], pid: Int32) -> Duration? {
        if let owner = environment["WATCHDOG_PID"], Int32(owner) != pid { return nil }
        guard let text = environment["WATCHDOG_USEC"], let micros = Int64(text), micros > 0 else { return nil }
        return .microseconds(micros)
    }

    /// The variables a child process must not inherit: a tool Bulwark runs (`sshd -t`, git,
    /// apt) could otherwise report readiness or feed the watchdog on Bulwark's behalf.
    package static let variables = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"]

    /// Sends the assignments as one datagram (`READY=1`, `STATUS=…`, `WATCHDOG=1`, `STOPPING=1`).
    /// A newline inside a value would start a forged assignment, so it becomes a space.
    package func send(_ assignments: [String: String]) throws {
        let message = assignments.keys.sorted().map { key in
            let value = assignments[key, default: ""].map { $0.isNewline ? " " : String($0) }.joined()
            return "\(key)=\(value)"
        }.joined(separator: "\n") + "\n"
        do {
            try UnixDatagram.send(Array(message.utf8), to: address)
        } catch {
            throw Problem.send(error.code)
        }
    }
}
