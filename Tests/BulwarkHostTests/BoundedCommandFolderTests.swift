@testable import BulwarkHost
import Foundation
import Testing

/// An operator's command (a `ConfigFile`'s validate or reload) runs as root in `/`, never where
/// Bulwark was started: `python3 -c` puts its working folder on sys.path, so the shipped PyYAML
/// check would import a `yaml.py` someone left in the folder an operator ran `bulwark apply` from.
@Suite struct BoundedCommandFolderTests {
    @Test func anOperatorsCommandRunsInTheRootFolder() throws {
        #expect(FileManager.default.currentDirectoryPath != "/", "run from a folder other than / for this to mean anything")
        let outcome = try BoundedCommand(arguments: ["/bin/pwd", "-P"], timeout: .seconds(30)).run()
        #expect(outcome.status == 0 && outcome.output == "/", "\(outcome.output)")
    }
}
