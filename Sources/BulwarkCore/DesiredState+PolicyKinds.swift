public import Foundation

/// One manifest document: its envelope (apiVersion, kind, metadata), then the reader of its kind:
/// the policy kinds (Target, Controller, Notifier, Waiver, Approval, Pause, GlobalLimits) here,
/// adapter kinds through the registry.
extension DesiredStateLoader {
    func read(
        _ document: YAMLNode, file: String, diagnostics: Diagnostics,
        targets: inout [String: Target], controllers: inout [String: ControllerConfig],
        resources: inout [ResourceID: Resource], policy: inout PolicyObjects
    ) {
        let top = SpecReader(node: document, field: "", file: file, resource: nil, diagnostics: diagnostics, now: now)
        guard top.entries() != nil else { return }
        top.allowOnly(["apiVersion", "kind", "metadata", "targets", "spec"])
        if let version = top.field("apiVersion", required: true)?.string(), version != Self.apiVersion {
            top.field("apiVersion")?.fail("unsupported apiVersion '\(quotedForMessage(version))'; expected \(Self.apiVersion)")
        }
        guard let kindReader = top.field("kind", required: true), let kind = kindReader.string() else { return }
        let allKinds = Self.policyKindTable.keys.sorted() + registry.kindNames
        guard Self.policyKindTable[kind] != nil || registry.kinds[kind] != nil else {
            kindReader.fail("unknown kind '\(quotedForMessage(kind))'; known kinds: \(allKinds.joined(separator: ", "))")
            return
        }
        guard let metadata = top.field("metadata", required: true), metadata.entries() != nil else { return }
        metadata.allowOnly(["name", "labels", "annotations"])
        guard let nameReader = metadata.field("name", required: true), let name = nameReader.string() else { return }
        guard Self.isValidName(name) else {
            nameReader.fail("'\(quotedForMessage(name))' is not a valid name: use lowercase letters, digits, '-' and '.', at most 253 characters, starting and ending with a letter or digit")
            return
        }
        let id = ResourceID(kind: kind, name: name)
        let labels = metadata.field("labels")?.stringMap() ?? [:]
        let annotations = metadata.field("annotations")?.stringMap() ?? [:]
        let location = SourceLocation(file: file, line: document.line, column: document.column)
        let spec = SpecReader(node: top.field("spec", required: true)?.node ?? document, field: "spec", file: file,
                              resource: id.description, diagnostics: diagnostics, now: now)
        guard top.field("spec") != nil else { return }
        let inControllers = file.hasPrefix("controllers/")
        if let policyKind = Self.policyKindTable[kind], !file.hasPrefix(policyKind.folder) {
            kindReader.fail("\(kind) manifests belong under \(policyKind.folder)")
            return
        }

        func duplicate(_ other: SourceLocation) {
            nameReader.fail("duplicate \(kind) named '\(name)' (also defined at \(other))")
        }

        if let policyKind = Self.policyKindTable[kind] {
            let document = PolicyKind.Document(name: name, labels: labels, file: file, location: location, top: top, spec: spec,
                                               duplicate: duplicate)
            policyKind.read(self, document, &targets, &controllers, &policy)
        } else {
            if let text = annotations["mode"], Mode(rawValue: text) == nil {
                metadata.field("annotations")?.field("mode")?.fail(
                    "expected one of \(Mode.allCases.map(\.rawValue).joined(separator: ", ")), got '\(quotedForMessage(text))'")
            }
            guard !inControllers, file.hasPrefix("desired-state/") else {
                kindReader.fail("\(kind) resources belong under desired-state/")
                return
            }
            if let existing = resources[id] { duplicate(existing.location); return }
            var severity = Severity.medium
            if let text = annotations["severity"] {
                if let value = Severity(rawValue: text) {
                    severity = value
                } else {
                    metadata.field("annotations")?.field("severity")?.fail(
                        "expected one of \(Severity.allCases.map(\.rawValue).joined(separator: ", ")), got '\(quotedForMessage(text))'")
                }
            }
            let selector = top.field("targets").flatMap(readSelector) ?? .all
            guard let definition = registry.kinds[kind], let parsed = definition.parse(spec) else { return }
            resources[id] = Resource(id: id, severity: severity, labels: labels, annotations: annotations,
                                     targets: selector, spec: parsed, location: location)
        }
    }

