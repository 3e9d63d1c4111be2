internal import Foundation
internal import BulwarkCore
// `stat`: in a build where CLinux's header brings it in first, its members are CLinux's.
internal import CLinux

/// The reloads a `ConfigFile` fix still owes its service, kept on the target beside its lock:
/// `run/bulwark/reload-owed/<SHA-256 of the file's path>`, one small JSON file per managed
/// configuration file, holding the reloads that have not completed since the file was written:
/// each a command (`key`: a digest of its words) and the resource that asked for it.
///
/// Kept by what must happen, not only by who asked for it: a resource's reload is owed when a
/// reload with its command is owed, whoever asked for it, or one it asked for, whatever the
/// command (`Owed.contains`). A resource renamed in the policy, with the same file and command,
/// still owes the reload its old name left owed (kept by name alone, the rename dropped it: the
/// service kept its old configuration while Bulwark reported it in sync); so does a resource
/// whose reload command was changed (kept by command alone, the change dropped it, and a reload
/// that failed is what one changes a command for). A reload that no resource of the file in the
/// policy asks for any more, by name or by command (renamed with a new command at once, or taken
/// out), is owed by every resource of the file that has a reload command (`Owed.orphaned`, read
/// against `PolicyScope`), and the first of their commands to succeed completes it. A marker
/// Bulwark wrote before names resources only (`owed`); it is read as owing every reload of its
/// file (`Owed.everyCommand`): at worst one reload more.
///
/// A fix writes the marker, holding every resource of the write that has a reload command with
/// its command, after the candidate passed its validation and before it is renamed into place;
/// once a command succeeded, it takes out the reloads with that command and those the resources
/// it ran for asked for. A reload stays while its command failed, ran past its timeout, or never
/// finished because the process was killed (systemd's final SIGKILL). While it is there, the
/// `[reload of ConfigFile/NAME]` of each resource that owes it reads as owed: `plan` shows it
/// as drift, the next apply runs the reload again, and recovery does not record the
/// interrupted fix verified.
///
/// On the target rather than in the state directory: what is owed is a fact about the host's
/// service, not about one Bulwark, so a second Bulwark with a state directory of its own, or a
/// `plan` run with another, sees it too; and `run` is emptied at boot, when every service starts
/// from the file it finds, which is when nothing is owed any more. The folder is Bulwark's own,
/// as the lock's is (mode 0700); a marker is mode 0600. Written only under the target's lock
/// (`HostLock`), through descriptors that follow no link: a temporary file, fsynced, renamed,
/// then the folder fsynced, so that the marker is on disk before the file it stands for changes;
/// removed, then the folder fsynced, so that what a restart finds is what Bulwark last did.
/// A marker that is not a regular file of this user or root, or that another user could write,
/// or whose content is not what Bulwark writes, fails the resource's observation, naming it; so
/// does a folder from the target root down to the marker's (`run`, `run/bulwark`) that is a
/// link, another user's, or writable by group or others (`HostRoot.openFolderNoFollow(trusted:)`):
/// whoever owns `run` can take `run/bulwark` away with every marker in it.
enum OwedReloads {
    static let folder = ["run", "bulwark", "reload-owed"]
    /// A marker holds a few digests and names; anything larger is not one Bulwark wrote.
    static let maxSize = 64 << 10

    /// A marker's content.
    struct Marker: Codable, Equatable {
        /// The managed file, as its resources name it (`/etc/litellm/config.yaml`).
        var file: String
        /// The reloads owed, sorted.
        var reloads: [Reload]?
        /// The resources whose reload was owed (`ConfigFile/litellm`), as markers were written
        /// before `reloads`: read, never written.
        var owed: [String]?
    }

    /// One reload owed: its command (`key`) and the resource that asked for it.
    struct Reload: Codable, Hashable, Sendable, Comparable {
        var command: String
        var resource: String

        static func < (a: Self, b: Self) -> Bool { (a.command, a.resource) < (b.command, b.resource) }
    }

    /// The reloads a file is owed.
    struct Owed: Sendable, Equatable {
        var reloads: Set<Reload> = []
        /// Read from a marker that names resources only: every reload of the file is owed, until
        /// the marker is written again.
        var everyCommand = false
        /// Those of `reloads` that no resource of the file in the policy asks for, by name or by
        /// command (`adoptingOrphans`): owed by every resource of the file that reloads it.
        var orphaned: Set<Reload> = []

        /// Whether the reload of `resource`, whose command is `command` (`key`), is owed: one with
        /// that command is (whoever asked for it), or one that resource asked for (with whatever
        /// command), or one no resource of the policy asks for any more.
        func contains(command: String, resource: String) -> Bool {
            everyCommand || !orphaned.isEmpty || reloads.contains { $0.command == command || $0.resource == resource }
        }

        /// `command` completed for `resources`: what it owed, what they asked for, and what no
        /// resource asks for any more (a reload of the file's service) is done.
        mutating func ran(_ command: String, for resources: [String]) {
            reloads = reloads.filter { $0.command != command && !resources.contains($0.resource) && !orphaned.contains($0) }
            orphaned = []
        }

        /// The same, with `orphaned` set to the reloads no resource of the file asks for:
        /// `claims(reload)` tells whether one of the policy's resources of the file asks for it
        /// (by its name or its command). A reload owed by a resource that was renamed and given
        /// another command at once, or taken out of the policy, is then run by whichever resource
        /// reloads the file now, instead of staying owed to no one while the service keeps the
        /// configuration it read before the write.
        func adoptingOrphans(_ claims: (Reload) -> Bool) -> Owed {
            var owed = self
            owed.orphaned = reloads.filter { !claims($0) }
            return owed
        }
    }

