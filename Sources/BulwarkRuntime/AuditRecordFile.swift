import BulwarkCore
package import BulwarkGit

extension Repository {
    /// The record file of audit record `id` as commit `commit` holds it: at the current layout's
    /// path, or else at the layout's before it (`AuditRecord.legacyPath`, where records written
    /// by earlier versions are). Nil when neither holds a file.
    package func auditRecordFile(at commit: ObjectID, id: String, detectedAt: String) throws(GitError) -> (path: String, bytes: [UInt8])? {
        for path in AuditRecord.paths(id: id, detectedAt: detectedAt) {
            // A folder (or a submodule) at a record's path is no record: anyone who can push
            // can put one there, and reading it as a file threw, stopping every pass.
            if let bytes = try blob(at: commit, path: path) { return (path, bytes) }
        }
        return nil
    }
}
