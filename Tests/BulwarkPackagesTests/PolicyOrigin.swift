import BulwarkTestSupport
import Foundation

extension AptSandbox {
    /// A bare policy origin under `base` whose `main` targets this sandbox's root with the
    /// DebianPackage kind, plus `files` (path in the repository → contents), committed with
    /// `message` and pushed. Returns the origin and the working clone it was pushed from.
    func policyOrigin(in base: String, files: [String: String], message: String) throws -> (origin: String, seed: String) {
        let origin = base + "/origin.git", seed = base + "/seed"
        try git("init", "-q", "--bare", "-b", "main", origin)
        try git("clone", "-q", origin, seed)
        try write(seed + "/controllers/packages.yaml", """
            apiVersion: bulwark/v1
            kind: Target
            metadata: {name: sandbox}
            spec: {adapter: host, root: \(root)}
            ---
            apiVersion: bulwark/v1
            kind: Controller
            metadata: {name: patches}
            spec: {kinds: [DebianPackage]}
            """)
        for (path, contents) in files.sorted(by: { $0.key < $1.key }) {
            try write(seed + "/" + path, contents)
        }
        try git("add", "-A", in: seed)
        try git("commit", "-qm", message, in: seed)
        try git("push", "-q", "origin", "main", in: seed)
        return (origin, seed)
    }
}