    /// A day `YYYY-MM-DD` as the first moment after it (the next day, 00:00 UTC); nil unless the
    /// text is exactly such a day of the calendar (`Timestamp.day`).
    public static func endOfDay(_ text: String) -> Date? {
        Timestamp.day(text)?.addingTimeInterval(86_400)
    }

    /// Why `text` is not a day `endOfDay` reads.
    public static func notADay(_ text: String) -> String {
        "expected a day of the calendar written YYYY-MM-DD, such as 2027-01-31, got '\(quotedForMessage(text))'"
    }

    func readWaiver(_ spec: SpecReader, name: String, location: SourceLocation) -> Waiver? {
        guard spec.entries() != nil else { return nil }
        spec.allowOnly(["match", "reason", "owner", "ticket", "expires"])
        var waiver = Waiver(name: name, reason: "", owner: "", expiresAt: now, location: location)
        if let match = spec.field("match"), match.entries() != nil {
            match.allowOnly(["kind", "resource", "property", "targets"])
            if let reader = match.field("kind"), let kind = reader.string() {
                if registry.kinds[kind] == nil { reader.fail("unknown kind '\(quotedForMessage(kind))'; known kinds: \(registry.kindNames.joined(separator: ", "))") }
                waiver.kind = kind
            }
            waiver.resource = match.field("resource")?.string()
            waiver.property = match.field("property")?.string()
            waiver.targets = match.field("targets")?.strings()
        }
        guard let reason = spec.field("reason", required: true)?.string(),
              let owner = spec.field("owner", required: true)?.string(),
              let expiresReader = spec.field("expires", required: true), let expires = expiresReader.string() else { return nil }
        guard let end = Self.endOfDay(expires) else {
            expiresReader.fail(Self.notADay(expires))
            return nil
        }
        guard end <= now.addingTimeInterval(366 * 86_400) else {
            expiresReader.fail("a waiver may last at most a year; renew it before then")
            return nil
        }
        if end <= now {
            expiresReader.warn("waiver expired on \(expires); it no longer applies")
        } else if end <= now.addingTimeInterval(14 * 86_400) {
            expiresReader.warn("waiver expires on \(expires) (within 14 days)")
        }
        waiver.reason = reason
        waiver.owner = owner
        waiver.ticket = spec.field("ticket")?.string()
        waiver.expiresAt = end
        return waiver
    }

    func readNotifier(_ spec: SpecReader, name: String, location: SourceLocation) -> NotifierConfig? {
        guard spec.entries() != nil else { return nil }
        spec.allowOnly(["url", "urlEnv", "urlFile", "format", "secretEnv", "secretFile", "on"])
        func secret(_ inline: String?, _ env: String, _ file: String, required: Bool) -> NotifierConfig.Secret?? {
            var found: [NotifierConfig.Secret] = []
            if let inline, let value = spec.field(inline)?.string() { found.append(.inline(value)) }
            if let value = spec.field(env)?.string() { found.append(.environment(value)) }
            if let value = spec.field(file)?.string() { found.append(.file(value)) }
            let names = ([inline].compactMap { $0 } + [env, file]).joined(separator: ", ")
            guard found.count <= 1 else { spec.fail("set only one of \(names)"); return .none }
            if found.isEmpty, required { spec.fail("set one of \(names)"); return .none }
            return .some(found.first)
        }
        guard case .some(let url?) = secret("url", "urlEnv", "urlFile", required: true),
              case .some(let signing) = secret(nil, "secretEnv", "secretFile", required: false) else { return nil }
        // Inline, the URL is checked here; from the environment or a file, before each delivery.
        if case .inline(let text) = url, let problem = NotifierConfig.transportProblem(text) {
            spec.field("url")?.fail(problem)
            return nil
        }
        var format = NotifierConfig.Format.json
        if let reader = spec.field("format") {
            guard let text = reader.oneOf(NotifierConfig.Format.allCases.map(\.rawValue)),
                  let value = NotifierConfig.Format(rawValue: text) else { return nil }
            format = value
        }
        var events = NotifierConfig.defaultEvents
        if let reader = spec.field("on"), let list = reader.strings() {
            let unknown = list.filter { !NotifierConfig.allEvents.contains($0) }
            guard unknown.isEmpty else {
                reader.fail("unknown event \(unknown.joined(separator: ", ")); expected any of \(NotifierConfig.allEvents.sorted().joined(separator: ", "))")
                return nil
            }
            events = Set(list)
        }
        return NotifierConfig(name: name, url: url, format: format, secret: signing, events: events, location: location)
    }

