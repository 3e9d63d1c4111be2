import BulwarkCore
import Foundation
import Testing

@Suite struct YAMLTests {
    func compose(_ text: String, limits: YAMLLimits = .init()) throws(YAMLError) -> [YAMLNode?] {
        try YAML.compose(Array(text.utf8), limits: limits)
    }

    @Test func keepsLinesAndScalarStyles() throws {
        let docs = try compose("a: no\nb: \"no\"\nc:\n  - 1\n---\n---\nd: ~\n")
        #expect(docs.count == 3)
        guard case .mapping(let pairs)? = docs[0]?.value else { Issue.record("not a mapping"); return }
        #expect(pairs.map(\.key) == ["a", "b", "c"])
        #expect(pairs[0].value.value == .scalar("no") && pairs[0].value.isPlain)
        #expect(pairs[1].value.value == .scalar("no") && !pairs[1].value.isPlain)
        #expect(pairs[2].value.line == 4)
        #expect(docs[1] == nil)
        guard case .mapping(let last)? = docs[2]?.value else { Issue.record("not a mapping"); return }
        #expect(last[0].value.isNull)
    }

    /// An explicit tag decides a value's type, as PyYAML reads it: `!!str false` is a string
    /// (true to Python), not the plain `false` it was read as; `!` is resolved as a plain
    /// scalar, quoted or not (PyYAML 6 reads `! "false"` as False and `! 5` as 5). Any other
    /// tag is refused rather than read as something else.
    @Test func readsStrTagsAsStringsAndRefusesOtherTags() throws {
        guard case .mapping(let pairs)? = try compose("a: !!str false\nb: ! 5\nc: false\nd: !!map {x: 1}\ne: ! \"false\"\n")[0]?.value else {
            Issue.record("not a mapping"); return
        }
        #expect(pairs.map(\.value.isPlain) == [false, true, true, false, true])
        for text in ["a: !!int \"5\"\n", "a: !!bool yes\n", "a: !!set {x}\n", "a: !custom x\n", "a: !!binary aGk=\n", "a: !!omap [x: 1]\n"] {
            #expect { try compose(text) } throws: { error in
                (error as? YAMLError).map { $0.line == 1 && $0.message.hasPrefix("explicit tag") } == true
            }
        }
    }

    @Test func refusesBillionLaughsQuickly() throws {
        var text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        var previous = "a"
        for name in ["b", "c", "d", "e", "f", "g", "h", "i"] {
            text += "\(name): &\(name) [" + Array(repeating: "*\(previous)", count: 10).joined(separator: ", ") + "]\n"
            previous = name
        }
        let started = ContinuousClock.now
        #expect {
            try compose(text)
        } throws: { error in
            (error as? YAMLError)?.message.contains("alias expansion") == true
        }
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test func refusesAliasesAsKeysAndMergeKeys() {
        #expect(throws: YAMLError.self) { try compose("a: &k [1, 2]\n? *k\n: v\n") }
        #expect(throws: YAMLError.self) { try compose("base: &b {x: 1}\nother:\n  <<: *b\n") }
    }

    @Test func reportsDuplicateKeysWithBothLines() {
        #expect {
            try compose("spec:\n  a: 1\n  a: 2\n")
        } throws: { error in
            guard let error = error as? YAMLError else { return false }
            return error.line == 3 && error.message.contains("first at line 2")
        }
    }

    @Test func reportsSyntaxErrorsWithTheirLine() {
        #expect {
            try compose("a: 1\nb: [unclosed\nc: 3\n")
        } throws: { error in
            (error as? YAMLError).map { $0.line >= 2 } == true
        }
    }

    @Test func boundsNesting() {
        let deep = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect {
            try compose(deep)
        } throws: { error in
            (error as? YAMLError)?.message.contains("nested deeper") == true
        }
    }
}
