import BulwarkCore
package import BulwarkGit

extension Repository {
    /// The record file of audit record `id` as commit `commit` holds it: at the current layout's
    /// path, or else at the layout's before it (`AuditRecord.legacyPath`, where records written
    /// by earlier versions are). Nil when neither holds a file.
    package func auditRecordFile(at commit: ObjectID, id: String, detectedAt: String) throws(GitError) -> (path: String, bytes: [UInt8])? {
        for path in AuditRecord.paths(id: id, detectedAt: detectedAt) {
            if let bytes = try file(at: commit, path: path) { return (path, bytes) }
        }
        return nil
    }
}
