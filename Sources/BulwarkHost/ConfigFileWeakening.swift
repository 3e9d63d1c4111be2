internal import Foundation
internal import BulwarkCore

/// Which changes of a `ConfigFile`'s desired values move in the less secure direction (see
/// `KindDefinition.weakens`), so that one person cannot turn a gateway's guards off:
///
/// - a new or changed `validate` or `reload` command (Bulwark runs it as root), or a
///   validation dropped;
/// - a credential set to null or empty, or removed from a mapping the policy sets; one read from
///   the environment (`os.environ/NAME`) read from another variable, or written as anything else;
/// - a `dangerously_*`, `*insecure*`, `turn_off_*` or `disable_*`/`*_disabled` switch turned on (from
///   false, null or unset to anything else: LiteLLM tests such a switch for truth, so `"false"`, `1`
///   or `[false]` turn it on), or one that stays on changed to another value, unless it is a list
///   that only loses entries (`[a]` → `[a, b]` may turn off more); a guardrail's `default_on`
///   turned off (from true to anything else);
/// - a list of guardrails or callbacks that loses an entry;
/// - a guardrail's `mode` that acts later (`pre_call` → `during_call` → `post_call`,
///   `logging_only`): it only watches, or the model has seen the text, where it used to stop it;
/// - a guardrail's implementation (`guardrail`) or a pattern's name changed, an `enabled` turned off
///   (from true, or newly set, to anything but true or null);
/// - an `action` (or `*_action`) that does less: `BLOCK` → `MASK` → anything else
///   (`BLOCK_NEVER`, `LOG`);
/// - a budget or limit raised, made negative or removed (`max_budget`, `*_limit`, `max_parallel_requests`);
/// - a key that a mapping the policy sets loses.
///
/// A path that may name what another path set (`weakensThrough`) is judged as that path's change.
///
/// Anything else returns nil: its direction is not known. The kind is therefore not marked as
/// judging direction (`judgesDirection`): a finding's change to it still waits for a person.
enum ConfigFileWeakening {
    @Sendable static func weakens(_ property: String, _ from: String, _ to: String) -> String? {
        if property.hasPrefix(ConfigFileDriver.optionsPrefix) { return commands(from, to) }
        guard let before = ConfigValue.fromCanonical(from), let after = ConfigValue.fromCanonical(to) else { return nil }
        var reasons: [String] = []
        let old = leaves(before, at: property), new = leaves(after, at: property)
        for (path, was) in old.sorted(by: { $0.key < $1.key }) {
            let key = lastKey(path)
            let now = new[path]
            if ConfigFileDriver.isSecretKey(key), !ConfigFileDriver.isUnsecret(was), now == nil || now == .null || now == .string("") {
                reasons.append("unsets the credential \(path)")
                continue
            }
            if ConfigFileDriver.isSecretKey(key), let source = credentialSource(was, now) {
                reasons.append("changes where the credential \(path) comes from: \(source)")
                continue
            }
            if isUnsafeSwitch(key), isOff(was), !isOff(now) { reasons.append(turnsOn(path, now)) }
            if isUnsafeSwitch(key), !isOff(was), let now, !isOff(now), now != was, !narrows(was, to: now) {
                reasons.append("changes the switch \(path), which stays on, to another value: what it turns off may be more")
            }
            if key.lowercased() == "default_on", was == .bool(true), now != .bool(true) { reasons.append("turns the guardrail's default_on off at \(path)") }
            let inGuardrail = path.lowercased().contains("guardrail")
            if key.lowercased() == "mode", inGuardrail, modeRank(now) < modeRank(was) {
                reasons.append("makes the guardrail at \(path) \(now?.yaml ?? "unset") instead of \(was.yaml): it no longer stops a request before the model")
            }
            if inGuardrail, ["guardrail", "pattern_name", "pattern"].contains(key.lowercased()), now != was {
                reasons.append("replaces \(was.yaml) with \(now?.yaml ?? "nothing") at \(path): what the guardrail checks is no longer known to be as strict")
            }
            if inGuardrail, key.lowercased() == "enabled" || key.lowercased().hasSuffix("_enabled"), was == .bool(true), now != .bool(true) {
                reasons.append("turns \(path) off")
            }
            if isActionKey(key), actionRank(now) < actionRank(was) {
                reasons.append("changes \(path) from \(was.yaml) to \(now?.yaml ?? "unset"): it stops less")
            }
            if isLimitKey(key), case .number(let limit) = was, let before = Double(limit) {
                if case .number(let raised)? = now, let after = Double(raised), after >= 0 {
                    if after > before { reasons.append("raises the limit \(path) from \(limit) to \(raised)") }
                } else {
                    reasons.append("lifts the limit \(path) (\(limit)): \(now?.yaml ?? "unset")")
                }
                continue
            }
            if isGuardList(key), case .list(let items) = was {
                var kept: Set<ConfigValue> = []
                if case .list(let list)? = now { kept = Set(list) }
                let lost = items.filter { !kept.contains($0) }
                if !lost.isEmpty { reasons.append("removes \(lost.map { $0.yaml }.joined(separator: ", ")) from \(path)") }
                continue
            }
            if now == nil, path != property, was != .null { reasons.append("removes \(path)") }
        }
        // Switches that were not set at all before.
        reasons += newlySet(new.filter { old[$0.key] == nil })
        return reasons.isEmpty ? nil : reasons.joined(separator: "; ")
    }