    func readApproval(_ spec: SpecReader, file: String, location: SourceLocation) -> Approval? {
        guard spec.entries() != nil else { return nil }
        spec.allowOnly(["id", "approver", "reason", "expires", "block", "record"])
        guard let idReader = spec.field("id", required: true), let id = idReader.string(),
              let approver = spec.field("approver", required: true)?.string(),
              let reason = spec.field("reason", required: true)?.string() else { return nil }
        guard file.hasSuffix("/\(id).yaml") || file.hasSuffix("/\(id).yml") else {
            idReader.fail("the file of approval \(id) must be approvals/\(id).yaml")
            return nil
        }
        var expiresAt: Date?
        if let reader = spec.field("expires"), let text = reader.string() {
            guard let end = Self.endOfDay(text) else {
                reader.fail(Self.notADay(text))
                return nil
            }
            expiresAt = end
        }
        var block: String?
        if let reader = spec.field("block") {
            guard let text = reader.string() else { return nil }
            block = text
        }
        var record: String?
        if let reader = spec.field("record") {
            guard let text = reader.string() else { return nil }
            guard text.count == 40, text.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
                reader.fail("expected the 40-character commit id of the record approved, got '\(quotedForMessage(text))'")
                return nil
            }
            record = text
        }
        return Approval(id: id, approver: approver, reason: reason, expiresAt: expiresAt, block: block, location: location,
                        record: record)
    }

    func readTarget(_ spec: SpecReader, name: String, labels: [String: String],
                            location: SourceLocation) -> Target? {
        guard spec.entries() != nil, let adapterReader = spec.field("adapter", required: true),
              let adapterName = adapterReader.string() else { return nil }
        guard let adapter = registry.adapters[adapterName] else {
            adapterReader.fail("unknown adapter '\(quotedForMessage(adapterName))'; known adapters: \(registry.adapters.keys.sorted().joined(separator: ", "))")
            return nil
        }
        return adapter.readTarget(spec, name: name, labels: labels, location: location)
    }

    func readController(_ spec: SpecReader, name: String, location: SourceLocation) -> ControllerConfig? {
        guard spec.entries() != nil else { return nil }
        spec.allowOnly(["kinds", "targets", "interval", "mode", "maxChangesPerCycle", "maxTargetShare", "windows", "flapBreaker",
                        "weakening"])
        var ok = true
        var kinds: [String] = []
        if let reader = spec.field("kinds", required: true), let values = reader.strings() {
            for (index, kind) in values.enumerated() where registry.kinds[kind] == nil {
                (reader.items()?[index] ?? reader).fail("unknown kind '\(quotedForMessage(kind))'; known kinds: \(registry.kindNames.joined(separator: ", "))")
                ok = false
            }
            if values.isEmpty { reader.fail("list at least one kind"); ok = false }
            kinds = values
        } else { ok = false }
        var interval = Duration.seconds(300)
        if let reader = spec.field("interval") {
            if let seconds = duration(reader, in: 10...86_400, example: "30s, 5m or 1h") {
                interval = .seconds(seconds)
            } else {
                ok = false
            }
        }
        var mode = Mode.enforce
        if let reader = spec.field("mode") {
            if let text = reader.oneOf(Mode.allCases.map(\.rawValue)), let value = Mode(rawValue: text) { mode = value } else { ok = false }
        }
        var maxChanges: Int?
        if let reader = spec.field("maxChangesPerCycle") {
            maxChanges = reader.int(in: 0...1_000_000)
            if maxChanges == nil { ok = false }
        }
        var share: Int?
        if let reader = spec.field("maxTargetShare"), let text = reader.string() {
            if text.hasSuffix("%"), text.count <= 4, text.dropLast().allSatisfy({ $0.isASCII && $0.isNumber }),
               let value = Int(text.dropLast()), (1...100).contains(value) {
                share = value
            } else {
                reader.fail("expected a percentage from 1% to 100%, got '\(quotedForMessage(text))'")
                ok = false
            }
        }
        var windows: [ChangeWindow] = []
        if let reader = spec.field("windows"), let items = reader.items() {
            for item in items {
                if let window = readWindow(item) { windows.append(window) } else { ok = false }
            }
        }
        var flap = (count: 3, period: 3600)
        if let reader = spec.field("flapBreaker"), reader.entries() != nil {
            reader.allowOnly(["count", "period"])
            if let countReader = reader.field("count") {
                if let count = countReader.int(in: 1...1000) { flap.count = count } else { ok = false }
            }
            if let periodReader = reader.field("period") {
                if let seconds = duration(periodReader, in: 60...7 * 86_400, example: "1h") {
                    flap.period = seconds
                } else {
                    ok = false
                }
            }
        }
        // `weakening: hold` (the default) or `allow` for every kind of the controller, or per
        // kind: `weakening: {SSHDConfig: allow}`.
        var weakeningAllowed: Set<String> = []
        if let reader = spec.field("weakening") {
            if case .mapping = reader.node.value, let pairs = reader.entries() {
                for (kind, value) in pairs {
                    if !kinds.contains(kind) { value.fail("'\(kind)' is not one of this controller's kinds") ; ok = false; continue }
                    guard let choice = value.oneOf(["hold", "allow"]) else { ok = false; continue }
                    if choice == "allow" { weakeningAllowed.insert(kind) }
                }
            } else if let choice = reader.oneOf(["hold", "allow"]) {
                if choice == "allow" { weakeningAllowed = Set(kinds) }
            } else { ok = false }
        }
        let selector = spec.field("targets").flatMap(readSelector) ?? .all
        guard ok else { return nil }
        var controller = ControllerConfig(name: name, kinds: kinds, targets: selector, interval: interval, mode: mode,
                                          maxChangesPerCycle: maxChanges, maxTargetShare: share, windows: windows,
                                          location: location)
        controller.flapCount = flap.count
        controller.flapPeriod = .seconds(flap.period)
        controller.weakeningAllowed = weakeningAllowed
        return controller
    }

    /// `{days: [mon, tue], start: "02:00", end: "05:00", timeZone: Europe/Berlin}`.
    func readWindow(_ reader: SpecReader) -> ChangeWindow? {
        guard reader.entries() != nil else { return nil }
        reader.allowOnly(["days", "start", "end", "timeZone"])
        var days = Set(1...7)
        if let daysReader = reader.field("days"), let names = daysReader.strings() {
            days = []
            for name in names {
                guard let index = ChangeWindow.dayNames.firstIndex(of: name.lowercased().prefix(3).description), name.count >= 3 else {
                    daysReader.fail("expected days such as mon, tue, wed, thu, fri, sat, sun; got '\(quotedForMessage(name))'")
                    return nil
                }
                days.insert(index + 1)
            }
        }
        func minutes(_ key: String) -> Int? {
            guard let field = reader.field(key, required: true), let text = field.string() else { return nil }
            // Digits only (no sign, no spaces), at most two per part: the arithmetic below cannot overflow.
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            func number(_ part: Substring) -> Int? {
                guard (1...2).contains(part.count), part.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
                return Int(part)
            }
            guard parts.count == 2, let h = number(parts[0]), let m = number(parts[1]), (0...24).contains(h), (0...59).contains(m),
                  h * 60 + m <= 1440 else {
                field.fail("expected a time of day such as 02:00, got '\(quotedForMessage(text))'")
                return nil
            }
            return h * 60 + m
        }
        guard let start = minutes("start"), let end = minutes("end") else { return nil }
        var zone = TimeZone.gmt
        if let zoneReader = reader.field("timeZone"), let name = zoneReader.string() {
            guard let found = TimeZone(identifier: name) else {
                zoneReader.fail("unknown time zone '\(quotedForMessage(name))'; use an IANA name such as Europe/Berlin or UTC")
                return nil
            }
            zone = found
        }
        guard start != end else {
            reader.fail("a window's start and end must differ")
            return nil
        }
        return ChangeWindow(days: days, start: start, end: end, timeZone: zone)
    }

    func readSelector(_ reader: SpecReader) -> TargetSelector? {
        guard reader.entries() != nil else { return nil }
        reader.allowOnly(["names", "selector"])
        let names = reader.field("names")?.strings()
        let labels = reader.field("selector")?.stringMap()
        return TargetSelector(names: names, labels: labels)
    }
}
