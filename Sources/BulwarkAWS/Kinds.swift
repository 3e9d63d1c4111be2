internal import BulwarkCore
internal import Foundation

// MARK: - SecurityGroupIngress

/// `SecurityGroupIngress`: `spec: {groups: all | [ids or names], forbid: [{cidr, ports: [...]}]}`.
/// One property per security group (`ingress:sg-…`): the ingress rules that open a forbidden
/// port to a forbidden network, desired `(none)`. A rule through a managed prefix list counts as
/// one rule per entry of the list (`tcp 22-22 0.0.0.0/0 via pl-…`). A fix revokes exactly those
/// rules, in one call per group, and nothing else; for a prefix list, that is the list's
/// reference on the rule (the list itself is left alone). A rule that lets in more than is
/// forbidden (`Rule.isForbidden`) is never revoked: its guard blocks the change.
struct SecurityGroupDriver: ResourceDriver {
    static let none = "(none)"

    /// What the resource governs, typed once when the spec is read; its text is the spec's subject.
    struct Scope: TypedSpec, CustomStringConvertible {
        struct Forbidden: Hashable, Sendable {
            var cidr: String
            var ports: [Int]
        }

        /// nil: every group.
        var groups: [String]?
        var forbid: [Forbidden]

        /// `groups=all forbid=0.0.0.0/0:22,3389 ::/0:22`
        var description: String {
            "groups=" + (groups?.joined(separator: ",") ?? "all") + " forbid="
                + forbid.map { "\($0.cidr):" + $0.ports.map(String.init).joined(separator: ",") }.joined(separator: " ")
        }
    }

    static func parse(_ spec: SpecReader) -> ResourceSpec? {
        guard spec.entries() != nil else { return nil }
        spec.allowOnly(["groups", "forbid"])
        var groups: [String]?
        if let reader = spec.field("groups") {
            if case .scalar = reader.node.value {
                guard reader.oneOf(["all"]) != nil else { return nil }
            } else {
                guard let list = reader.strings() else { return nil }
                if list.isEmpty { reader.fail("expected 'all' or at least one group id or name") ; return nil }
                groups = list
            }
        }
        guard let forbidReader = spec.field("forbid", required: true), let items = forbidReader.items() else { return nil }
        if items.isEmpty { forbidReader.fail("expected at least one {cidr, ports} entry"); return nil }
        var forbid: [Scope.Forbidden] = []
        for item in items {
            guard item.entries() != nil else { return nil }
            item.allowOnly(["cidr", "ports"])
            guard let cidrReader = item.field("cidr", required: true), let cidr = cidrReader.string(),
                  let portsReader = item.field("ports", required: true), let portItems = portsReader.items() else { return nil }
            guard let network = CIDR(cidr) else {
                cidrReader.fail("expected an IPv4 or IPv6 network such as 0.0.0.0/0 or ::/0, got '\(cidr)'")
                return nil
            }
            let ports = portItems.compactMap { $0.int(in: 0...65535) }
            guard ports.count == portItems.count else { return nil }
            if ports.isEmpty { portsReader.fail("expected at least one port"); return nil }
            forbid.append(Scope.Forbidden(cidr: network.description, ports: Array(Set(ports)).sorted()))
        }
        let scope = Scope(groups: groups, forbid: forbid)
        return ResourceSpec(subject: scope.description, properties: [DesiredProperty("ingress:*", none)], typed: scope)
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let scope = try AWSAdapter.spec(resource, Scope.self)
        let client = try await AWSAdapter.client(target)
        let groups = try await Self.groups(client)
        // A named group that is not there has no property, which read as in sync: its exposure is
        // unknown, so the resource fails instead.
        if let named = scope.groups {
            let missing = named.filter { entry in !groups.contains { $0.id == entry || $0.name == entry } }
            if !missing.isEmpty {
                throw AWSError(code: "GroupNotFound",
                               message: "no security group in \(client.region) has the id or name "
                                   + missing.map { "'\(quotedForMessage($0))'" }.joined(separator: ", ")
                                   + " (named in groups); its ingress cannot be judged: fix the name or remove it",
                               operation: "DescribeSecurityGroups")
            }
        }
        var values: [String: String?] = [:]
        var lists: [String: [String]] = [:]
        for group in groups where scope.groups.map({ $0.contains(group.id) || $0.contains(group.name) }) ?? true {
            let rules = try await Self.expanded(group, client, cache: &lists)
            let offending = Self.offending(rules, scope.forbid)
            values["ingress:\(group.id)"] = offending.isEmpty ? Self.none : offending.map(\.description).sorted().joined(separator: "; ")
        }
        return Observation(values: values)
    }

