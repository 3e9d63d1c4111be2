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

    /// A network from raw address bytes (4 or 16) and a prefix length, host bits cleared.
    init?(bytes raw: [UInt8], prefix: Int? = nil) {
        guard raw.count == 4 || raw.count == 16 else { return nil }
        // An IPv4-mapped IPv6 address (::ffff:a.b.c.d), as a dual-stack socket reports an IPv4 peer, is that IPv4 address.
        if raw.count == 16, raw.prefix(10).allSatisfy({ $0 == 0 }), raw[10] == 0xFF, raw[11] == 0xFF {
            self.init(bytes: Array(raw.suffix(4)), prefix: prefix.map { max(0, $0 - 96) })
            return
        }
        var copy = raw
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(raw.count == 4 ? AF_INET : AF_INET6, &copy, &buffer, socklen_t(buffer.count)) != nil else { return nil }
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        self.init(prefix.map { "\(text)/\($0)" } ?? text)
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

extension Network {
    /// Whether the two networks share any address.
    func overlaps(_ other: Network) -> Bool {
        guard isIPv6 == other.isIPv6 else { return false }
        return sharesBits(with: other, count: min(prefix, other.prefix))
    }

    /// Whether every address of `other` is in this network.
    func contains(_ other: Network) -> Bool {
        isIPv6 == other.isIPv6 && prefix <= other.prefix && sharesBits(with: other, count: prefix)
    }

    private func sharesBits(with other: Network, count: Int) -> Bool {
        for bit in 0..<count where (bytes[bit / 8] >> (7 - bit % 8)) & 1 != (other.bytes[bit / 8] >> (7 - bit % 8)) & 1 {
            return false
        }
        return true
    }

    /// IPv4's and IPv6's loopback networks, 127.0.0.0/8 and ::1.
    static let loopbacks = [Network("127.0.0.0/8")!, Network("::1")!]

    /// 127.0.0.0/8 or ::1: traffic that stays on the host, accepted on `lo` by every chain Bulwark writes.
    var isLoopback: Bool {
        isIPv6 ? (prefix == 128 && bytes == [UInt8](repeating: 0, count: 15) + [1]) : (bytes[0] == 127 && prefix >= 8)
    }
}
