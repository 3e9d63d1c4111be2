import BulwarkCore
import Foundation
import Testing

@Suite struct DesiredStateTests {
    let loader = DesiredStateLoader(registry: memoryRegistry(MemoryDriver()))

    func errors(_ files: [SourceFile]) -> [ManifestError] {
        do {
            _ = try loader.load(files, revision: "r")
            return []
        } catch {
            return error.errors
        }
    }

    @Test func loadsAValidRevisionAndBindsResourcesToTargets() throws {
        let state = try loader.load([inventory, file("desired-state/a.yaml", """
            apiVersion: bulwark/v1
            kind: Setting
            metadata: {name: web-only, annotations: {severity: critical}}
            targets: {selector: {role: web}}
            spec: {PermitRootLogin: no, limit: 3}
            ---
            apiVersion: bulwark/v1
            kind: Setting
            metadata: {name: everywhere}
            spec: {banner: hello}
            """)], revision: "abc")
        #expect(state.resources.count == 2)
        #expect(state.resources[ResourceID(kind: "Setting", name: "web-only")]?.severity == .critical)
        #expect(state.resources[ResourceID(kind: "Setting", name: "web-only")]?.spec.properties
                == [DesiredProperty("PermitRootLogin", "no"), DesiredProperty("limit", "3")])
        #expect(state.bindings.map(\.description) == ["db-1 Setting/everywhere", "web-1 Setting/everywhere", "web-1 Setting/web-only"])
    }

    /// A resource that names its targets binds to those (each once, in name order) and to no
    /// other, with a selector still applied; one without names binds to every target it selects.
    @Test func aResourceNamingItsTargetsBindsToThoseOnlyInNameOrder() throws {
        let state = try loader.load([inventory, file("desired-state/a.yaml", """
            apiVersion: bulwark/v1
            kind: Setting
            metadata: {name: named}
            targets: {names: [web-1, db-1, web-1]}
            spec: {banner: hello}
            ---
            apiVersion: bulwark/v1
            kind: Setting
            metadata: {name: named-and-selected}
            targets: {names: [web-1, db-1], selector: {role: db}}
            spec: {motd: hi}
            ---
            apiVersion: bulwark/v1
            kind: Setting
            metadata: {name: everywhere}
            spec: {limit: 3}
            """)], revision: "abc")
        #expect(state.bindings.map(\.description) == [
            "db-1 Setting/everywhere", "db-1 Setting/named", "db-1 Setting/named-and-selected",
            "web-1 Setting/everywhere", "web-1 Setting/named",
        ])
        // A name that is no target is still an error.
        let found = errors([inventory, file("desired-state/b.yaml", """
            apiVersion: bulwark/v1
            kind: Setting
            metadata: {name: ghostly}
            targets: {names: [ghost, web-1]}
            spec: {banner: hello}
            """)])
        #expect(found.contains { $0.description.contains("unknown target 'ghost'") })
    }

    @Test func namesFileLineAndFieldOfEveryProblemAtOnce() {
        let found = errors([inventory,
            file("desired-state/bad.yaml", """
                apiVersion: bulwark/v1
                kind: Setting
                metadata: {name: ok-name}
                spec: {limit: 99}
                ---
                apiVersion: bulwark/v2
                kind: Nope
                metadata: {name: x}
                spec: {}
                ---
                apiVersion: bulwark/v1
                kind: Setting
                metadata: {name: Bad_Name}
                spec: {}
                ---
                apiVersion: bulwark/v1
                kind: Setting
                metadata: {name: typo}
                spce: {}
                """),
            file("desired-state/syntax.yaml", "apiVersion: bulwark/v1\nkind: [unclosed\n"),
        ])
        let text = found.map(\.description)
        #expect(text.contains { $0.hasPrefix("desired-state/bad.yaml:4:") && $0.contains("spec.limit") && $0.contains("from 1 to 10") })
        #expect(text.contains { $0.hasPrefix("desired-state/bad.yaml:6:") && $0.contains("unsupported apiVersion") })
        #expect(text.contains { $0.hasPrefix("desired-state/bad.yaml:7:") && $0.contains("unknown kind 'Nope'") && $0.contains("Setting") })
        #expect(text.contains { $0.hasPrefix("desired-state/bad.yaml:13:") && $0.contains("not a valid name") })
        #expect(text.contains { $0.hasPrefix("desired-state/bad.yaml:19:") && $0.contains("unknown field 'spce'") })
        #expect(text.contains { $0.hasPrefix("desired-state/syntax.yaml:") && $0.contains("YAML:") })
    }

    @Test func refusesDuplicatesAndConflicts() {
        let found = errors([inventory, file("desired-state/a.yaml", """
            apiVersion: bulwark/v1
            kind: Setting
            metadata: {name: one}
            spec: {x: "1"}
            ---
            apiVersion: bulwark/v1
            kind: Setting
            metadata: {name: one}
            spec: {y: "1"}
            ---
            apiVersion: bulwark/v1
            kind: Setting
            metadata: {name: two}
            spec: {x: "2"}
            """)])
        #expect(found.contains { $0.message.contains("duplicate Setting named 'one'") && $0.location.line == 8 })
        #expect(found.contains { $0.message.contains("conflicts with Setting/one") && $0.message.contains("both set x") })
    }

    @Test func refusesBadFilesWhole() {
        let oversized = SourceFile(path: "desired-state/huge.yaml", size: DesiredStateLoader.maxFileSize + 1, contents: nil)
        let binary = SourceFile(path: "desired-state/bin.yaml", contents: [0x61, 0x3a, 0x00, 0x62])
        let latin1 = SourceFile(path: "desired-state/latin1.yaml", contents: Array("a: 1\nb: caf".utf8) + [0xE9, 0x0A])
        let link = SourceFile(path: "desired-state/link.yaml", kind: .symlink, contents: nil)
        let found = errors([inventory, oversized, binary, latin1, link])
        #expect(found.contains { $0.location.file == "desired-state/huge.yaml" && $0.message.contains("at most") })
        #expect(found.contains { $0.location.file == "desired-state/bin.yaml" && $0.message.contains("binary") })
        #expect(found.contains { $0.location.file == "desired-state/latin1.yaml" && $0.location.line == 2 && $0.message.contains("UTF-8") })
        #expect(found.contains { $0.location.file == "desired-state/link.yaml" && $0.message.contains("symbolic link") })
    }

    /// Harmful: a line break libyaml reads where git, editors and reviews show none (a carriage
    /// return alone, NEL, U+2028, U+2029). What a review shows inside a comment would be read as
    /// keys, and a finding's edit, placed by libyaml's line numbers, landed in the next resource
    /// of the file (an outside review: a mode of 0644 written into another resource, merged by
    /// itself). Refused, naming the line and column as those tools count them.
    @Test(arguments: [("\r", "carriage return"), ("\u{85}", "U+0085"), ("\u{2028}", "U+2028"), ("\u{2029}", "U+2029")])
    func refusesALineBreakThatLineBasedToolsDoNotShow(_ hidden: String, _ name: String) {
        let text = "apiVersion: bulwark/v1\nkind: Setting\n# looks like a comment\(hidden)metadata: {name: one}\nspec: {x: 1}\n"
        let found = errors([inventory, file("desired-state/hidden.yaml", text)])
        #expect(found.contains {
            $0.location.file == "desired-state/hidden.yaml" && $0.location.line == 3 && $0.location.column == 23 && $0.message.contains(name)
        }, "\(found)")
    }

    /// Legitimate: lines ending in `\r\n` (a manifest saved on Windows) load as before.
    @Test func loadsAManifestWhoseLinesEndInCRLF() throws {
        let text = "apiVersion: bulwark/v1\r\nkind: Setting\r\n# a comment\r\nmetadata: {name: one}\r\nspec: {x: 1}\r\n"
        let state = try loader.load([inventory, file("desired-state/crlf.yaml", text)], revision: "r")
        #expect(state.resources[ResourceID(kind: "Setting", name: "one")] != nil)
    }

    @Test func refusesAnAliasBombInAManifest() {
        var text = "apiVersion: bulwark/v1\nkind: Setting\nmetadata: {name: bomb}\nspec:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        var previous = "a"
        for name in ["b", "c", "d", "e", "f", "g"] {
            text += "  \(name): &\(name) [" + Array(repeating: "*\(previous)", count: 10).joined(separator: ", ") + "]\n"
            previous = name
        }
        let found = errors([inventory, file("desired-state/bomb.yaml", text)])
        #expect(found.contains { $0.location.file == "desired-state/bomb.yaml" && $0.message.contains("alias expansion") })
    }

    @Test func checksControllersAndPlacement() {
        let found = errors([
            inventory,
            file("controllers/bad.yaml", """
                apiVersion: bulwark/v1
                kind: Controller
                metadata: {name: broken}
                spec: {kinds: [Setting, Unknown], interval: 2s, mode: yolo, maxChangesPerCycle: -1, targets: {names: [ghost]}}
                """),
            file("desired-state/misplaced.yaml", """
                apiVersion: bulwark/v1
                kind: Target
                metadata: {name: t}
                spec: {adapter: memory}
                """),
        ])
        let text = found.map(\.description).joined(separator: "\n")
        #expect(text.contains("unknown kind 'Unknown'"))
        #expect(text.contains("spec.interval: expected a duration"))
        #expect(text.contains("spec.mode: expected one of enforce, approve, audit, got 'yolo'"))
        #expect(text.contains("spec.maxChangesPerCycle: expected an integer from 0"))
        #expect(text.contains("Target manifests belong under controllers/"))
    }

    @Test func parsesDurations() {
        #expect(DesiredStateLoader.parseDuration("5m") == 300)
        #expect(DesiredStateLoader.parseDuration("1h30m") == 5400)
        #expect(DesiredStateLoader.parseDuration("10") == nil)
        #expect(DesiredStateLoader.parseDuration("m") == nil)
    }
}