    /// The group's rules with each prefix-list rule replaced by one rule per entry of the list.
    /// `cache` holds the lists already read in this observation.
    static func expanded(_ group: Group, _ client: AWSClient, cache: inout [String: [String]]) async throws(AWSError) -> [Rule] {
        var rules = group.rules
        for reference in group.prefixLists {
            guard let list = reference.prefixList else { continue }
            let entries: [String]
            if let known = cache[list] {
                entries = known
            } else {
                entries = try await Self.entries(client, list, group: group.id)
                cache[list] = entries
            }
            for cidr in entries {
                var rule = reference
                rule.cidr = cidr
                rules.append(rule)
            }
        }
        return rules
    }

    /// The networks of a managed prefix list, canonical. A list that cannot be read, or an entry
    /// that is not a network, fails the observation: the rules through it are unknown, and
    /// leaving them out would report the group in sync.
    static func entries(_ client: AWSClient, _ list: String, group: String) async throws(AWSError) -> [String] {
        var cidrs: [String] = []
        var pages = Pagination(operation: "GetManagedPrefixListEntries")
        var token: String?
        repeat {
            var parameters = [("PrefixListId", list), ("MaxResults", "100")]
            if let token { parameters.append(("NextToken", token)) }
            let answer: XMLElement
            do {
                answer = try await client.query(.ec2, "GetManagedPrefixListEntries", parameters)
            } catch {
                var failure = error
                failure.message += "; security group \(group) lets traffic in through prefix list \(list), which cannot be read, "
                    + "so its ingress cannot be judged"
                throw failure
            }
            for item in answer.child("entrySet")?.children("item") ?? [] {
                guard let text = item.value("cidr"), let cidr = CIDR(text) else {
                    throw AWSError(code: "MalformedResponse",
                                   message: "prefix list \(list) (used by security group \(group)) has an entry that is not a network: "
                                       + "'\(quotedForMessage(item.value("cidr") ?? "none"))'",
                                   operation: "GetManagedPrefixListEntries")
                }
                cidrs.append(cidr.description)
            }
            token = try pages.next(answer.value("nextToken"))
        } while token != nil
        return cidrs
    }

    /// The rules that open a forbidden port to a forbidden network: for each port, the rules
    /// that let it in from networks overlapping the forbidden one, broadest first, as many as
    /// it takes together to let in every address of it. One rule for 0.0.0.0/0 does (and a
    /// rule for 10.1.0.0/16 beside it stays); so do 0.0.0.0/1 and 128.0.0.0/1, which an
    /// equal-network test let through; 10.0.0.0/8 alone does not.
    static func offending(_ rules: [Rule], _ forbid: [Scope.Forbidden]) -> [Rule] {
        let networks = rules.map { CIDR($0.cidr) }
        var found = Set<Int>()
        for forbidden in forbid {
            guard let network = CIDR(forbidden.cidr) else { continue }
            for port in forbidden.ports {
                let letIn = rules.indices.filter { index in
                    guard rules[index].covers(port), let other = networks[index] else { return false }
                    return other.ipv6 == network.ipv6 && other.high >= network.low && other.low <= network.high
                }.sorted { (networks[$0]?.high ?? 0) - (networks[$0]?.low ?? 0) > (networks[$1]?.high ?? 0) - (networks[$1]?.low ?? 0) }
                // Opened to every address anyone can reach from the internet is opened to the world:
                // for 0.0.0.0/0 and ::/0 the ranges no one routes there count as covered, so that
                // leaving out 0.0.0.0/8 (or a /32 of 10.0.0.0/8) is no way around it.
                let unreachable = network.low == 0 && network.high == (network.ipv6 ? UInt128.max : UInt128(UInt32.max))
                    ? (network.ipv6 ? CIDR.specialUse6 : CIDR.specialUse4) : []
                var taken: [Int] = []
                for index in letIn {
                    taken.append(index)
                    if network.isCovered(by: taken.compactMap { networks[$0] } + unreachable) {
                        found.formUnion(taken)
                        break
                    }
                }
            }
        }
        return found.sorted().map { rules[$0] }
    }

