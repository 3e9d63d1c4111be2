internal import Foundation
internal import Glibc

/// The proxies whose `X-Forwarded-For` is believed (`bulwark run --trusted-proxy`): behind one,
/// every client has the proxy's address, so one client's failed authentications would use up the
/// refusals of all (and get the forge's real webhook 429). A request from a trusted proxy counts
/// as the address its proxies saw: the last `X-Forwarded-For` entry that is not itself a trusted
/// proxy (entries further left are what the client claimed, and anyone can claim anything). A
/// request from any other peer counts as that peer, whatever it sends in the header.
public struct TrustedProxies: Sendable, Equatable {
    /// One trusted range: an address and how many of its leading bits must match.
    struct Range: Sendable, Equatable {
        var bytes: [UInt8]
        var bits: Int

        func contains(_ address: [UInt8]) -> Bool {
            guard address.count == bytes.count else { return false }
            var left = bits
            for index in bytes.indices where left > 0 {
                let mask: UInt8 = left >= 8 ? 0xff : ~(0xff >> UInt8(left))
                if address[index] & mask != bytes[index] & mask { return false }
                left -= 8
            }
            return true
        }
    }

    let ranges: [Range]

    public static let none = TrustedProxies(ranges: [])

    init(ranges: [Range]) { self.ranges = ranges }

    /// - Parameter specifications: addresses (`10.0.0.5`, `fd00::1`) or CIDR ranges (`10.0.0.0/8`).
    /// - Throws: `TrustedProxyError` naming the first that is neither.
    public init(_ specifications: [String]) throws {
        ranges = try specifications.map { text in
            let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            guard let bytes = Self.bytes(String(parts[0])) else { throw TrustedProxyError(text) }
            var bits = bytes.count * 8
            if parts.count == 2 {
                guard let prefix = Int(parts[1]), (0...bits).contains(prefix), parts[1].allSatisfy(\.isASCII) else {
                    throw TrustedProxyError(text)
                }
                bits = prefix
            }
            return Range(bytes: bytes, bits: bits)
        }
    }

    public var isEmpty: Bool { ranges.isEmpty }

    func trusts(_ address: String) -> Bool {
        guard !ranges.isEmpty, let bytes = Self.bytes(address) else { return false }
        return ranges.contains { $0.contains(bytes) }
    }

    /// The address a request counts as (see the type): `peer` itself, or, when `peer` is a trusted
    /// proxy, the nearest address its `X-Forwarded-For` values (in the order they came) name that
    /// is not one. A malformed entry there ends the search at the proxy: only a proxy wrote it.
    func client(peer: String, forwardedFor values: [String]) -> String {
        guard trusts(peer) else { return peer }
        let entries = values.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        for entry in entries.reversed() {
            guard Self.bytes(entry) != nil else { return peer }
            if !trusts(entry) { return entry }
        }
        return peer
    }

    /// The address's bytes in network order (4 for IPv4, 16 for IPv6; an IPv4-mapped IPv6
    /// address as its IPv4 address), or nil when it is not an address.
    static func bytes(_ text: String) -> [UInt8]? {
        guard !text.isEmpty, text.utf8.count <= 64 else { return nil }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: v4) { Array($0) } }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: v6) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff { return Array(bytes[12...]) }
        return bytes
    }
}

/// A `--trusted-proxy` value that is neither an address nor a CIDR range.
public struct TrustedProxyError: Error, CustomStringConvertible {
    public let value: String
    init(_ value: String) { self.value = value }
    public var description: String {
        "--trusted-proxy '\(value)' is neither an IP address nor a CIDR range (such as 10.0.0.5, 10.0.0.0/8 or fd00::/8)"
    }
}
