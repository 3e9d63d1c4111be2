internal import Foundation
internal import BulwarkCore

/// The human status page: server-rendered HTML with no external assets.
enum StatusPage {
    static func render(_ status: DaemonStatus, repository: String) -> String {
        // Markup characters as entities; controls and bidirectional controls (a value or a name
        // from a target or a commit) as escapes, as the terminal shows them, so that nothing
        // reorders or hides what the page shows.
        func e(_ text: String) -> String {
            TerminalText.printable(text, colour: false).replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
        }
        func mttr(_ s: MTTRSummary) -> String {
            s.fixes == 0 ? "no verified fixes"
                : "\(s.fixes) fixes · p50 \(MTTRSummary.duration(s.p50Seconds)) · p90 \(MTTRSummary.duration(s.p90Seconds)) · max \(MTTRSummary.duration(s.maxSeconds))"
        }
        var html = """
            <!doctype html><html lang="en"><head><meta charset="utf-8"><title>Bulwark</title>
            <meta http-equiv="refresh" content="10">
            <style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}
            td,th{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left}.bad{color:#b00}.ok{color:#070}code{font-size:12px}</style>
            </head><body><h1>Bulwark</h1>
            <p>\(e(repository)) · revision <code>\(e(status.revision?.short ?? "none"))</code> ·
            <span class="\(status.ready ? "ok" : "bad")">\(e(status.readiness))</span></p>
            """
        if let error = status.sourceError { html += "<p class=\"bad\">Source: \(e(error))</p>" }
        if let recovery = status.auditDivertedTo {
            html += "<p class=\"bad\">Audit trail diverted: records go to <code>\(e(recovery))</code>, not to the audit branch "
                + "(it lost records Bulwark pushed; see readiness)</p>"
        }
        html += "<h2>MTTR</h2><table><tr><th>last day</th><td>\(e(mttr(status.mttrLastDay)))</td></tr>"
            + "<tr><th>last week</th><td>\(e(mttr(status.mttrLastWeek)))</td></tr></table>"
        html += "<h2>Targets</h2><table><tr><th>target</th><th>adapter</th><th>resources</th></tr>"
        for target in status.targets { html += "<tr><td>\(e(target.name))</td><td>\(e(target.adapter))</td><td>\(target.resources)</td></tr>" }
        html += "</table><h2>Open drift (\(status.openDrift.count))</h2><table><tr><th>target</th><th>resource</th><th>severity</th><th>decision</th><th>properties</th></tr>"
        for item in status.openDrift {
            html += "<tr><td>\(e(item.target))</td><td>\(e(item.resource))</td><td>\(e(item.severity.rawValue))</td><td>\(e(item.decision.rawValue))</td>"
                + "<td>\(e(item.changes.map { "\($0.property): \($0.observed ?? "(unset)") -> \($0.desired)" }.joined(separator: "; ")))</td></tr>"
        }
        html += "</table><h2>Recent remediations</h2><table><tr><th>detected</th><th>target</th><th>resource</th><th>decision</th><th>result</th><th>audit commit</th></tr>"
        for item in status.recent {
            html += "<tr><td>\(e(item.detectedAt.map(Timestamp.format) ?? ""))</td><td>\(e(item.target ?? ""))</td><td>\(e(item.resource ?? ""))</td>"
                + "<td>\(e(item.decision?.rawValue ?? ""))</td>"
                + "<td class=\"\(item.result == .failed ? "bad" : "ok")\">\(e(item.result?.rawValue ?? ""))</td><td><code>\(e(item.commit.map { String($0.prefix(12)) } ?? ""))</code></td></tr>"
        }
        return html + "</table></body></html>\n"
    }
}