    /// What of `forbid` `rule` lets in, for a person: `22 from 0.0.0.0/0, 3389 from ::/0`.
    static func forbidden(_ forbid: [Scope.Forbidden], overlapping rule: Rule) -> String {
        let network = CIDR(rule.cidr)
        return forbid.compactMap { forbidden -> String? in
            let ports = forbidden.ports.filter(rule.covers)
            guard !ports.isEmpty, let other = CIDR(forbidden.cidr), let network, other.ipv6 == network.ipv6,
                  other.high >= network.low, other.low <= network.high else { return nil }
            return ports.map(String.init).joined(separator: ",") + " from \(forbidden.cidr)"
        }.joined(separator: ", ") + " is forbidden"
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        let client = try await AWSAdapter.client(target)
        for change in changes where change.property.hasPrefix("ingress:") && change.desired == Self.none {
            let group = String(change.property.dropFirst("ingress:".count))
            let rules = (change.observed ?? Self.none) == Self.none ? [] : (change.observed ?? "").components(separatedBy: "; ").compactMap(Rule.init)
            guard !rules.isEmpty else { continue }
            var parameters = [("GroupId", group)]
            // Two entries of one prefix list are one permission to revoke.
            var permissions: [Rule] = []
            for rule in rules where !permissions.contains(where: { $0.revokes(rule) }) { permissions.append(rule) }
            for (index, rule) in permissions.enumerated() {
                let prefix = "IpPermissions.\(index + 1)."
                parameters.append((prefix + "IpProtocol", rule.proto))
                if let from = rule.from, let to = rule.to {
                    parameters.append((prefix + "FromPort", String(from)))
                    parameters.append((prefix + "ToPort", String(to)))
                }
                if let list = rule.prefixList {
                    parameters.append((prefix + "PrefixListIds.1.PrefixListId", list))
                } else {
                    parameters.append(rule.cidr.contains(":") ? (prefix + "Ipv6Ranges.1.CidrIpv6", rule.cidr) : (prefix + "IpRanges.1.CidrIp", rule.cidr))
                }
            }
            do {
                _ = try await client.query(.ec2, "RevokeSecurityGroupIngress", parameters)
            } catch {
                // Already gone is what the fix wanted; observing again verifies the rest.
                guard error.code == "InvalidPermission.NotFound" else { throw error }
            }
        }
    }

    /// One ingress permission for one network: `tcp 22-22 0.0.0.0/0`, `all * ::/0`, or for one
    /// entry of a managed prefix list, `tcp 22-22 0.0.0.0/0 via pl-0abc`.
    struct Rule: CustomStringConvertible {
        var proto: String
        var from: Int?
        var to: Int?
        var cidr: String
        /// The managed prefix list the network is an entry of; nil for a rule's own range.
        var prefixList: String?

        init(proto: String, from: Int?, to: Int?, cidr: String, prefixList: String? = nil) {
            self.proto = proto
            self.from = from
            self.to = to
            self.cidr = cidr
            self.prefixList = prefixList
        }

        init?(_ text: String) {
            let parts = text.split(separator: " ").map(String.init)
            guard parts.count == 3 || (parts.count == 5 && parts[3] == "via" && parts[4].hasPrefix("pl-")) else { return nil }
            proto = parts[0] == "all" ? "-1" : parts[0]
            cidr = parts[2]
            prefixList = parts.count == 5 ? parts[4] : nil
            if parts[1] != "*" {
                let range = parts[1].split(separator: "-").compactMap { Int($0) }
                guard range.count == 2 else { return nil }
                from = range[0]
                to = range[1]
            }
        }

        var description: String {
            (proto == "-1" || from == nil ? "all * \(cidr)" : "\(proto) \(from ?? 0)-\(to ?? 0) \(cidr)")
                + (prefixList.map { " via \($0)" } ?? "")
        }

