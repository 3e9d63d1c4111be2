@testable import BulwarkCommands
import Testing

/// What a process starts before it parses its arguments.
@Suite struct StartupTests {
    /// libgit2 is started on a thread of its own for the commands that open a repository, and
    /// not for help, the version, or no command at all (nothing would use it).
    @Test func libgit2StartsEarlyOnlyForCommandsThatOpenARepository() {
        for command in ["plan", "apply", "run", "report", "validate", "log", "approve", "init", "demo"] {
            #expect(Bulwark.opensRepository(["bulwark", command, "--repo", "r"]), "\(command)")
        }
        #expect(!Bulwark.opensRepository(["bulwark"]))
        #expect(!Bulwark.opensRepository(["bulwark", "version"]))
        #expect(!Bulwark.opensRepository(["bulwark", "help", "plan"]))
        #expect(!Bulwark.opensRepository(["bulwark", "--version"]))
        #expect(!Bulwark.opensRepository(["bulwark", "--help"]))
        #expect(!Bulwark.opensRepository(["bulwark", "plan", "--help"]))
        #expect(!Bulwark.opensRepository(["bulwark", "apply", "-h"]))
    }
}
