import BulwarkCore
import Foundation
import Testing

/// No trap and no unbounded work is reachable from a revision: durations and numbers are parsed
/// with checked arithmetic, alias expansion is counted in bytes, and error output is capped.
@Suite struct InputBoundsTests {
    let loader = DesiredStateLoader(registry: memoryRegistry(MemoryDriver()))

    func failure(_ files: [SourceFile]) -> ValidationFailure? {
        do {
            _ = try loader.load(files, revision: "r")
            return nil
        } catch {
            return error
        }
    }

    func controller(_ spec: String) -> SourceFile {
        file("controllers/inventory.yaml", String(decoding: inventory.contents ?? [], as: UTF8.self)
            .replacingOccurrences(of: "  interval: 5m\n", with: spec))
    }

    // MARK: - Durations

    @Test func durationsReadEveryUnitAndCombination() throws {
        #expect(try DurationParser.seconds("30s") == 30)
        #expect(try DurationParser.seconds("5m") == 300)
        #expect(try DurationParser.seconds("1h30m") == 5400)
        #expect(try DurationParser.seconds("7d") == 604_800)
        #expect(try DurationParser.seconds("2w") == 1_209_600)
        #expect(try DurationParser.seconds("0007m") == 420)
        #expect(try DurationParser.seconds("3650d") == DurationParser.maximumSeconds)
        // sshd's forms, only when asked for.
        #expect(try DurationParser.seconds("90", bareNumberIsSeconds: true) == 90)
        #expect(try DurationParser.seconds("1M30", bareNumberIsSeconds: true, caseInsensitive: true) == 90)
        #expect(throws: DurationError.self) { try DurationParser.seconds("90") }
        #expect(throws: DurationError.self) { try DurationParser.seconds("1H") }
        for bad in ["", "m", "5x", "-5m", "5 m", "1.5h", "h5"] {
            #expect(throws: DurationError.self, "\(bad)") { try DurationParser.seconds(bad) }
        }
        #expect(DurationParser.text(5400) == "1h30m")
        #expect(DurationParser.text(86_400) == "1d")
    }

    @Test func hugeDurationsAreRefusedNotTrapped() {
        for huge in ["9223372036854775807w", "9223372036854775807s", "99999999999999999999999999h",
                     "3651d", "1w9223372036854775807s", "2562047788015215h", "5000000000s"] {
            #expect(throws: DurationError.self, "\(huge)") { try DurationParser.seconds(huge) }
            do {
                _ = try DurationParser.seconds(huge, bareNumberIsSeconds: true, caseInsensitive: true)
            } catch {
                #expect(error.message.hasPrefix("duration too large; at most 3650d"), "\(huge): \(error.message)")
            }
        }
        #expect(DesiredStateLoader.parseDuration("9223372036854775807h") == nil)
    }

    @Test func aRevisionWithAnOverflowingIntervalIsRefusedWithAClearError() throws {
        let bad = try #require(failure([controller("  interval: 9223372036854775807w\n  flapBreaker: {period: 9223372036854775807h}\n")]))
        let messages = bad.errors.map(\.description)
        #expect(messages.contains { $0.contains("spec.interval: duration too large; at most 3650d") }, "\(messages)")
        #expect(messages.contains { $0.contains("spec.flapBreaker.period: duration too large") }, "\(messages)")
        // In range but too long for the field: the field's own range is named.
        let long = try #require(failure([controller("  interval: 2d\n")]))
        #expect(long.errors.map(\.description).contains { $0.contains("expected a duration from 10s to 1d") })
        // A legitimate interval still loads.
        let state = try loader.load([controller("  interval: 1h30m\n  flapBreaker: {period: 2h}\n")], revision: "r")
        #expect(state.controllers["settings"]?.interval == .seconds(5400))
        #expect(state.controllers["settings"]?.flapPeriod == .seconds(7200))
    }