    /// The marker's name for `file`: the hex SHA-256 of its path as its resources name it.
    static func name(_ file: String) -> String { SHA256.hex(SHA256.hash(Array(file.utf8))) }

    /// What a reload command is kept as: the hex SHA-256 of its words, each followed by a NUL
    /// (a word holds none), so that no two commands share one and no word of it (a token in a
    /// header) is written to the target.
    static func key(_ argv: [String]) -> String {
        SHA256.hex(SHA256.hash(argv.flatMap { Array($0.utf8) + [0] }))
    }

    /// The reloads `file` is owed on `root`; none when there is no marker (nor its folder).
    /// Changes nothing.
    static func owed(_ file: String, in root: HostRoot) throws(HostError) -> Owed {
        let folder: Directory
        do {
            folder = try root.openFolderNoFollow(Self.folder, trusted: true)
        } catch where error.code == .missing {
            return Owed()
        }
        let name = name(file)
        let display = root.full(Self.folder + [name])
        guard let found = try FileIO.read(name, in: folder, display: display) else { return Owed() }
        try trusted(uid: found.uid, mode: found.mode, display: display)
        guard found.bytes.count <= maxSize,
              let marker = try? JSONDecoder().decode(Marker.self, from: Data(found.bytes)), marker.file == file,
              let owed = Self.owed(marker) else {
            throw HostError("is not a marker of an owed reload as Bulwark writes it (JSON with `file` \(file) and `reloads`); "
                            + "remove it if no reload of \(file) is owed", path: display)
        }
        return owed
    }

    /// What `marker` says is owed; nil for content Bulwark never wrote (neither or both lists, a
    /// command that is not a digest, a resource without a name).
    private static func owed(_ marker: Marker) -> Owed? {
        switch (marker.reloads, marker.owed) {
        case (let reloads?, nil):
            let digit = { (byte: UInt8) in (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte) }
            guard reloads.allSatisfy({
                $0.command.utf8.count == 2 * SHA256.byteCount && $0.command.utf8.allSatisfy(digit) && !$0.resource.isEmpty
            }) else { return nil }
            return Owed(reloads: Set(reloads))
        case (nil, let names?):
            return Owed(everyCommand: !names.isEmpty)
        default:
            return nil
        }
    }

    /// Makes `reloads` the reloads `file` is owed on `root`, on disk before it returns; none
    /// removes the marker. Only under the target's lock: nothing else writes here, so a
    /// temporary file found is a killed writer's, and is replaced.
    static func record(_ reloads: Set<Reload>, for file: String, in root: HostRoot) throws(HostError) {
        let folder = try root.openFolderNoFollow(Self.folder, create: 0o700, trusted: true)
        let name = name(file)
        let display = root.full(Self.folder + [name])
        let temporary = ".new-" + name
        unlinkat(folder.fd, temporary, 0)
        if reloads.isEmpty {
            guard unlinkat(folder.fd, name, 0) == 0 else {
                guard errno == ENOENT else { throw HostError("cannot remove the marker of an owed reload: \(errnoText())", path: display) }
                return
            }
            // Synced as the marker's writing is: a marker back after a power loss would cost only
            // one more reload, but recovery would then record a fix whose reload completed as
            // `interrupted`, and a command since taken out of the policy would stay owed with no
            // resource left to run it. One fsync of the folder, after a reload that took longer.
            guard fsync(folder.fd) == 0 else {
                throw HostError("cannot fsync the folder of the marker of an owed reload: \(errnoText())", path: root.full(Self.folder))
            }
            return
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let encoded = try? encoder.encode(Marker(file: file, reloads: reloads.sorted())) else {
            throw HostError("cannot encode the marker of an owed reload", path: display)
        }
        let bytes = Array(encoded)
        let fd = openat(folder.fd, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw HostError("cannot create the marker of an owed reload: \(errnoText())", path: display) }
        var renamed = false
        defer {
            close(fd)
            if !renamed { unlinkat(folder.fd, temporary, 0) }
        }
        guard Descriptor.writeAll(fd, bytes) else {
            throw HostError("cannot write the marker of an owed reload: \(errnoText())", path: display)
        }
        guard fsync(fd) == 0 else { throw HostError("cannot fsync the marker of an owed reload: \(errnoText())", path: display) }
        guard renameat(folder.fd, temporary, folder.fd, name) == 0 else {
            throw HostError("cannot rename the marker of an owed reload into place: \(errnoText())", path: display)
        }
        renamed = true
        guard fsync(folder.fd) == 0 else {
            throw HostError("cannot fsync the folder of the marker of an owed reload: \(errnoText())", path: root.full(Self.folder))
        }
    }

    /// A marker must be this user's or root's, and no one else's to write; so must its folder and
    /// every folder above it up to the root (`HostRoot.openFolderNoFollow(trusted:)`): a marker
    /// taken away by another user would let a file's new values go unreloaded.
    private static func trusted(uid: uid_t, mode: mode_t, display: String) throws(HostError) {
        guard StrictModes.trusted(uid), mode & 0o022 == 0 else {
            throw HostError("holds the reloads Bulwark owes, but its owner (uid \(uid)) or mode (\(String(mode & 0o7777, radix: 8))) "
                            + "lets another user change it; make it root's, mode 0700 (a marker 0600)", path: display)
        }
    }
}
