package import BulwarkCore
package import BulwarkGit
package import Foundation

/// The local audit branch's `DriftEpisodes`, kept in the state directory (`drift-episodes`) so
/// that a pass does not read the whole branch to learn which drift is recorded open.
///
/// The file names the audit commit it is up to date with (`head`). A reader walks the branch
/// from its head back until it meets that commit, and takes in the records after it, oldest
/// first: normally none, as a process adds its own records before it ends. A file that names
/// a commit not on the branch (another clone's, a rewritten branch), a damaged one (its
/// checksum or a line does not check out) or a missing one is rebuilt from the whole branch.
/// It decides whether a resource found in sync gets a `resolved` record, and how the ids of
/// decisions recorded once are salted (so which approval counts). With a signing key or audit
/// signers, only records a trusted key signed are taken in (as `PolicyRepository.contains(recordID:)`
/// takes them): a forged record on the branch salts no id and is vouched for by no resolution.
/// Without either, nothing can be checked, as for every record id. The file is as trusted as
/// the state clone it sits beside (the same owner, mode 0600).
///
/// The file names the trust it was built with (`trust`: `none`, or a digest of the signing key
/// and the audit signers' file): one built by a run without keys took in every record, and a
/// run with keys that used it acted on a forged record (a stale approval used again). A file of
/// another trust is rebuilt from the branch.
///
/// Format (UTF-8, one line each; fields percent-encoded as `RecentFixIndex` does, `-` for none):
///
///     bulwark-drift-episodes 2
///     head <commit hex, or none>
///     trust <none, or the trust's digest in hex>
///     <target> <resource> <last resolution id> <last fix id> [<open id> …]
///     …
///     end <entries> <FNV-1a of every byte before this line, hex>
package struct DriftEpisodeIndex: Sendable, Equatable {
    package static let fileName = "drift-episodes"
    static let header = "bulwark-drift-episodes 2"
    /// A file larger than this is not read: rebuilt from git.
    static let maxSize = 64 << 20

    package var head: ObjectID?
    /// Which records it took in: `none` (every record), or the digest of the trust that checked them.
    package var trust: String
    package var episodes: DriftEpisodes

    package init(head: ObjectID?, trust: String, episodes: DriftEpisodes) {
        self.head = head
        self.trust = trust
        self.episodes = episodes
    }

    /// Takes in `record`'s decision (`DriftEpisodes.add`); `closes`: a recovery's `interrupted`
    /// record found as desired (`RemediationReport.Entry.foundAsDesired`).
    package static func add(_ recorded: RecordedDecision, closes: Bool, to episodes: inout DriftEpisodes) {
        guard let target = recorded.target, let resource = recorded.resource, let decision = recorded.decision else { return }
        episodes.add(id: recorded.id, target: target, resource: resource, decision: decision, result: recorded.result,
                     isRevert: recorded.reverts != nil, closes: closes)
    }

    /// The file in `directory`, or nil when there is none or it does not check out.
    package static func read(in directory: String) -> DriftEpisodeIndex? {
        CheckedLineFile.read(directory + "/" + fileName, maxSize: maxSize).flatMap(parse)
    }

    /// The index `bytes` state, or nil when they are not one whole, well-formed file.
    static func parse(_ bytes: [UInt8]) -> DriftEpisodeIndex? {
        guard let (lines, count) = CheckedLineFile.lines(bytes) else { return nil }
        guard lines.count == count + 3, String(decoding: lines[0], as: UTF8.self) == header else { return nil }
        let headLine = String(decoding: lines[1], as: UTF8.self)
        let headHex = String(headLine.dropFirst(5))
        guard headLine.hasPrefix("head "), headHex == "none" || ObjectID(hex: headHex) != nil else { return nil }
        guard let trust = CheckedLineFile.trust(lines[2]) else { return nil }
        var episodes = DriftEpisodes()
        for line in lines[3...] {
            let fields = line.split(separator: 0x20, omittingEmptySubsequences: false)
            guard fields.count >= 4, let target = RecentFixIndex.decode(fields[0]), let resource = RecentFixIndex.decode(fields[1]),
                  let resolution = optional(fields[2]), let fix = optional(fields[3]) else { return nil }
            var open: [String] = []
            for field in fields[4...] {
                guard let id = RecentFixIndex.decode(field) else { return nil }
                open.append(id)
            }
            let key = DriftEpisodes.Key(target: target, resource: resource)
            guard episodes.entries[key] == nil else { return nil }
            episodes.entries[key] = .init(open: open, lastResolution: resolution.value, lastFix: fix.value)
        }
        return DriftEpisodeIndex(head: ObjectID(hex: headHex), trust: trust, episodes: episodes)
    }

    /// A field that may say none (`-`): nil when it is not well formed.
    private static func optional(_ field: ArraySlice<UInt8>) -> (value: String?, Void)? {
        if field.count == 1, field.first == UInt8(ascii: "-") { return (nil, ()) }
        return RecentFixIndex.decode(field).map { ($0, ()) }
    }

    /// The file's bytes, entries sorted (the same index, the same bytes).
    package func serialized() -> [UInt8] {
        var bytes = Array("\(Self.header)\nhead \(head?.hex ?? "none")\ntrust \(trust)\n".utf8)
        for (key, entry) in episodes.entries.sorted(by: { $0.key < $1.key }) {
            RecentFixIndex.encode(key.target, into: &bytes)
            bytes.append(0x20)
            RecentFixIndex.encode(key.resource, into: &bytes)
            for value in [entry.lastResolution, entry.lastFix] {
                bytes.append(0x20)
                if let value { RecentFixIndex.encode(value, into: &bytes) } else { bytes.append(UInt8(ascii: "-")) }
            }
            for id in entry.open {
                bytes.append(0x20)
                RecentFixIndex.encode(id, into: &bytes)
            }
            bytes.append(0x0a)
        }
        CheckedLineFile.end(&bytes, entries: episodes.entries.count)
        return bytes
    }

    /// Replaces the file in `directory` (not synced: after a crash it is the old file, the new
    /// one, or none, and each of those is rebuilt or caught up from git).
    package func write(in directory: String) throws {
        try StateFile.replace(directory + "/" + Self.fileName, with: serialized())
    }
}
