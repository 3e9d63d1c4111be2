internal import Foundation

/// garak's report (`garak.<run>.report.jsonl`): one JSON object a line, told apart by
/// `entry_type`. The `init` line gives the run and its start time, `start_run setup` the model
/// under test (`plugins.target_type`/`target_name`, or `model_type`/`model_name` before 0.11),
/// and each `eval` line a probe's result under one detector (`passed` of `total`, or of
/// `total_evaluated` since 0.11). An eval with failures is a finding about the model (the resource), with the probe
/// as the control; one where every attempt passed is a resolved finding, which closes a proposal.
/// An eval that evaluated nothing (`total_evaluated` 0: every output errored) is neither.
extension FindingParser {
    static func garak(_ bytes: [UInt8], now: Date) throws(FindingError) -> [Finding] {
        var run: String?
        var started: Date?
        var model: String?
        var result: [Finding] = []
        var lineNumber = 0
        var unevaluated = 0
        var start = bytes.startIndex
        while start < bytes.endIndex {
            let end = bytes[start...].firstIndex(of: 10) ?? bytes.endIndex
            defer { start = end == bytes.endIndex ? end : end + 1 }
            lineNumber += 1
            guard lineNumber <= maxLines else { throw FindingError("more than \(maxLines) lines", exceedsLimit: true) }
            let line = bytes[start..<end]
            if line.allSatisfy({ $0 == 32 || $0 == 9 || $0 == 13 }) { continue }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else {
                throw FindingError("line \(lineNumber): expected a JSON object")
            }
            let context = "line \(lineNumber)"
            switch string(object["entry_type"]) {
            case "init":
                run = try optionalKey(string(object["run"]), field: "run", context: context)
                started = string(object["start_time"]).flatMap(isoTime)
            case "start_run setup":
                model = string(object["plugins.target_name"]) ?? string(object["plugins.model_name"])
                if let type = string(object["plugins.target_type"]) ?? string(object["plugins.model_type"]), let name = model {
                    model = "\(type):\(name)"
                }
                model = try optionalKey(model, field: "plugins.model_name", context: context)
            case "eval":
                let probe = try key(string(object["probe"]), field: "probe", context: context)
                let detector = try key(string(object["detector"]), field: "detector", context: context)
                // `total` in garak before 0.11; `total_evaluated` (with `fails`) since.
                let passed = number(object["passed"])
                let total = number(object["total"]) ?? number(object["total_evaluated"])
                    ?? passed.flatMap { p in number(object["fails"]).map { p + $0 } }
                guard let passed, let total, passed >= 0, total >= 0, passed <= total, total <= 1e12 else {
                    throw FindingError("\(context): passed and total (or total_evaluated): expected numbers with 0 ≤ passed ≤ total")
                }
                // Nothing evaluated (every attempt errored, or the target refused with an HTTP error, which
                // garak counts as `nones`): no judgement either way. Above all not a pass, which would
                // close the proposal of a probe that failed before, as a model that is down would.
                guard total > 0 else {
                    unevaluated += 1
                    continue
                }
                let failures = total - passed
                let rate = total > 0 ? failures / total : 0
                let severity: Severity = failures == 0 ? .low : rate >= 0.5 ? .high : rate >= 0.1 ? .medium : .low
                let resource = model ?? "model"
                let detectorName = detector.hasPrefix("detector.") ? String(detector.dropFirst("detector.".count)) : detector
                result.append(Finding(resource: resource, control: probe, firstObservedAt: min(started ?? now, now),
                                      title: "\(probe): \(Int(failures)) of \(Int(total)) attempts failed under \(detectorName)",
                                      id: AuditID.stable(["garak", resource, probe, detectorName].joined(separator: "\u{1}")),
                                      source: "garak", severity: severity,
                                      evidence: clipped("garak run \(run ?? "?") probe \(probe) detector \(detectorName)"),
                                      resolved: failures == 0))
                if result.count > maxFindings {
                    throw FindingError("the document holds more than \(maxFindings) findings; at most \(maxFindings) findings a request", exceedsLimit: true)
                }
            default:
                continue
            }
        }
        guard !result.isEmpty else {
            throw FindingError(unevaluated > 0
                ? "garak evaluated no output in its \(unevaluated) eval entr\(unevaluated == 1 ? "y" : "ies") (every attempt errored or was refused with an error): nothing to judge"
                : "no eval entries in the garak report")
        }
        return result
    }
}