        /// The traffic it lets in, without the network: `tcp 22-22`, `all traffic`.
        var traffic: String {
            proto == "-1" || from == nil ? "all traffic" : "\(proto) \(from ?? 0)-\(to ?? 0)"
        }

        /// Whether revoking this rule's permission also revokes `other`'s: the same protocol and
        /// ports from the same prefix list, or the same network.
        func revokes(_ other: Rule) -> Bool {
            guard proto == other.proto, from == other.from, to == other.to else { return false }
            if let prefixList { return prefixList == other.prefixList }
            return other.prefixList == nil && cidr == other.cidr
        }

        /// Whether all it lets in is forbidden, so that revoking it takes away nothing else: tcp or
        /// udp (never all traffic, nor a protocol without ports), and each port of its range
        /// forbidden from networks that together hold its own. `tcp 0-65535 0.0.0.0/0` is not,
        /// where only 22 is forbidden; nor is 22 from 0.0.0.0/0 where only 10.0.0.0/8 is.
        func isForbidden(by forbid: [Scope.Forbidden]) -> Bool {
            guard ["tcp", "udp", "6", "17"].contains(proto), let from, let to, from <= to, let network = CIDR(cidr) else { return false }
            // More ports than are forbidden at all cannot each be forbidden.
            guard to - from < forbid.reduce(0, { $0 + $1.ports.count }) else { return false }
            return (from...to).allSatisfy { port in
                network.isCovered(by: forbid.filter { $0.ports.contains(port) }.compactMap { CIDR($0.cidr) })
            }
        }

        /// Whether traffic to `port` is let in: tcp or udp with the port in range, or all traffic.
        func covers(_ port: Int) -> Bool {
            if proto == "-1" { return true }
            guard proto == "tcp" || proto == "udp" || proto == "6" || proto == "17", let from, let to else { return false }
            return from <= port && port <= to
        }
    }

    struct Group {
        var id: String
        var name: String
        var rules: [Rule]
        /// Rules through a managed prefix list, its id in `prefixList` and no network yet.
        var prefixLists: [Rule] = []
    }

    static func groups(_ client: AWSClient) async throws(AWSError) -> [Group] {
        var groups: [Group] = []
        var pages = Pagination(operation: "DescribeSecurityGroups")
        var token: String?
        repeat {
            var parameters = [("MaxResults", "1000")]
            if let token { parameters.append(("NextToken", token)) }
            let answer = try await client.query(.ec2, "DescribeSecurityGroups", parameters)
            for item in answer.child("securityGroupInfo")?.children("item") ?? [] {
                guard let id = item.value("groupId") else { continue }
                var rules: [Rule] = []
                var prefixLists: [Rule] = []
                for permission in item.child("ipPermissions")?.children("item") ?? [] {
                    let proto = permission.value("ipProtocol") ?? "-1"
                    let from = permission.value("fromPort").flatMap { Int($0) }
                    let to = permission.value("toPort").flatMap { Int($0) }
                    let ranges = (permission.child("ipRanges")?.children("item") ?? []).compactMap { $0.value("cidrIp") }
                        + (permission.child("ipv6Ranges")?.children("item") ?? []).compactMap { $0.value("cidrIpv6") }
                    for cidr in ranges {
                        rules.append(Rule(proto: proto, from: proto == "-1" ? nil : from, to: proto == "-1" ? nil : to,
                                          cidr: CIDR(cidr)?.description ?? cidr))
                    }
                    for reference in permission.child("prefixListIds")?.children("item") ?? [] {
                        guard let list = reference.value("prefixListId"), !list.isEmpty else {
                            throw AWSError(code: "MalformedResponse", message: "security group \(id) has a rule through a prefix list "
                                               + "without its id", operation: "DescribeSecurityGroups")
                        }
                        prefixLists.append(Rule(proto: proto, from: proto == "-1" ? nil : from, to: proto == "-1" ? nil : to,
                                                cidr: "", prefixList: list))
                    }
                }
                groups.append(Group(id: id, name: item.value("groupName") ?? "", rules: rules, prefixLists: prefixLists))
            }
            token = try pages.next(answer.value("nextToken"))
        } while token != nil
        return groups
    }
}

