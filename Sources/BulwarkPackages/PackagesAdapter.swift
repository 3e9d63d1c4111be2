public import BulwarkCore

/// Debian packages on host targets (a target with a `root`): the `DebianPackage` kind. Its
/// kinds join the host adapter's (`HostAdapter.definition().kinds + PackagesAdapter.kinds()`),
/// so a package is managed on the same targets as the host's files.
public enum PackagesAdapter {
    /// The adapter whose targets the kinds bind to.
    public static let adapter = "host"

    public static func kinds() -> [KindDefinition] {
        [
            // A Debian package present at a minimum version, or absent (dpkg database, apt).
            KindDefinition(name: DebianPackageDriver.kind, adapter: adapter,
                           parse: DebianPackageDriver.parse, driver: DebianPackageDriver(),
                           weakens: DebianPackageDriver.weakens),
        ]
    }
}