    /// Where a credential read from the environment (`os.environ/NAME`) now comes from, when that
    /// changed: another variable (`os.environ/PATH`, whose value anyone can guess, as the master
    /// key), a literal, or anything else. The variables' names are shown (they are not secret;
    /// their values are), a literal is not. Nil when `was` is no reference (a literal moved to the
    /// environment is stricter) or nothing changed.
    static func credentialSource(_ was: ConfigValue, _ now: ConfigValue?) -> String? {
        guard case .string(let before) = was, ConfigFileDriver.isEnvironmentReference(before), now != was else { return nil }
        guard case .string(let after)? = now, ConfigFileDriver.isEnvironmentReference(after) else {
            return "\(before) → a value that is not a reference to the environment"
        }
        return "\(before) → \(after)"
    }

    /// Switches set where nothing was: an unsafe one set to anything but false or null (on), a
    /// guardrail's `enabled` set to anything but true or null (off).
    static func newlySet(_ values: [String: ConfigValue]) -> [String] {
        var reasons: [String] = []
        for (path, now) in values.sorted(by: { $0.key < $1.key }) {
            if isUnsafeSwitch(lastKey(path)), !isOff(now) { reasons.append(turnsOn(path, now)) }
            let key = lastKey(path).lowercased()
            if path.lowercased().contains("guardrail"), key == "enabled" || key.hasSuffix("_enabled"), now != .bool(true), now != .null {
                reasons.append("turns \(path) off")
            }
        }
        return reasons
    }

    /// A property no earlier revision set (a new resource, a renamed one, or a key added to
    /// one): its commands, each run as root (Bulwark's own PyYAML check aside), and the switches
    /// it sets (`newlySet`). Judged only by `weakens`, a new key `disable_spend_logs: true` or a
    /// resource added with one passed with no second person, though a switch already there
    /// turned on was held.
    @Sendable static func weakensNew(_ property: String, _ value: String) -> String? {
        guard property.hasPrefix(ConfigFileDriver.optionsPrefix) else {
            guard !property.hasPrefix(ConfigFileDriver.reloadPrefix), let now = ConfigValue.fromCanonical(value) else { return nil }
            let reasons = newlySet(leaves(now, at: property))
            return reasons.isEmpty ? nil : reasons.joined(separator: "; ")
        }
        guard let options = try? JSONDecoder().decode(ConfigFileDriver.Options.self, from: Data(value.utf8)) else { return nil }
        var reasons: [String] = []
        for (field, argv) in [("validate", options.validate), ("reload", options.reload)] {
            guard let argv, argv != CommandTrust.pyyamlCheck else { continue }
            reasons.append("runs a new \(field) command as root: \(ConfigFileDriver.shown(argv))")
        }
        return reasons.isEmpty ? nil : reasons.joined(separator: "; ")
    }