/// An IPv4 or IPv6 network in canonical text, so that `::0/0` and `::/0` compare equal.
struct CIDR: CustomStringConvertible {
    var description: String
    /// The first and last address of the network, as numbers of its family.
    var ipv6: Bool
    var low: UInt128
    var high: UInt128

    /// IPv4 ranges not routed on the internet (RFC 6890: this network, private, shared,
    /// loopback, link-local, documentation, benchmarking, multicast and reserved).
    static let specialUse4 = ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
                              "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
                              "203.0.113.0/24", "224.0.0.0/3"].compactMap(CIDR.init)
    /// IPv6 outside global unicast (2000::/3), and its documentation prefix.
    static let specialUse6 = ["::/3", "4000::/2", "8000::/1", "2001:db8::/32"].compactMap(CIDR.init)

    /// Whether the union of `networks` holds every address of this one.
    func isCovered(by networks: [CIDR]) -> Bool {
        var next = low
        for network in networks.filter({ $0.ipv6 == ipv6 && $0.high >= low && $0.low <= high }).sorted(by: { $0.low < $1.low }) {
            guard network.low <= next else { return false }
            if network.high >= high { return true }
            next = max(next, network.high + 1)
        }
        return false
    }

    init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let length = Int(parts[1]) else { return nil }
        let address = String(parts[0])
        if address.contains(":") {
            var bytes = in6_addr()
            guard (0...128).contains(length), inet_pton(AF_INET6, address, &bytes) == 1 else { return nil }
            var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            guard inet_ntop(AF_INET6, &bytes, &buffer, socklen_t(buffer.count)) != nil else { return nil }
            description = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + "/\(length)"
            let value = withUnsafeBytes(of: &bytes) { $0.reduce(UInt128(0)) { $0 << 8 | UInt128($1) } }
            (ipv6, low, high) = (true, Self.span(value, length, bits: 128).low, Self.span(value, length, bits: 128).high)
        } else {
            var bytes = in_addr()
            guard (0...32).contains(length), inet_pton(AF_INET, address, &bytes) == 1 else { return nil }
            description = address + "/\(length)"
            let value = withUnsafeBytes(of: &bytes) { $0.reduce(UInt128(0)) { $0 << 8 | UInt128($1) } }
            (ipv6, low, high) = (false, Self.span(value, length, bits: 32).low, Self.span(value, length, bits: 32).high)
        }
    }

    /// The first and last address of `value`/`length` in a family of `bits`.
    private static func span(_ value: UInt128, _ length: Int, bits: Int) -> (low: UInt128, high: UInt128) {
        let hostBits = bits - length
        let host: UInt128 = hostBits == 128 ? .max : (UInt128(1) << hostBits) - 1
        return (value & ~host, value | host)
    }
}

// MARK: - S3PublicAccessBlock

/// `S3PublicAccessBlock`: `spec: {account: true, buckets: all | [names] | none}`. The account's
/// block (`account`) and each bucket's (`bucket:NAME`) must have all four flags on.
struct PublicAccessBlockDriver: ResourceDriver {
    static let flags = ["BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"]
    static let allOn = flags.map { "\($0)=true" }.joined(separator: " ")

    /// What the resource governs, typed once when the spec is read.
    struct Scope: TypedSpec {
        var account: Bool
        /// nil: every bucket of the account; empty: none.
        var buckets: [String]?
    }

    static func parse(_ spec: SpecReader) -> ResourceSpec? {
        guard spec.entries() != nil else { return nil }
        spec.allowOnly(["account", "buckets"])
        var scope = Scope(account: spec.field("account")?.bool() ?? true, buckets: nil)
        if let reader = spec.field("buckets") {
            if case .scalar = reader.node.value {
                guard let word = reader.oneOf(["all", "none"]) else { return nil }
                scope.buckets = word == "all" ? nil : []
            } else {
                guard let names = reader.strings() else { return nil }
                scope.buckets = names
            }
        }
        var properties: [DesiredProperty] = []
        if scope.account { properties.append(DesiredProperty("account", allOn)) }
        properties += scope.buckets.map { $0.map { DesiredProperty("bucket:\($0)", allOn) } } ?? [DesiredProperty("bucket:*", allOn)]
        if properties.isEmpty { spec.fail("nothing to govern: set account: true or list buckets"); return nil }
        return ResourceSpec(subject: "public-access-block", properties: properties, typed: scope)
    }

