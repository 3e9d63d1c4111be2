import BulwarkCore
@testable import BulwarkHost
import BulwarkTestSupport
import Foundation
import Testing

/// Two paths of one write that reach one value. A resource setting `headers.pass: z` and
/// `headers: {a: b}` was valid, and `apply` wrote the file, then failed "does not read back as
/// desired after the write", leaving a reload owed: the README says each property is read back
/// from the edited text before anything is written. Paths that surely overlap are now refused at
/// validation, within one resource as between two; paths that only may (`model_list[0]` and
/// `model_list[model_name=gpt]`: it depends on the file) are read back from the candidate text
/// before the write, and a fix whose value would not hold writes nothing and fails, recorded.
@Suite struct ConfigFileOverlapTests {
    static let file = "etc/litellm/config.yaml"

    @Test func pathsOfOneResourceThatSurelyOverlapAreRefusedAtValidation() {
        for (properties, words) in [
            ("headers.x_note: z\n  headers: {a: b}", "'headers' and 'headers.x_note' (line 8) name the same value and want it different"),
            ("headers: {a: b}\n  headers.x_note: z", "'headers.x_note' and 'headers' (line 8) name the same value and want it different"),
            ("model_list[*].model_info.note: a\n  model_list[model_name=gpt].model_info.note: b",
             "'model_list[model_name=gpt].model_info.note' and 'model_list[*].model_info.note' (line 8)"),
        ] {
            let error = configStateError(root: "/nonexistent", resource("ConfigFile", "gw", """
                path: \(Self.file)
                properties:
                  \(properties)
                """)) ?? "loaded"
            #expect(error.contains(words), "\(properties): \(error)")
            // The file, line and field of the second path.
            #expect(error.contains("desired-state/r.yaml:") && error.contains(":9") && error.contains("spec.properties."), "\(error)")
        }
    }

    /// The legitimate twins load: paths that agree on the value, that reach different values,
    /// or that only may meet.
    @Test func pathsOfOneResourceThatAgreeOrOnlyMayMeetLoad() {
        for properties in ["headers: {a: b, x_note: z}\n  headers.x_note: z", "headers.a: b\n  headers.x_note: z",
                           "model_list[0].model_info.note: a\n  model_list[model_name=gpt].model_info.note: b",
                           "litellm_settings.callbacks: [langfuse]\n  litellm_settings.callbacks[3]: none"] {
            let error = configStateError(root: "/nonexistent", resource("ConfigFile", "gw", """
                path: \(Self.file)
                properties:
                  \(properties)
                """))
            #expect(error == nil, "\(properties): \(error ?? "")")
        }
    }

    /// The same paths across two resources conflict too (a mapping set whole, which lacks the
    /// other's key, was not seen as one).
    @Test func aMappingSetWholeConflictsWithAKeyInsideItInAnotherResource() {
        let error = configStateError(root: "/nonexistent", resource("ConfigFile", "a", "path: \(Self.file)\nproperties:\n  headers: {a: b}")
            + resource("ConfigFile", "b", "path: \(Self.file)\nproperties:\n  headers.x_note: z"))
        #expect(error?.contains("its headers and this headers.x_note name the same value") == true, "\(error ?? "loaded")")
        #expect(configStateError(root: "/nonexistent", resource("ConfigFile", "a", "path: \(Self.file)\nproperties:\n  headers: {a: b}")
            + resource("ConfigFile", "b", "path: \(Self.file)\nproperties:\n  headers.a: b")) == nil)
    }

    static func gateway(first: String) -> String {
        """
        model_list:
          - model_name: \(first)
            model_info: {note: old}
          - model_name: other
            model_info: {note: old}

        """
    }

    static let overlapping = resource("ConfigFile", "gw", """
        path: \(file)
        properties:
          model_list[0].model_info.note: one
          model_list[model_name=gpt].model_info.note: two
        reload: [/usr/bin/true]
        """)

    /// Where the file's first model is `gpt`, both paths reach one value: the fix fails before
    /// the write, recorded with the reason; the file is byte-identical and no reload is owed.
    @Test func aValueThatWouldNotReadBackFromTheEditedTextWritesNothing() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/" + Self.file
            try write(path, Self.gateway(first: "gpt"), mode: 0o640)
            let state = try configState(root: root, Self.overlapping)
            let (plan, outcome) = try await reconcile(state)
            #expect(plan.remediations.map(\.decision) == [.applied], "\(plan.remediations.map { $0.reason ?? "" })")
            let failed = try #require(outcome.failed.first?.record, "\(outcome.entries.map { $0.record.error ?? "" })")
            #expect(failed.error?.contains("does not read back as desired from the edited text") == true
                    && failed.error?.contains("the file was not changed") == true, "\(failed.error ?? "")")
            #expect(try read(path) == Self.gateway(first: "gpt"), "nothing written")
            // Nothing is owed: the next plan has the values to fix, not the reload.
            let again = try await Reconciler(registry: Registry([HostAdapter.definition()])).plan(state)
            let properties = again.remediations.flatMap(\.changes).map(\.property)
            #expect(!properties.isEmpty && !properties.contains { $0.hasPrefix("[reload of") }, "\(properties)")
        }
    }

    /// The legitimate twin: where the first model is another, the two paths reach two values,
    /// both are written and read back, and the fix is verified.
    @Test func pathsThatReachTwoValuesAreWritten() async throws {
        try await withTemporaryDirectory { root in
            let path = root + "/" + Self.file
            try write(path, Self.gateway(first: "first").replacingOccurrences(of: "model_name: other", with: "model_name: gpt"), mode: 0o640)
            let (plan, outcome) = try await reconcile(try configState(root: root, Self.overlapping))
            #expect(plan.remediations.map(\.decision) == [.applied])
            #expect(outcome.verified.count == 1 && outcome.failed.isEmpty, "\(outcome.entries.map { $0.record.error ?? "" })")
            let python = try run("/usr/bin/python3", ["-c", "import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); "
                                                      + "print([m['model_info']['note'] for m in d['model_list']])", path])
            #expect(python.stdout == "['one', 'two']\n", "\(python.stderr)")
        }
    }
}