    /// A property that may name the value, or a part of the value, that another property of the
    /// same file (`governed`, set to `was` by an earlier revision) names: `guardrails[0]` and
    /// `guardrails[*]` may be the element `guardrails[guardrail_name=pii]` picks (which element an
    /// index or a wildcard reaches depends on each target's file, so any that may is judged),
    /// `litellm_settings.callbacks[0]` is a part of `litellm_settings.callbacks`, and
    /// `litellm_settings` holds it. The change is judged by `weakens` as the governed value's: as
    /// `was` with the part the property names set to `value`, or, for a property that holds the
    /// governed one, as `value` with `was` in its place against `value` (a `value` that cannot
    /// hold it removes it).
    @Sendable static func weakensThrough(_ property: String, _ value: String, _ governed: String, _ was: String) -> String? {
        guard !property.hasPrefix("["), !governed.hasPrefix("["), firstKey(property) == firstKey(governed),
              case .success(let new) = ConfigPath.parse(property), case .success(let old) = ConfigPath.parse(governed),
              let now = ConfigValue.fromCanonical(value), let before = ConfigValue.fromCanonical(was) else { return nil }
        let shared = min(new.steps.count, old.steps.count)
        for index in 0..<shared where !mayMeet(new.steps[index], old.steps[index]) { return nil }
        if new.steps.count >= old.steps.count {
            guard let after = before.setting(new.steps[shared...], to: now) else { return nil }
            return weakens(governed, was, after.canonical)
        }
        guard let held = now.setting(old.steps[shared...], to: before) else { return weakens(governed, was, "null") }
        return weakens(property, held.canonical, value)
    }

    /// Whether two paths of one file surely name the same value, or one a part of the other's,
    /// and want it different (`guardrails[*].litellm_params.mode: logging_only` and
    /// `guardrails[guardrail_name=pii].litellm_params.mode: pre_call`; `litellm_settings.callbacks[0]: none`
    /// and `litellm_settings.callbacks: [detect_prompt_injection]`): each pass would write one and
    /// then the other. Paths that only may (`[0]` and `[guardrail_name=pii]`: it depends on the
    /// file) do not conflict; a change through one is judged as the other's (`weakensThrough`).
    @Sendable static func conflicts(_ property: String, _ value: String, _ other: String, _ otherValue: String) -> Bool {
        guard !property.hasPrefix("["), !other.hasPrefix("["), firstKey(property) == firstKey(other),
              case .success(let a) = ConfigPath.parse(property), case .success(let b) = ConfigPath.parse(other) else { return false }
        let shared = min(a.steps.count, b.steps.count)
        for index in 0..<shared where !surelyMeet(a.steps[index], b.steps[index]) { return false }
        let (short, long, shortValue, longValue) = a.steps.count <= b.steps.count ? (a, b, value, otherValue) : (b, a, otherValue, value)
        guard let outer = ConfigValue.fromCanonical(shortValue), let inner = ConfigValue.fromCanonical(longValue) else { return false }
        let rest = long.steps[short.steps.count...]
        // A key the outer value does not hold (`headers: {a: b}` and `headers.pass: z`): writing
        // the outer one removes what the other wrote.
        return outer.lacksKey(rest) || outer.values(rest).contains { $0 != inner }
    }

    /// Whether two steps at the same depth surely reach the same value wherever the other does:
    /// the same key, index or `[key=value]`, or a `[*]` (every element).
    static func surelyMeet(_ a: ConfigPath.Step, _ b: ConfigPath.Step) -> Bool {
        switch (a, b) {
        case (.every, .index), (.every, .match), (.every, .every), (.index, .every), (.match, .every): true
        default: a == b
        }
    }

    /// The first key of a path (`guardrails` of `guardrails[0].mode`), to pass over paths that
    /// cannot meet without parsing them.
    static func firstKey(_ path: String) -> Substring {
        path.prefix { $0 != "." && $0 != "[" }
    }

    /// Whether two steps at the same depth may reach the same value: the same key; the same
    /// index; elements picked by the same key with different values never; any other two list
    /// steps may (`[0]` may be the element `[name=pii]` picks, `[*]` is every one).
    static func mayMeet(_ a: ConfigPath.Step, _ b: ConfigPath.Step) -> Bool {
        switch (a, b) {
        case (.key(let x), .key(let y)): x == y
        case (.key, _), (_, .key): false
        case (.index(let x), .index(let y)): x == y
        case (.match(let k, let x), .match(let l, let y)): k != l || x == y
        default: true
        }
    }

