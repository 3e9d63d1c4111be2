import BulwarkCore
import Testing

/// What the drift episodes take in from the audit branch, whose records can be anyone's where no
/// key checks them: an id is quoted in a resolution's reason and salts later ids.
@Suite struct DriftEpisodesTests {
    @Test func anIdNotOfBulwarksFormIsNotTakenIn() {
        var episodes = DriftEpisodes()
        for forged in ["4AQX8B12QZQP4YM7G6D4ZMP61G\u{1b}[2J", String(repeating: "A", count: 4000), "x\ry", "4aqx8b12qzqp4ym7g6d4zmp61g"] {
            episodes.add(id: forged, target: "web-1", resource: "SSHDConfig/root", decision: .held, result: nil, isRevert: false)
            episodes.add(id: forged, target: "web-2", resource: "SSHDConfig/root", decision: .resolved, result: nil, isRevert: false)
        }
        #expect(episodes.entries.isEmpty, "\(episodes.entries)")
    }

    @Test func bulwarksIdsAreTakenInAndEndTheirDrift() {
        var episodes = DriftEpisodes()
        let binding = Binding(controller: "c", target: "web-1", resource: ResourceID(kind: "SSHDConfig", name: "root"))
        let held = AuditID.stable("held")
        episodes.add(id: held, target: "web-1", resource: "SSHDConfig/root", decision: .held, result: nil, isRevert: false)
        #expect(episodes.open(binding) == [held])
        #expect(episodes.salted("X", for: binding) == "X")
        let resolution = DriftEpisodes.resolutionID(after: held)
        episodes.add(id: resolution, target: "web-1", resource: "SSHDConfig/root", decision: .resolved, result: nil, isRevert: false)
        #expect(episodes.open(binding).isEmpty)
        #expect(episodes.salted("X", for: binding) != "X")
    }
}
