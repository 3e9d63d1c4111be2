@testable import BulwarkFirewall
import BulwarkCore
import Foundation
import Testing

/// A revision that stops blocking an address a blocklist blocked, or lets more ingress in (a
/// port opened, a source range widened or dropped), weakens the policy in force: a second person
/// approves it before any pass applies it (one author's change was applied at once, in an outside
/// review). Blocking more, or letting less in, is not a weakening.
@Suite struct FirewallWeakeningTests {
    static func weakened(_ kind: String, _ before: String, _ after: String) throws -> [String] {
        func state(_ spec: String) throws -> DesiredState {
            let inventory = """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: edge}
                spec: {adapter: nftables, root: /srv/edge, netns: lab-1, management: [192.0.2.64/26]}
                ---
                apiVersion: bulwark/v1
                kind: Controller
                metadata: {name: firewall}
                spec: {kinds: [FirewallBlocklist, AllowedIngress]}
                """
            return try DesiredStateLoader(registry: Registry([FirewallAdapter.definition()])).load([
                SourceFile(path: "controllers/c.yaml", contents: Array(inventory.utf8)),
                SourceFile(path: "desired-state/f.yaml", contents: Array("apiVersion: bulwark/v1\nkind: \(kind)\nmetadata: {name: f}\nspec: \(spec)\n".utf8)),
            ], revision: "test")
        }
        let found = Weakening.compare(previous: try state(before), current: try state(after), registry: Registry([FirewallAdapter.definition()]))
        return found[ResourceID(kind: kind, name: "f")]?.changes ?? []
    }

    @Test func aBlocklistThatUnblocksAnAddressIsAWeakening() throws {
        let narrowed = try Self.weakened("FirewallBlocklist", "{addresses: [198.51.100.0/24, 203.0.113.7]}", "{addresses: [198.51.100.0/25]}")
        #expect(narrowed.count == 1 && narrowed[0].contains("no longer blocks 198.51.100.0/24, 203.0.113.7"), "\(narrowed)")
        // Legitimate: more blocked, or an address replaced by a range that holds it.
        #expect(try Self.weakened("FirewallBlocklist", "{addresses: [203.0.113.7]}", "{addresses: [203.0.113.7, 198.51.100.9]}").isEmpty)
        #expect(try Self.weakened("FirewallBlocklist", "{addresses: [203.0.113.7]}", "{addresses: [203.0.113.0/24]}").isEmpty)
    }

    @Test func ingressThatLetsMoreInIsAWeakening() throws {
        let base = "{tcp: [22, 443], from: [10.0.0.0/8]}"
        #expect(try Self.weakened("AllowedIngress", base, "{tcp: [22, 443, 3306], from: [10.0.0.0/8]}").first?.contains("opens TCP 3306") == true)
        #expect(try Self.weakened("AllowedIngress", base, "{tcp: [22, 443], udp: [53], from: [10.0.0.0/8]}").first?.contains("opens UDP 53") == true)
        #expect(try Self.weakened("AllowedIngress", base, "{tcp: [22, 443]}").first?.contains("lets in from anywhere") == true)
        #expect(try Self.weakened("AllowedIngress", base, "{tcp: [22, 443], from: [10.0.0.0/8, 192.168.0.0/16]}").first?.contains("lets in from 192.168.0.0/16 too") == true)
        // Legitimate: a port closed, a source range narrowed, or one added inside it.
        #expect(try Self.weakened("AllowedIngress", base, "{tcp: [22], from: [10.0.0.0/8]}").isEmpty)
        #expect(try Self.weakened("AllowedIngress", base, "{tcp: [22, 443], from: [10.1.0.0/16, 10.2.0.0/16]}").isEmpty)
        #expect(try Self.weakened("AllowedIngress", "{tcp: [22, 443]}", "{tcp: [22, 443], from: [10.0.0.0/8]}").isEmpty)
    }

    /// A day `days` from today (UTC), as `expires` takes it.
    static func day(_ days: Int) -> String {
        Date().addingTimeInterval(Double(days) * 86_400).formatted(Date.ISO8601FormatStyle().year().month().day())
    }

    @Test func aQuarantineLiftedNarrowedOrEndedSoonerIsAWeakening() throws {
        let base = "{hosts: [edge], allow: [192.0.2.64/26], expires: \(Self.day(10))}"
        #expect(try Self.weakened("Quarantine", base, "{hosts: [edge], allow: [192.0.2.64/26], expires: \(Self.day(-1))}")
                == ["quarantine:edge: active allow=192.0.2.64/26 until=\(Self.day(10)) → lifted (lifts the quarantine of edge, set to last until \(Self.day(10)))"])
        #expect(try Self.weakened("Quarantine", base, "{hosts: [edge], allow: [192.0.2.64/26], expires: \(Self.day(2))}")
                .first?.contains("ends the quarantine of edge after \(Self.day(2)), not \(Self.day(10))") == true)
        #expect(try Self.weakened("Quarantine", "{hosts: [edge], allow: [192.0.2.64/26]}", base)
                .first?.contains("ends the quarantine of edge after \(Self.day(10)); it had no end") == true)
        #expect(try Self.weakened("Quarantine", base, "{hosts: [edge], allow: [192.0.2.64/26, 10.0.0.0/8], expires: \(Self.day(10))}")
                .first?.contains("lets edge reach 10.0.0.0/8 too") == true)
        // Legitimate: added, lengthened, without an end, a network taken out of allow or narrowed.
        #expect(try Self.weakened("Quarantine", "{hosts: [edge], allow: [192.0.2.64/26], expires: \(Self.day(-1))}", base).isEmpty)
        #expect(try Self.weakened("Quarantine", base, "{hosts: [edge], allow: [192.0.2.64/26], expires: \(Self.day(20))}").isEmpty)
        #expect(try Self.weakened("Quarantine", base, "{hosts: [edge], allow: [192.0.2.64/26]}").isEmpty)
        #expect(try Self.weakened("Quarantine", "{hosts: [edge], allow: [192.0.2.64/26, 10.0.0.0/8]}", "{hosts: [edge], allow: [192.0.2.64/27]}").isEmpty)
    }
}
