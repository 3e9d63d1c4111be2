public import BulwarkCore

/// approvals/<id>.yaml approving `remediation`, a held or blocked one of a plan, as `bulwark
/// approve` writes it: the approval of a guard's block names the block its reason showed.
public func approvalFile(_ remediation: PlannedRemediation, approver: String = "Sam Admin <sam@example.org>",
                         reason: String) throws -> SourceFile {
    guard let id = remediation.id else { throw ApprovalFileError.noID(remediation.binding.description) }
    var spec = "id: \(YAML.doubleQuoted(id)), approver: \(YAML.doubleQuoted(approver)), reason: \(YAML.doubleQuoted(reason))"
    if remediation.decision == .blocked {
        guard let block = remediation.reason.flatMap({ Planner.approvedBlock(fromRecorded: $0, id: id) }) else {
            throw ApprovalFileError.noBlock(remediation.reason ?? "")
        }
        spec += ", block: \(YAML.doubleQuoted(block))"
    }
    let text = "apiVersion: bulwark/v1\nkind: Approval\nmetadata: {name: approval}\nspec: {\(spec)}\n"
    return SourceFile(path: "approvals/\(id).yaml", contents: Array(text.utf8))
}

public enum ApprovalFileError: Error {
    case noID(String)
    case noBlock(String)
}
