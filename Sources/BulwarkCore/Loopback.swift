internal import Foundation

/// Whether a URL's host is this machine (`localhost`, 127.0.0.0/8, `::1`): the one place a
/// secret may travel in clear text to. The git password over plain http, a notifier's URL and
/// an AWS endpoint a policy names are judged by it alike.
public enum Loopback {
    /// True when `url` names a loopback host; false for another host or an unreadable URL.
    public static func isHost(of url: String) -> Bool {
        guard var host = URLComponents(string: url)?.host?.lowercased(), !host.isEmpty else { return false }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host == "localhost" || host == "::1" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }
}
