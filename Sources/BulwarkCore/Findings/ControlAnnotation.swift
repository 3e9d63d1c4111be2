/// The benchmark rules a managed resource carries out, as its `ssg` annotation lists them
/// (`annotations: {cis: "5.1.20", ssg: sshd_disable_root_login}`): a compliance scanner's
/// finding names a rule and the host it scanned, not a Bulwark resource, so a finding whose
/// control is one of these rules is about the resources that list it (on the target it names,
/// when it names one Bulwark knows; else on every target those resources are bound to, which
/// a reconcile only re-observes).
public enum ControlAnnotation {
    /// The annotation: SCAP Security Guide rule ids, short (`file_permissions_etc_shadow`) or
    /// full (`xccdf_org.ssgproject.content_rule_file_permissions_etc_shadow`), separated by
    /// spaces or commas.
    public static let key = "ssg"

    /// The short rule ids a resource's annotation lists.
    public static func rules(of resource: Resource) -> [String] {
        guard let text = resource.annotations[key] else { return [] }
        return text.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\t" }).map { rule(String($0)) }
    }

    /// A control as a short SSG rule id: `xccdf_org.ssgproject.content_rule_X` is `X`.
    public static func rule(_ control: String) -> String {
        control.hasPrefix(FindingParser.xccdfRulePrefix) ? String(control.dropFirst(FindingParser.xccdfRulePrefix.count)) : control
    }
}