    static func render(_ configuration: XMLElement?) -> String {
        flags.map { "\($0)=\(configuration?.value($0) == "true" ? "true" : "false")" }.joined(separator: " ")
    }

    static var body: [UInt8] {
        Array(("<PublicAccessBlockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
            + flags.map { "<\($0)>true</\($0)>" }.joined() + "</PublicAccessBlockConfiguration>").utf8)
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let scope = try AWSAdapter.spec(resource, Scope.self)
        let client = try await AWSAdapter.client(target)
        var values: [String: String?] = [:]
        if scope.account {
            let account = try await AWSAdapter.account(target, client)
            let answer = try await client.rest(.s3control, "GetPublicAccessBlock", method: "GET",
                                               path: "/v20180820/configuration/publicAccessBlock",
                                               headers: ["x-amz-account-id": account], allowNotFound: true)
            values["account"] = Self.render(answer.status == 404 ? nil : answer.xml)
        }
        let buckets: [String]
        if let listed = scope.buckets {
            buckets = listed
        } else {
            let answer = try await client.rest(.s3, "ListBuckets", method: "GET", path: "/")
            buckets = (answer.xml?.child("Buckets")?.children("Bucket") ?? []).compactMap { $0.value("Name") }
        }
        for bucket in buckets {
            let answer = try await client.rest(.s3, "GetPublicAccessBlock", method: "GET", path: "/" + SigV4.encode(bucket),
                                               query: [("publicAccessBlock", "")], allowNotFound: true)
            if answer.status == 404, answer.xml?.find("Code")?.text == "NoSuchBucket" {
                // Listed by ListBuckets and deleted since: gone, nothing to judge. Named in the
                // spec and not there: it has no property, which read as in sync; the resource fails.
                guard scope.buckets != nil else { continue }
                throw AWSError(code: "NoSuchBucket",
                               message: "bucket '\(quotedForMessage(bucket))' (named in buckets) does not exist; its public access "
                                   + "cannot be judged: fix the name or remove it", status: 404, operation: "GetPublicAccessBlock")
            }
            values["bucket:\(bucket)"] = Self.render(answer.status == 404 ? nil : answer.xml)
        }
        return Observation(values: values)
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        let client = try await AWSAdapter.client(target)
        for change in changes {
            if change.property == "account" {
                let account = try await AWSAdapter.account(target, client)
                _ = try await client.rest(.s3control, "PutPublicAccessBlock", method: "PUT",
                                          path: "/v20180820/configuration/publicAccessBlock",
                                          headers: ["x-amz-account-id": account], body: Self.body)
            } else if change.property.hasPrefix("bucket:") {
                let bucket = String(change.property.dropFirst("bucket:".count))
                _ = try await client.rest(.s3, "PutPublicAccessBlock", method: "PUT", path: "/" + SigV4.encode(bucket),
                                          query: [("publicAccessBlock", "")], body: Self.body)
            }
        }
    }
}

// MARK: - IAMAccessKey

/// `IAMAccessKey`: `spec: {maxUnusedDays: 90, maxAgeDays: 365, users: [optional names]}`. Each
/// active key (`key:USER/KEYID`) unused for longer than `maxUnusedDays`, or older than
/// `maxAgeDays`, is deactivated. Keys are never deleted by Bulwark: a person does that.
struct AccessKeyDriver: ResourceDriver {
    static let compliant = "inactive or within limits"

    /// The limits and the users they apply to, typed once when the spec is read.
    struct Limits: TypedSpec {
        var maxUnusedDays: Int?
        var maxAgeDays: Int?
        /// nil: every user of the account.
        var users: [String]?
    }