    @Test func numbersFromInputAreCheckedBeforeArithmetic() throws {
        let bad = try #require(failure([controller("""
              maxTargetShare: "99999999999999999999999%"
              maxChangesPerCycle: 99999999999999999999999
              windows:
                - {start: "99999999999999999999:00", end: "05:00"}
                - {start: "+2:00", end: "05:00"}
                - {start: "-0:30", end: "05:00"}

            """)]))
        let messages = bad.errors.map(\.description)
        #expect(messages.contains { $0.contains("spec.maxTargetShare: expected a percentage") })
        #expect(messages.contains { $0.contains("spec.maxChangesPerCycle: expected an integer from 0 to 1000000") })
        #expect(messages.filter { $0.contains("expected a time of day") }.count == 3, "\(messages)")
        let state = try loader.load([controller("""
              maxTargetShare: 50%
              windows: [{start: "22:00", end: "24:00"}, {start: "0:00", end: "5:30"}]

            """)], revision: "r")
        #expect(state.controllers["settings"]?.maxTargetShare == 50)
        #expect(state.controllers["settings"]?.windows.map(\.end) == [1440, 330])
    }

    // MARK: - Alias expansion in bytes

    @Test func aLargeAnchorUsedManyTimesIsRefusedWithOneError() throws {
        // 50 KB anchor, 10,000 aliases: 500 MB expanded if composed naively.
        let anchor = String(repeating: "x", count: 50_000)
        var text = "apiVersion: bulwark/v1\nkind: Setting\nmetadata: {name: bomb}\nspec:\n  big: &big \(anchor)\n  list:\n"
        text += String(repeating: "    - *big\n", count: 10_000)
        #expect {
            try YAML.compose(Array(text.utf8))
        } throws: { error in
            (error as? YAMLError)?.message.contains("aliases expand the file to more than") == true
        }
        let refused = try #require(failure([inventory, file("desired-state/bomb.yaml", text)]))
        #expect(refused.count == 1, "one error, not one per alias: \(refused.errors.prefix(3))")
        #expect(refused.description.utf8.count < 1_000)
    }

    @Test func theByteBudgetScalesWithTheFileAndIsCapped() {
        let limits = YAMLLimits()
        #expect(limits.expandedByteBudget(forFileOf: 100) == 64 << 10)
        #expect(limits.expandedByteBudget(forFileOf: 1 << 20) == 4 << 20)
        #expect(limits.expandedByteBudget(forFileOf: 100 << 20) == 10 << 20)
        #expect(limits.expandedByteBudget(forFileOf: Int.max) == 10 << 20)
    }

    @Test func anchorsReusedWithinTheBudgetStillWork() throws {
        // A legitimate reuse: a 2 KB value used 20 times (40 KB, under the 64 KiB floor).
        let value = String(repeating: "y", count: 2_000)
        var text = "a: &v \(value)\nb:\n"
        text += String(repeating: "  - *v\n", count: 20)
        let docs = try YAML.compose(Array(text.utf8))
        guard case .mapping(let pairs)? = docs.first??.value, case .sequence(let items) = pairs[1].value.value else {
            Issue.record("expected a mapping with a list")
            return
        }
        #expect(items.count == 20)
        #expect(items.allSatisfy { $0.value == .scalar(value) })
    }

    // MARK: - Error output

    @Test func errorOutputIsCappedPerFileAndInTotal() throws {
        var files = [inventory]
        for n in 0..<10 {
            var text = "apiVersion: bulwark/v1\nkind: Setting\nmetadata: {name: many-\(n)}\nspec: {a: b}\n"
            for field in 0..<50 { text += "unknown\(field): 1\n" }
            files.append(file("desired-state/many-\(n).yaml", text))
        }
        let refused = try #require(failure(files))
        let lines = refused.description.split(separator: "\n")
        #expect(refused.count > 100)
        #expect(refused.shown.count == ValidationFailure.maxShown)
        for n in 0..<10 {
            #expect(refused.shown.filter { $0.location.file == "desired-state/many-\(n).yaml" }.count <= ValidationFailure.maxShownPerFile)
        }
        #expect(lines.last == "  … and \(refused.count - ValidationFailure.maxShown) more")
        #expect(lines.count == ValidationFailure.maxShown + 2)
        // A revision with few errors shows all of them and no tail.
        let few = try #require(failure([inventory, file("desired-state/one.yaml", "apiVersion: bulwark/v1\nkind: Setting\nmetadata: {name: one}\nspec: {a: {b: c}}\n")]))
        #expect(few.count == 1)
        #expect(!few.description.contains("more"))
    }

    @Test func diagnosticsKeepABoundedNumberAndCountTheRest() {
        let diagnostics = Diagnostics()
        for n in 0..<(Diagnostics.maxKept + 5) {
            diagnostics.error(ManifestError("e\(n)", at: SourceLocation(file: "f", line: n)))
        }
        #expect(diagnostics.errors.count == Diagnostics.maxKept)
        #expect(diagnostics.failure.count == Diagnostics.maxKept + 5)
    }

    @Test func messagesQuoteHostileValuesShortAndOnOneLine() {
        #expect(quotedForMessage("a\u{2028}b\nc\u{1B}[31m") == "a\\u{2028}b\\nc\\u{1B}[31m")
        #expect(quotedForMessage(String(repeating: "z", count: 1000)).count == 65)
        #expect(quotedForMessage("PermitRootLogin") == "PermitRootLogin")
    }
}
