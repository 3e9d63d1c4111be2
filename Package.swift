// swift-tools-version:6.1
import Foundation
import PackageDescription

// One set of settings for every target (as hummingbird does): strict about existentials,
// imports internal unless a type really crosses the module's API.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

/// Everything at the top of the package but the baseline's folders and its module: excluded from
/// BulwarkBaseline, whose path is the package itself so that it can embed `controllers/` and
/// `desired-state/` where they are.
let baselineExcludes: [String] = {
    let top = Context.packageDirectory
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: top)) ?? []
    let sources = (try? FileManager.default.contentsOfDirectory(atPath: top + "/Sources")) ?? []
    return entries.filter { !$0.hasPrefix(".") && !["Sources", "controllers", "desired-state"].contains($0) }
        + sources.filter { $0 != "BulwarkBaseline" && !$0.hasPrefix(".") }.map { "Sources/" + $0 }
}()

let package = Package(
    name: "bulwark",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "bulwark", targets: ["bulwark"]),
        .library(name: "BulwarkCore", targets: ["BulwarkCore"]),
        .library(name: "BulwarkGit", targets: ["BulwarkGit"]),
        .library(name: "BulwarkHost", targets: ["BulwarkHost"]),
        .library(name: "BulwarkFirewall", targets: ["BulwarkFirewall"]),
        .library(name: "BulwarkPackages", targets: ["BulwarkPackages"]),
        .library(name: "BulwarkPostgres", targets: ["BulwarkPostgres"]),
        .library(name: "BulwarkAWS", targets: ["BulwarkAWS"]),
        .library(name: "BulwarkServer", targets: ["BulwarkServer"]),
        .library(name: "BulwarkRuntime", targets: ["BulwarkRuntime"]),
        .library(name: "BulwarkHTTP", targets: ["BulwarkHTTP"]),
        .library(name: "BulwarkProcess", targets: ["BulwarkProcess"]),
        .library(name: "BulwarkCommands", targets: ["BulwarkCommands"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // HMAC-SHA256 for signed notifications; only the commands module links it.
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        // PostgreSQL: only BulwarkPostgres (and the commands that wire it) link NIO.
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        // NIOCore/NIOHTTP1 are imported by the HTTP client and the AWS adapter: a direct dependency.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // AWS: SigV4 requests; only BulwarkAWS (and the commands that wire it) link it.
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        // The daemon: HTTP (hummingbird), services and signals, Prometheus metrics.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibGit2", pkgConfig: "libgit2",
            providers: [.apt(["libgit2-dev"])]),
        .systemLibrary(
            name: "CLibYAML", pkgConfig: "yaml-0.1",
            providers: [.apt(["libyaml-dev"])]),
        // Linux system calls Glibc does not wrap (openat2), for the host adapter's path walks.
        .systemLibrary(name: "CLinux"),
        // BulwarkCore (no I/O) for the one redaction function.
        // libssh2's crypto initialisation deferred where that is safe (dladdr, dl_iterate_phdr:
        // a C target of its own, compiled with _GNU_SOURCE, which Swift's Glibc module is not).
        .target(name: "CSSHInit"),
        .target(name: "BulwarkGit", dependencies: ["CLibGit2", "CSSHInit", "BulwarkCore", .product(name: "Crypto", package: "swift-crypto")],
                swiftSettings: swiftSettings),
        .target(name: "BulwarkCore", dependencies: ["CLibYAML"], swiftSettings: swiftSettings),
        // The one bounded runner of helper programs (deadline, terminate then kill, output to files);
        // BulwarkCore for `Shortage`, which counts a child that cannot be started for want of resources.
        .target(name: "BulwarkProcess", dependencies: ["BulwarkCore", "CLinux"], swiftSettings: swiftSettings),
        .target(name: "BulwarkHost", dependencies: ["BulwarkCore", "BulwarkProcess", "CLinux"], swiftSettings: swiftSettings),
        .target(name: "BulwarkFirewall", dependencies: ["BulwarkCore", "BulwarkHost", "BulwarkProcess", .product(name: "Crypto", package: "swift-crypto")],
                swiftSettings: swiftSettings),
        .target(name: "BulwarkPackages", dependencies: ["BulwarkCore", "BulwarkProcess"], swiftSettings: swiftSettings),
        .target(
            name: "BulwarkPostgres",
            dependencies: [
                "BulwarkCore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                // Its own TLS handshake, to read the certificate a server presents (`PresentedCertificate`).
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        // The process's one HTTP client (async-http-client), for the AWS adapter and the outbox.
        .target(
            name: "BulwarkHTTP",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "BulwarkAWS",
            dependencies: [
                "BulwarkCore", "BulwarkHTTP",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "BulwarkServer",
            dependencies: [
                "BulwarkCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings),
        // The engine below the CLI: the policy repository and its state clone, the daemon's
        // scheduler and cycle, the outbox, the journal. No adapter: the registry is given to it.
        .target(
            name: "BulwarkRuntime",
            dependencies: [
                "BulwarkCore", "BulwarkGit", "BulwarkServer", "BulwarkHTTP", "BulwarkProcess",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings),
        // The shipped baseline YAML, embedded as SwiftPM resources from the package's own folders.
        .target(
            name: "BulwarkBaseline", path: ".", exclude: baselineExcludes, sources: ["Sources/BulwarkBaseline"],
            resources: [.embedInCode("controllers"), .embedInCode("desired-state")],
            swiftSettings: swiftSettings),
        .target(
            name: "BulwarkCommands",
            dependencies: [
                "BulwarkCore", "BulwarkGit", "BulwarkHost", "BulwarkFirewall", "BulwarkPackages", "BulwarkPostgres", "BulwarkAWS", "BulwarkServer",
                "BulwarkRuntime", "BulwarkHTTP", "BulwarkBaseline", "BulwarkProcess",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings),
        // Linked by lld with relative relocations packed (DT_RELR, glibc 2.36): gold's 73,000
        // R_X86_64_RELATIVE entries (1.7 MB) were read at every start; 1.6 MiB less resident for
        // `bulwark --version`, about 2 MiB less at the peak of a 100-root apply. lld ships with
        // the Swift toolchain.
        .executableTarget(
            name: "bulwark", dependencies: ["BulwarkCommands"], swiftSettings: swiftSettings,
            linkerSettings: [.unsafeFlags(["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"], .when(platforms: [.linux]))]),

        // Temporary folders and real processes (git, the bulwark binary) for the tests.
        .target(name: "BulwarkTestSupport", dependencies: ["BulwarkCore", "BulwarkProcess"], path: "Tests/Support", swiftSettings: swiftSettings),
        .testTarget(name: "BulwarkGitTests", dependencies: ["BulwarkGit", "CSSHInit", "BulwarkTestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "BulwarkCoreTests", dependencies: ["BulwarkCore", "BulwarkTestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "BulwarkHostTests", dependencies: ["BulwarkHost", "BulwarkCore", "BulwarkTestSupport"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "BulwarkPackagesTests", dependencies: ["BulwarkPackages", "BulwarkCore", "BulwarkTestSupport"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "BulwarkFirewallTests", dependencies: ["BulwarkFirewall", "BulwarkCore", "BulwarkTestSupport"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "BulwarkPostgresTests", dependencies: ["BulwarkPostgres", "BulwarkCore", "BulwarkTestSupport"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "BulwarkAWSTests", dependencies: ["BulwarkAWS", "BulwarkCore", "BulwarkTestSupport"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "BulwarkServerTests",
            dependencies: ["BulwarkServer", "BulwarkCore",
                           .product(name: "HummingbirdTesting", package: "hummingbird"),
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "HTTPTypes", package: "swift-http-types"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "Prometheus", package: "swift-prometheus"),
                           .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "BulwarkRuntimeTests",
            dependencies: ["BulwarkRuntime", "BulwarkServer", "BulwarkGit", "BulwarkCore", "BulwarkTestSupport",
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "Prometheus", package: "swift-prometheus")],
            swiftSettings: swiftSettings),
        .testTarget(name: "BulwarkProcessTests", dependencies: ["BulwarkProcess", "BulwarkTestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "BulwarkHTTPTests", dependencies: ["BulwarkHTTP", "BulwarkTestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "BulwarkCommandsTests",
            dependencies: ["BulwarkCommands", "BulwarkRuntime", "BulwarkGit", "BulwarkCore", "BulwarkHost", "BulwarkPostgres",
                           "BulwarkTestSupport", .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
    ]
)