    static func parse(_ spec: SpecReader) -> ResourceSpec? {
        guard spec.entries() != nil else { return nil }
        spec.allowOnly(["maxUnusedDays", "maxAgeDays", "users"])
        // At least a day: 0 would deactivate a key made the same day (and every key in use).
        let unused = spec.field("maxUnusedDays")?.int(in: 1...3650)
        let age = spec.field("maxAgeDays")?.int(in: 1...3650)
        guard unused != nil || age != nil else {
            spec.fail("set maxUnusedDays, maxAgeDays or both")
            return nil
        }
        var users: [String]?
        if let reader = spec.field("users") {
            guard let list = reader.strings() else { return nil }
            users = list
        }
        let subject = "maxUnusedDays=\(unused.map(String.init) ?? "-") maxAgeDays=\(age.map(String.init) ?? "-")"
        let properties = users.map { $0.map { DesiredProperty("key:\($0)/*", compliant) } } ?? [DesiredProperty("key:*", compliant)]
        return ResourceSpec(subject: subject, properties: properties,
                            typed: Limits(maxUnusedDays: unused, maxAgeDays: age, users: users))
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let limits = try AWSAdapter.spec(resource, Limits.self)
        let client = try await AWSAdapter.client(target)
        let users: [String]
        if let listed = limits.users {
            users = listed
        } else {
            users = try await Self.list(client, "ListUsers", [], items: "Users") { $0.value("UserName") }
        }
        var values: [String: String?] = [:]
        let now = Date()
        for user in users {
            let keys = try await Self.list(client, "ListAccessKeys", [("UserName", user)], items: "AccessKeyMetadata") { $0 }
            for key in keys {
                guard let id = key.value("AccessKeyId") else { continue }
                values["key:\(user)/\(id)"] = try await Self.judge(key, id: id, client: client, limits: limits, now: now)
            }
        }
        return Observation(values: values)
    }

    /// `inactive or within limits`, or why the key must go: `active, unused for 120 days (limit 90)`.
    static func judge(_ key: XMLElement, id: String, client: AWSClient, limits: Limits, now: Date) async throws(AWSError) -> String {
        guard key.value("Status") == "Active" else { return compliant }
        // Without its creation date a key's age is unknown: taken as now, an old key was in
        // sync; taken as old, a key in use would be deactivated. Neither: the resource fails.
        guard let created = key.value("CreateDate").flatMap(Timestamp.parse) else {
            throw AWSError(code: "UnreadableCreateDate", message: "access key \(id) has no CreateDate Bulwark can read "
                           + "(\(quotedForMessage(key.value("CreateDate") ?? "none"))); its age is unknown, so it is neither judged nor changed",
                           operation: "ListAccessKeys")
        }
        let ageDays = Int(now.timeIntervalSince(created) / 86400)
        if let limit = limits.maxAgeDays, now.timeIntervalSince(created) > Double(limit) * 86400 {
            return "active, \(ageDays) days old (limit \(limit))"
        }
        if let limit = limits.maxUnusedDays {
            let answer = try await client.query(.iam, "GetAccessKeyLastUsed", [("AccessKeyId", id)])
            // Absent: never used. Present but unreadable: when it was last used is unknown, and
            // falling back to the creation date could switch off a key in use; the resource fails.
            let lastUsed: Date?
            if let element = answer.find("LastUsedDate") {
                guard let date = Timestamp.parse(element.text) else {
                    throw AWSError(code: "UnreadableLastUsedDate",
                                   message: "access key \(id) has a LastUsedDate Bulwark cannot read "
                                       + "('\(quotedForMessage(element.text))'); when it was last used is unknown, so it is neither judged nor changed",
                                   operation: "GetAccessKeyLastUsed")
                }
                lastUsed = date
            } else {
                lastUsed = nil
            }
            let idle = now.timeIntervalSince(lastUsed ?? created)
            if idle > Double(limit) * 86400 {
                return lastUsed == nil ? "active, never used in \(ageDays) days (limit \(limit))"
                    : "active, unused for \(Int(idle / 86400)) days (limit \(limit))"
            }
        }
        return compliant
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        let client = try await AWSAdapter.client(target)
        for change in changes where change.desired == Self.compliant {
            guard let key = Self.key(change.property) else { continue }
            _ = try await client.query(.iam, "UpdateAccessKey", [("UserName", key.user), ("AccessKeyId", key.id), ("Status", "Inactive")])
        }
    }

