internal import BulwarkCore
internal import Foundation

// MARK: - Safety guards
//
// No AWS change may cut Bulwark off from the account it keeps.
//
// - IAMAccessKey: blocked when a key it would deactivate is one Bulwark signs its own requests
//   to the target with (the static key, or the key behind the role it assumes): every AWS
//   controller would fail from then on, and nothing would turn the key back on.
// A guard that cannot judge (credentials that cannot be resolved) blocks.

extension AccessKeyDriver {
    func assess(_ changes: [PropertyDrift], to resource: Resource, on target: Target) async -> GuardVerdict {
        let deactivated = changes.filter { $0.desired == Self.compliant }.compactMap { Self.key($0.property) }
        guard !deactivated.isEmpty else { return .allow }
        let own: Set<String>
        do {
            own = try await AWSAdapter.credentialChain(target).resolveWithKeys().keyIDs
        } catch {
            return .block("cannot tell which access key Bulwark signs its requests to \(target.name) with, so deactivating keys "
                          + "is not judged safe: \(error)")
        }
        let mine = deactivated.filter { own.contains($0.id) }
        guard !mine.isEmpty else { return .allow }
        let others = deactivated.count - mine.count
        return .block(mine.map { "access key \($0.id) of \($0.user)" }.joined(separator: " and ")
                      + " is the key Bulwark signs its requests to \(target.name) with: deactivating it would stop every AWS "
                      + "controller. Give Bulwark a new key (or a role) first"
                      + (others > 0 ? "; the \(others) other key\(others == 1 ? "" : "s") of this change wait\(others == 1 ? "s" : "") with it" : ""))
    }
}
