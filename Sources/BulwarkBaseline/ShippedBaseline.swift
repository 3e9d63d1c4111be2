/// The shipped baseline (the project's `controllers/` and `desired-state/` YAML), compiled into
/// the binary as SwiftPM resources (`.embedInCode`) so that `bulwark init` and `bulwark demo` have
/// it wherever the binary is copied. The YAML exists once, in those folders; SwiftPM names each
/// embedded file by its file name alone, so this table gives each its path in a policy repository
/// (a test fails when a shipped file is missing from it or differs from it).
public enum ShippedBaseline {
    public static let files: [(path: String, contents: [UInt8])] = [
        ("controllers/ai-gateway.yaml", PackageResources.ai_gateway_yaml),
        ("controllers/aws.yaml", PackageResources.aws_yaml),
        ("controllers/firewall.yaml", PackageResources.firewall_yaml),
        ("controllers/host-hardening.yaml", PackageResources.host_hardening_yaml),
        ("controllers/postgres.yaml", PackageResources.postgres_yaml),
        ("controllers/targets.yaml", PackageResources.targets_yaml),
        ("desired-state/ai-gateway/litellm.yaml", PackageResources.litellm_yaml),
        ("desired-state/aws/cis-aws.yaml", PackageResources.cis_aws_yaml),
        ("desired-state/firewall/blocklist.yaml", PackageResources.blocklist_yaml),
        ("desired-state/hosts/accounts.yaml", PackageResources.accounts_yaml),
        ("desired-state/hosts/file-permissions.yaml", PackageResources.file_permissions_yaml),
        ("desired-state/hosts/sshd.yaml", PackageResources.sshd_yaml),
        ("desired-state/hosts/sysctl.yaml", PackageResources.sysctl_yaml),
        ("desired-state/postgres/cis-postgresql.yaml", PackageResources.cis_postgresql_yaml),
    ]
}
