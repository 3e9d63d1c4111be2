import BulwarkCore
internal import Foundation

/// An nftables target's settings, checked once when the target is read:
/// `spec: {adapter: nftables, root: PATH, netns: NAME, management: [NETWORKS], sshPort: 22}`.
struct FirewallTargetSettings: TypedTargetSettings {
    /// Where `etc/nftables.d/bulwark.nft` is persisted: an absolute path with no `..`.
    var root: String
    /// The network namespace whose ruleset is managed; nil: the process's own.
    var netns: String?
    /// The networks people administer the target from (at least one; no overlaps).
    var management: [Network]
    /// Where they log in, when the target says (else 22).
    var sshPort: Int?

    var strings: [String: String] {
        var strings = ["root": root, "management": management.map(\.description).joined(separator: ",")]
        strings["netns"] = netns
        strings["sshPort"] = sshPort.map(String.init)
        return strings
    }

    /// The ruleset the target manages, which no other nftables target may manage too: its
    /// `netns`, or without one the namespace Bulwark runs in. Two targets on one ruleset are
    /// refused when the revision is read rather than judged together (as host targets sharing a
    /// root are, `GuardDomain.scope`): they write the same table and chains (a chain is named by
    /// its resource, not its target) and flap on each other's digests, persist it under two
    /// roots, and each guard protects only its own management networks, so a blocklist blocked
    /// on one went through on the other and cut the first one's management network off.
    /// Targets of a fleet labelled with different hosts each name their own machine's ruleset.
    var exclusive: ExclusiveClaim? {
        let why = "two nftables targets on one ruleset write the same table and chains, and each would judge "
            + "changes against its own management networks only; use one Target listing every management network "
            + "(targets on different hosts of a fleet: label each with its \(Target.hostnameLabel) or \(Target.machineIDLabel))"
        guard let netns else {
            return ExclusiveClaim(key: "", field: nil,
                                  what: "the nftables ruleset of the network namespace Bulwark runs in (no netns)", why: why)
        }
        return ExclusiveClaim(key: "netns " + netns, field: "netns",
                              what: "the nftables ruleset of network namespace \(netns)", why: why)
    }

    /// The network namespace the target's ruleset is in, as this machine has it now: the device
    /// and inode of `/run/netns/NAME` (where `ip netns exec` finds it), or of the namespace
    /// Bulwark runs in without `netns`. Two names bound to one namespace (`mount --bind`), or a
    /// name bound to the namespace Bulwark runs in, are one ruleset, which one pass must not
    /// reconcile through two targets (`Reconciler.sharedClaims`). Nil where the name is not
    /// there: the target is compared by its name, and goes on as before (what reads its namespace
    /// fails, naming it).
    func exclusiveIdentity() -> String? {
        let path = netns.map { Self.namespaces + $0 } ?? "/proc/self/ns/net"
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Self.identity(info)
    }

    static func identity(_ info: stat) -> String { "one network namespace (device \(info.st_dev), inode \(info.st_ino))" }

    /// The namespace `netns` names is not the one the plan was made against: its name was bound
    /// to another namespace since (`mount --bind`), or removed. Nothing was written.
    struct NamespaceMoved: Error, CustomStringConvertible {
        var target: String
        var netns: String
        var planned: String
        var now: String
        var description: String {
            "refused: the network namespace \(quotedForMessage(netns)) of target \(quotedForMessage(target)) is not the one "
                + "planned against (planned: \(planned); now: \(now)); it was bound to another namespace since the plan, "
                + "and nothing was written. Plan again"
        }
    }

    /// Opens the target's namespace and checks it is `planned` (`exclusiveIdentity` when the plan
    /// began); the descriptor (close it) keeps that very namespace for the write, whatever the
    /// name is bound to afterwards. Nil without `netns` (the namespace Bulwark runs in).
    func openPlanned(_ planned: String, target: String) throws -> Int32? {
        guard let netns else { return nil }
        let path = Self.namespaces + netns
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw NamespaceMoved(target: target, netns: netns, planned: planned,
                                 now: "\(path) cannot be opened: \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let why = String(cString: strerror(errno))
            close(fd)
            throw NamespaceMoved(target: target, netns: netns, planned: planned, now: "\(path) cannot be read: \(why)")
        }
        let now = Self.identity(info)
        guard now == planned else {
            close(fd)
            throw NamespaceMoved(target: target, netns: netns, planned: planned, now: now)
        }
        return fd
    }

    /// Where `ip netns` keeps the namespaces it names.
    static let namespaces = "/run/netns/"

    /// Reads the settings; nil after recording errors.
    @Sendable static func parse(_ spec: SpecReader) -> FirewallTargetSettings? {
        spec.allowOnly(["adapter", "root", "netns", "management", "sshPort"])
        guard let reader = spec.field("root", required: true), let root = reader.string() else { return nil }
        guard PathText.isAbsolute(root), !PathText.climbs(root) else {
            reader.fail("expected an absolute path (where etc/nftables.d/ is), got '\(root)'")
            return nil
        }
        var netns: String?
        if let reader = spec.field("netns"), let namespace = reader.string() {
            guard !namespace.isEmpty, namespace.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }),
                  namespace.count <= 64 else {
                reader.fail("expected a network namespace name (letters, digits, '-', '_', '.'), got '\(namespace)'")
                return nil
            }
            netns = namespace
        }
        guard let reader = spec.field("management") else {
            spec.fail("missing required field 'management': the networks people administer this target from, "
                      + "such as [10.0.0.0/24]; Bulwark blocks any change that would cut them off")
            return nil
        }
        guard let management = FirewallAdapter.networks(reader) else { return nil }
        guard !management.isEmpty else {
            reader.fail("list at least one management network, such as [10.0.0.0/24]")
            return nil
        }
        var settings = FirewallTargetSettings(root: root, netns: netns, management: management)
        if let reader = spec.field("sshPort") {
            guard let port = reader.int(in: 1...65535) else { return nil }
            settings.sshPort = port
        }
        return settings
    }
}

extension Target {
    /// The nftables target's settings as its adapter read them. A target that carries none (one
    /// not read by this adapter) is an error, never "no namespace": that would be the network of
    /// the machine Bulwark runs on, and its sessions would stand in for the target's.
    func firewall() throws(MissingTypedSpec) -> FirewallTargetSettings {
        try typedSettings(FirewallTargetSettings.self)
    }
}
