@testable import BulwarkCore
import Testing

/// The policy kinds are one table: each kind's folder is enforced and its reader is reached from
/// the table, with no switch elsewhere to keep in step.
@Suite struct PolicyKindTableTests {
    @Test func theTableHoldsEveryPolicyKindWithItsFolder() {
        #expect(DesiredStateLoader.policyKinds == [
            "Target": "controllers/", "Controller": "controllers/", "GlobalLimits": "controllers/", "Notifier": "controllers/",
            "Waiver": "waivers/", "Approval": "approvals/", "Pause": "controllers/", "FindingRule": "finding-rules/",
        ])
    }

    @Test func eachPolicyKindOutsideItsFolderIsRefusedNamingTheFolderAndInsideItIsRead() throws {
        let loader = DesiredStateLoader(registry: memoryRegistry(MemoryDriver()))
        func problems(_ files: [SourceFile]) -> String {
            do {
                _ = try loader.load(files, revision: "r")
                return ""
            } catch {
                return error.errors.map(\.description).joined(separator: "\n")
            }
        }
        for (name, kind) in DesiredStateLoader.policyKindTable {
            let manifest = """
                apiVersion: bulwark/v1
                kind: \(name)
                metadata: {name: x}
                spec: {}
                """
            let misplaced = kind.folder == "controllers/" ? "waivers/x.yaml" : "controllers/x.yaml"
            let refused = problems([file(misplaced, manifest)])
            #expect(refused.contains("\(name) manifests belong under \(kind.folder)"), "\(name): \(refused)")
            // In its folder the kind's own reader runs: what it says is about the spec, not the folder.
            let read = problems([file(kind.folder + "x.yaml", manifest)])
            #expect(!read.contains("belong under"), "\(name): \(read)")
        }
    }
}