    /// A command Bulwark will run as root that is new or changed, or a validation dropped.
    static func commands(_ from: String, _ to: String) -> String? {
        let decoder = JSONDecoder()
        guard let before = try? decoder.decode(ConfigFileDriver.Options.self, from: Data(from.utf8)),
              let after = try? decoder.decode(ConfigFileDriver.Options.self, from: Data(to.utf8)) else {
            return "its file options cannot be read to judge them"
        }
        var reasons: [String] = []
        for (field, was, now) in [("validate", before.validate, after.validate), ("reload", before.reload, after.reload)] where was != now {
            if let now, now != CommandTrust.pyyamlCheck { reasons.append("runs a \(was == nil ? "new" : "changed") \(field) command as root: \(ConfigFileDriver.shown(now))") }
            else if now == nil, field == "validate" { reasons.append("no longer validates the file before it is written") }
        }
        return reasons.isEmpty ? nil : reasons.joined(separator: "; ")
    }

    /// Every value inside `value` by its path below `base` (mappings by key, lists by index), the
    /// value itself at `base` included.
    static func leaves(_ value: ConfigValue, at base: String) -> [String: ConfigValue] {
        var result: [String: ConfigValue] = [base: value]
        switch value {
        case .map(let map):
            for (key, inner) in map { result.merge(leaves(inner, at: base + "." + key)) { a, _ in a } }
        case .list(let items):
            for (index, inner) in items.enumerated() where inner.holdsMapping {
                result.merge(leaves(inner, at: base + "[\(index)]")) { a, _ in a }
            }
        default:
            break
        }
        return result
    }

    /// The last key of a path (`general_settings.master_key` → `master_key`).
    static func lastKey(_ path: String) -> String {
        let last = path.split(separator: ".").last.map(String.init) ?? path
        return last.split(separator: "[").first.map(String.init) ?? last
    }

    /// A switch that turns a protection off when true (`dangerously_permit_weak_or_unset_master_key`,
    /// `allow_insecure_*`, `disable_spend_logs`, `auth_disabled`, `turn_off_message_logging`).
    static func isUnsafeSwitch(_ key: String) -> Bool {
        let key = key.lowercased()
        return key.hasPrefix("dangerously") || key.contains("insecure") || key.hasPrefix("disable_") || key.hasPrefix("disable-")
            || key.hasPrefix("turn_off_")
            || key.hasSuffix("_disabled") || key.hasPrefix("skip_") || key.hasPrefix("allow_unauthenticated")
    }

    /// Whether an unsafe switch is surely off: unset, null or false. Anything else counts as on,
    /// as LiteLLM reads it (it sets `litellm_settings` keys with setattr and tests them for truth).
    static func isOff(_ value: ConfigValue?) -> Bool {
        value == nil || value == .null || value == .bool(false)
    }

    /// Whether a switch that stays on turns off no more than it did: a list of what it turns
    /// off (`disable_checks: [a, b]` → `[a]`) that only loses entries. Any other change of an
    /// on value (`[a]` → `[a, b]`, `"some"` → `"all"`) may turn off more, and nothing tells.
    static func narrows(_ was: ConfigValue, to now: ConfigValue) -> Bool {
        guard case .list(let before) = was, case .list(let after) = now, !after.isEmpty else { return false }
        return Set(after).isSubset(of: Set(before))
    }

    /// Why a switch set to `value` is on; a value other than true is not shown (it may be
    /// anything, a credential included).
    static func turnsOn(_ path: String, _ value: ConfigValue?) -> String {
        value == .bool(true) ? "turns \(path) on"
            : "turns \(path) on (a value other than false or null: LiteLLM tests the switch for truth, so a quoted \"false\" is true)"
    }

    /// How early a guardrail's mode (a name, or a list of them: the earliest counts) acts:
    /// `pre_call` 2 (before the model sees the request: it can mask or block), `during_call` 1
    /// (alongside the call: it can block, but the model has seen the text), anything else 0.
    static func modeRank(_ value: ConfigValue?) -> Int {
        switch value {
        case .string(let mode)?: ["pre_call": 2, "during_call": 1][mode.lowercased()] ?? 0
        case .list(let modes)?: modes.map { modeRank($0) }.max() ?? 0
        default: 0
        }
    }

    static func isActionKey(_ key: String) -> Bool {
        let key = key.lowercased()
        return key == "action" || key.hasSuffix("_action")
    }

    /// How much an action stops: `BLOCK` 2, `MASK` (or `REDACT`) 1, anything else 0.
    static func actionRank(_ value: ConfigValue?) -> Int {
        guard case .string(let action)? = value else { return 0 }
        switch action.uppercased() {
        case "BLOCK", "DENY", "REJECT": return 2
        case "MASK", "REDACT", "ANONYMIZE": return 1
        default: return 0
        }
    }

