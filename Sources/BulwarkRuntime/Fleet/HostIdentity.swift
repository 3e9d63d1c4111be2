package import BulwarkCore
import Foundation

/// Who this host is, for binding targets to host agents (`bulwark run --self`): its machine id
/// and its host name, read from a root folder so that tests (and containers) use their own.
///
/// A target is bound to this host when its name is the host name, or its `machine-id` label is
/// the machine id, or its `hostname` label is the host name. Comparisons are exact (the machine
/// id in lower case, as systemd writes it): a near miss binds nothing, and an agent that is bound
/// to nothing changes nothing.
package struct HostIdentity: Sendable, Equatable, CustomStringConvertible {
    package var machineID: String?
    package var hostname: String?

    package static let machineIDLabel = Target.machineIDLabel
    package static let hostnameLabel = Target.hostnameLabel

    package init(machineID: String?, hostname: String?) {
        self.machineID = machineID
        self.hostname = hostname
    }

    /// Reads `<root>/etc/machine-id` and `<root>/etc/hostname`; for the real root (`/`) a missing
    /// host name file falls back to the kernel's (`gethostname`). A machine id that is not 32 hex
    /// digits (systemd's format) is ignored, as is an empty or over-long host name.
    package static func read(root: String) -> HostIdentity {
        let base = root.hasSuffix("/") ? String(root.dropLast()) : root
        func firstLine(_ path: String) -> String? {
            guard let data = FileManager.default.contents(atPath: base + path), data.count <= 4096,
                  let text = String(data: data, encoding: .utf8) else { return nil }
            let line = text.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            return line.isEmpty ? nil : line
        }
        let machine = firstLine("/etc/machine-id").map { $0.lowercased() }
            .flatMap { $0.count == 32 && $0.allSatisfy(\.isHexDigit) ? $0 : nil }
        var host = firstLine("/etc/hostname")
        if host == nil, base.isEmpty {
            var buffer = [CChar](repeating: 0, count: 256)
            if gethostname(&buffer, buffer.count) == 0 {
                host = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
        }
        host = host.flatMap { (1...253).contains($0.utf8.count) && !$0.contains(where: \.isWhitespace) ? $0 : nil }
        return HostIdentity(machineID: machine, hostname: host)
    }

    /// Whether `target` is bound to this host: a target of an adapter that acts on the machine it
    /// runs on (`Target.isMachineLocal`: host files, nftables) only. Every other target (a
    /// database, a cloud account) is the controller replicas' (the lease candidates,
    /// `Daemon+Source`): one named after a host or labelled with it must not get a second writer
    /// in that host's agent.
    package func binds(_ target: Target) -> Bool {
        guard target.isMachineLocal else { return false }
        if let hostname, target.name == hostname || target.labels[Self.hostnameLabel] == hostname { return true }
        if let machineID, target.labels[Self.machineIDLabel]?.lowercased() == machineID { return true }
        return false
    }

    package var description: String {
        "host name \(hostname.map { "'\(quotedForMessage($0))'" } ?? "unknown"), machine id \(machineID ?? "unknown")"
    }
}