    /// The user and key id of a `key:USER/KEYID` property.
    static func key(_ property: String) -> (user: String, id: String)? {
        guard property.hasPrefix("key:") else { return nil }
        let path = property.dropFirst("key:".count)
        guard let slash = path.lastIndex(of: "/") else { return nil }
        return (String(path[..<slash]), String(path[path.index(after: slash)...]))
    }

    /// A paginated IAM list (`Marker`, `IsTruncated`).
    static func list<T>(_ client: AWSClient, _ action: String, _ parameters: [(String, String)], items: String,
                        _ transform: (XMLElement) -> T?) async throws(AWSError) -> [T] {
        var result: [T] = []
        var pages = Pagination(operation: action)
        var marker: String?
        repeat {
            let answer = try await client.query(.iam, action, parameters + (marker.map { [("Marker", $0)] } ?? []))
            result += (answer.find(items)?.children("member") ?? []).compactMap(transform)
            guard answer.find("IsTruncated")?.text == "true" else { break }
            // Truncated without a marker to go on with: the rest cannot be asked for, and a list
            // cut short would leave keys unjudged.
            guard let next = try pages.next(answer.find("Marker")?.text) else {
                throw AWSError(code: "MalformedResponse", message: "the answer is truncated but names no Marker for the rest",
                               operation: action)
            }
            marker = next
        } while true
        return result
    }
}

// MARK: - EBSDefaultEncryption

/// `EBSDefaultEncryption`: `spec: {enabled: true}` for the target's region.
struct EBSEncryptionDriver: ResourceDriver {
    /// `enabled: true` changed to `false` is a weakening: every new volume of the region would
    /// be written unencrypted, so a second person approves it (the policy's rule for weakening).
    /// So is a resource added with `enabled: false` (`weakensNew`, as from true).
    static func weakens(_ property: String, _ from: String, _ to: String) -> String? {
        property == "ebsEncryptionByDefault" && from == "true" && to == "false"
            ? "turns encryption by default off: new volumes of the region would be written unencrypted" : nil
    }

    static func parse(_ spec: SpecReader) -> ResourceSpec? {
        guard spec.entries() != nil else { return nil }
        spec.allowOnly(["enabled"])
        let enabled = spec.field("enabled")?.bool() ?? true
        return ResourceSpec(subject: "ebs-default-encryption", properties: [DesiredProperty("ebsEncryptionByDefault", String(enabled))])
    }

    func observe(_ resource: Resource, on target: Target) async throws -> Observation {
        let answer = try await AWSAdapter.client(target).query(.ec2, "GetEbsEncryptionByDefault")
        return Observation(values: ["ebsEncryptionByDefault": answer.value("ebsEncryptionByDefault") ?? "false"])
    }

    func apply(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async throws {
        guard let change = changes.first else { return }
        _ = try await AWSAdapter.client(target).query(.ec2, change.desired == "true" ? "EnableEbsEncryptionByDefault" : "DisableEbsEncryptionByDefault")
    }
}

// MARK: - Pagination

/// The tokens of one paginated listing. A server that gives a token it already gave, or more
/// pages than anyone's account holds, would be asked forever: that is a malformed answer.
struct Pagination {
    /// 10,000 pages: ten million security groups, or a million IAM users at 100 a page.
    static let maximumPages = 10_000
    let operation: String
    private var seen: Set<String> = []

    init(operation: String) { self.operation = operation }

    /// The token to ask for the next page with; nil (absent or empty) when this was the last.
    mutating func next(_ token: String?) throws(AWSError) -> String? {
        guard let token, !token.isEmpty else { return nil }
        guard seen.insert(token).inserted else {
            throw AWSError(code: "MalformedResponse", message: "page \(seen.count + 1) gave a page token an earlier page gave; "
                               + "the listing would never end", operation: operation)
        }
        guard seen.count < Self.maximumPages else {
            throw AWSError(code: "MalformedResponse", message: "more than \(Self.maximumPages) pages; the listing is not believed to end",
                           operation: operation)
        }
        return token
    }
}