    /// A key whose number bounds spending or load: raising it weakens the bound.
    static func isLimitKey(_ key: String) -> Bool {
        let key = key.lowercased()
        return key.contains("budget") || key.hasSuffix("_limit") || key.hasSuffix("-limit") || key == "max_parallel_requests"
            || key.hasSuffix("_rpm") || key.hasSuffix("_tpm") || key == "rpm" || key == "tpm"
    }

    /// A list of protections: guardrails, callbacks (LiteLLM's prompt-injection check is one).
    static func isGuardList(_ key: String) -> Bool {
        let key = key.lowercased()
        return key.contains("guardrail") || key.contains("callback")
    }
}

extension ConfigValue {
    /// This value with every place `steps` name below it set to `value`, as `ConfigDocument.set`
    /// would: missing keys and `[key=value]` elements created (where no `[N]` or `[*]` follows),
    /// no other list element. Nil where the steps name no place.
    func setting(_ steps: ArraySlice<ConfigPath.Step>, to value: ConfigValue) -> ConfigValue? {
        guard let step = steps.first else { return value }
        let rest = steps.dropFirst()
        switch (step, self) {
        case (.key, .null):
            return ConfigDocument.build(steps, value)
        case (.key(let key), .map(var map)):
            let inner = if let there = map[key] { there.setting(rest, to: value) } else { ConfigDocument.build(rest, value) }
            guard let inner else { return nil }
            map[key] = inner
            return .map(map)
        case (.index(let index), .list(var items)):
            guard index < items.count, let inner = items[index].setting(rest, to: value) else { return nil }
            items[index] = inner
            return .list(items)
        case (.every, .list(var items)), (.match, .list(var items)):
            var reached = false
            for (index, item) in items.enumerated() {
                if case .match(let key, let wanted) = step {
                    guard case .map(let map) = item, let text = map[key]?.scalarText, text == wanted else { continue }
                }
                guard let inner = item.setting(rest, to: value) else { continue }
                items[index] = inner
                reached = true
            }
            if !reached, case .match = step, case .list(let built)? = ConfigDocument.build(steps, value) {
                return .list(items + built)
            }
            return reached ? .list(items) : nil
        case (.match, .null):
            return ConfigDocument.build(steps, value)
        default:
            return nil
        }
    }

    /// The values `steps` name below this value (none where a step finds nothing).
    func values(_ steps: ArraySlice<ConfigPath.Step>) -> [ConfigValue] {
        guard let step = steps.first else { return [self] }
        let rest = steps.dropFirst()
        switch (step, self) {
        case (.key(let key), .map(let map)): return map[key]?.values(rest) ?? []
        case (.index(let index), .list(let items)): return index < items.count ? items[index].values(rest) : []
        case (.every, .list(let items)): return items.flatMap { $0.values(rest) }
        case (.match(let key, let wanted), .list(let items)):
            return items.filter { if case .map(let map) = $0 { map[key]?.scalarText == wanted } else { false } }.flatMap { $0.values(rest) }
        default: return []
        }
    }

    /// Whether `steps` reach, through the value's mappings, a key it does not hold, or go through
    /// a value that is no mapping by a key (`{a: b}` for `pass`, `null` for `pass`). An index past
    /// the end, or an element no `[key=value]` picks, does not count: `list[3]` and `list` only
    /// may name one value.
    func lacksKey(_ steps: ArraySlice<ConfigPath.Step>) -> Bool {
        guard let step = steps.first else { return false }
        let rest = steps.dropFirst()
        switch (step, self) {
        case (.key(let key), .map(let map)): return map[key].map { $0.lacksKey(rest) } ?? true
        case (.key, _): return true
        case (.index(let index), .list(let items)): return index < items.count ? items[index].lacksKey(rest) : false
        case (.every, .list(let items)): return items.contains { $0.lacksKey(rest) }
        case (.match(let key, let wanted), .list(let items)):
            return items.filter { if case .map(let map) = $0 { map[key]?.scalarText == wanted } else { false } }.contains { $0.lacksKey(rest) }
        default: return false
        }
    }

    /// A scalar's text as a `[key=value]` step compares it (a string's or a number's; nil for
    /// anything else).
    var scalarText: String? {
        switch self {
        case .string(let text), .number(let text): text
        default: nil
        }
    }
}
