internal import BulwarkCore
internal import Foundation

// MARK: - Safety guards
//
// No firewall change may cut a target off from the people who run it. Before anything is
// applied, each kind judges the change it would make against the target's lifelines, read live
// in its network namespace (Lifelines.swift): the management networks the Target names, the
// peers of established SSH sessions (to the Target's sshPort and to every port sshd listens on),
// and the default gateways. Each target's guards protect its own lifelines only, so no two
// targets may manage one ruleset (`FirewallTargetSettings.exclusive`, refused when read).
//
// - FirewallBlocklist: blocked when an entry overlaps loopback (127.0.0.0/8 or ::1, or a wider
//   network holding them: the host's own services would be cut off) or a lifeline (its traffic would be dropped),
//   or when it would empty a blocklist that drops addresses now (a truncated or force-pushed
//   policy must not silently let every attacker back in; a person approves it if meant).
// - Quarantine: blocked when a lifeline is outside `allow` (everything else is dropped both ways).
// - AllowedIngress: blocked when a management network or an SSH peer could no longer open a new
//   connection to the SSH port (the port not listed, or `from` not covering it), or when sshd
//   listens (in the namespace, found by its sockets) only on ports not listed: the Target's
//   sshPort is 22 unless it says otherwise, and sshd may listen elsewhere. `AllowedIngress {}`
//   (no port at all) is therefore always blocked: it would drop every new connection, management
//   included. The gateway is not at risk here: the chain keeps established and related traffic
//   (ICMP errors) and router advertisements, so it is not checked.
// Loopback is accepted on `lo` by the quarantine and ingress chains, so only the blocklist
// (which drops by source on every interface) judges it, whether or not an SSH session runs over it.
// A guard that cannot read the lifelines blocks: it never lets a change through unjudged. Where
// it could not read them for want of the machine's resources (a child `ip` or `cat` that cannot
// be started, out of descriptors or memory: `Shortage`), it judged nothing: the change is left
// unjudged (`GuardVerdict.unjudged`), the pass fails, and no approval is offered.

/// The name the firewall guards go by in `Shortage.judging` (a test's fault).
let firewallGuard = "firewall"

extension Lifelines {
    /// Every lifeline with what it is, for the reasons a person reads.
    func all(includingLoopback: Bool) -> [(Network, String)] {
        management.map { ($0, "management network \($0)") }
            + sessions.filter { includingLoopback || !$0.isLoopback }.map { ($0, "\($0), the peer of an established SSH session") }
            + gateways.map { ($0, "default gateway \($0)") }
    }

    /// `check`'s problems with the lifelines read now, as a block; a block, or `.unjudged` after
    /// a shortage since `shortages`, when they cannot be read.
    static func judge(_ target: Target, since shortages: UInt64, _ check: (Lifelines) -> [String]) -> GuardVerdict {
        let lifelines: Lifelines
        do {
            lifelines = try read(target)
        } catch {
            return .cannotJudge("cannot read what must stay reachable on \(target.name) (management, SSH sessions, gateway), "
                                + "so the change is not judged safe: \(error)", error, since: shortages)
        }
        let problems = check(lifelines)
        return problems.isEmpty ? .allow : .block(problems.joined(separator: "; "))
    }
}

extension BlocklistDriver {
    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async -> GuardVerdict {
        let shortages = Shortage.count
        return Shortage.judging(firewallGuard) { judge(changes, on: target, since: shortages) }
    }

