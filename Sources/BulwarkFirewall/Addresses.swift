internal import Foundation

/// IPv4 and IPv6 addresses and networks in the canonical form nftables prints: host bits
/// cleared, a single address without `/32` or `/128`, IPv6 compressed.
struct Network: Hashable, Comparable, CustomStringConvertible {
    var isIPv6: Bool
    var bytes: [UInt8]
    var prefix: Int

    init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        guard let address = parts.first, !address.isEmpty else { return nil }
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, address, &v4) == 1 {
            isIPv6 = false
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
        } else if inet_pton(AF_INET6, address, &v6) == 1 {
            isIPv6 = true
            bytes = withUnsafeBytes(of: &v6) { Array($0) }
        } else {
            return nil
        }
        let maximum = bytes.count * 8
        if parts.count == 2 {
            guard let value = Int(parts[1]), (0...maximum).contains(value) else { return nil }
            prefix = value
        } else {
            prefix = maximum
        }
        for index in bytes.indices {
            let keep = max(0, min(8, prefix - index * 8))
            bytes[index] &= keep == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - keep))
        }
    }

    var address: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        var copy = bytes
        _ = inet_ntop(isIPv6 ? AF_INET6 : AF_INET, &copy, &buffer, socklen_t(buffer.count))
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    var description: String { prefix == bytes.count * 8 ? address : "\(address)/\(prefix)" }

    static func < (a: Network, b: Network) -> Bool {
        if a.isIPv6 != b.isIPv6 { return !a.isIPv6 }
        if a.bytes != b.bytes { return a.bytes.lexicographicallyPrecedes(b.bytes) }
        return a.prefix < b.prefix
    }
}