    private func judge(_ changes: [PropertyDrift], on target: Target, since shortages: UInt64) -> GuardVerdict {
        guard let change = changes.first(where: { $0.property == "addresses" }) else { return .allow }
        let wanted = Self.networks(change.desired)
        if wanted.isEmpty, let observed = change.observed, observed != "(none)" {
            let count = observed.split(separator: ",").count
            return .block("this would empty the blocklist, which drops \(count) address\(count == 1 ? "" : "es") on \(target.name) now")
        }
        // Loopback, whoever uses it: the blocklist drops by source on every interface, `lo`
        // included, so an entry covering 127.0.0.0/8 or ::1 (or a wider network holding them)
        // would cut every service the host reaches on itself, with or without an SSH session.
        if let entry = wanted.first(where: { entry in Network.loopbacks.contains { entry.overlaps($0) } }) {
            return .block("blocking \(entry) would cut off loopback (127.0.0.0/8 and ::1) of \(target.name): every service the host "
                          + "reaches on itself (a local database, DNS resolver, proxy or agent listening on 127.0.0.1 or ::1) "
                          + "would stop answering; leave loopback out of the blocklist")
        }
        return Lifelines.judge(target, since: shortages) { lifelines in
            lifelines.all(includingLoopback: true).compactMap { lifeline, what in
                wanted.first { $0.overlaps(lifeline) }.map { "blocking \($0) would cut off \(what) of \(target.name)" }
            }
        }
    }
}

extension QuarantineDriver {
    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async -> GuardVerdict {
        let shortages = Shortage.count
        return Shortage.judging(firewallGuard) { judge(changes, on: target, since: shortages) }
    }

    private func judge(_ changes: [PropertyDrift], on target: Target, since shortages: UInt64) -> GuardVerdict {
        guard let change = changes.first(where: { $0.property == "quarantine:\(target.name)" }), change.desired != "lifted" else {
            return .allow
        }
        let allow = Self.allowed(change.desired)
        return Lifelines.judge(target, since: shortages) { lifelines in
            lifelines.all(includingLoopback: false).compactMap { lifeline, what in
                allow.contains { $0.contains(lifeline) } ? nil
                    : "the quarantine would cut off \(what) of \(target.name): add it to allow"
            }
        }
    }
}

extension IngressDriver {
    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async -> GuardVerdict {
        let shortages = Shortage.count
        return Shortage.judging(firewallGuard) { judge(changes, on: target, since: shortages) }
    }

    private func judge(_ changes: [PropertyDrift], on target: Target, since shortages: UInt64) -> GuardVerdict {
        guard let change = changes.first(where: { $0.property == "ingress" }) else { return .allow }
        let rules = Rules(change.desired)
        let port: Int
        do {
            port = try FirewallAdapter.sshPort(target)
        } catch {
            return .cannotJudge("cannot tell which port people log in to \(target.name) on, so the change is not judged safe: \(error)",
                                error, since: shortages)
        }
        guard rules.tcp.contains(port) else {
            let what = rules.tcp.isEmpty && rules.udp.isEmpty ? "it allows no port at all" : "it does not allow tcp \(port)"
            return .block("the allowed ingress would drop new SSH connections to \(target.name) from its management networks: "
                          + "\(what) (the target's sshPort is \(port))")
        }
        // sshPort is the Target's word (22 by default); sshd's own is where it listens.
        let listening: Set<Int>
        do {
            listening = try Lifelines.sshdPorts(target)
        } catch {
            return .cannotJudge("cannot read which ports sshd listens on in \(target.name), so the change is not judged safe: \(error)",
                                error, since: shortages)
        }
        if !listening.isEmpty, listening.isDisjoint(with: rules.tcp) {
            return .block("the allowed ingress would drop new SSH connections to \(target.name): sshd listens on tcp "
                          + listening.sorted().map(String.init).joined(separator: ", ")
                          + ", which it does not allow (the target's sshPort is \(port); set it to the port sshd listens on)")
        }
        guard !rules.from.isEmpty else { return .allow }
        return Lifelines.judge(target, since: shortages) { lifelines in
            (lifelines.management.map { ($0, "management network \($0)") }
                + lifelines.sessions.filter { !$0.isLoopback }.map { ($0, "\($0), the peer of an established SSH session") })
                .compactMap { lifeline, what in
                    rules.from.contains { $0.contains(lifeline) } ? nil
                        : "the allowed ingress would stop \(what) of \(target.name) from reaching tcp \(port): add it to from"
                }
        }
    }
}
