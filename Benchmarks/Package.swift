// swift-tools-version:6.1
// The benchmarks are a package of their own so that building and testing Bulwark never
// compiles package-benchmark.
import PackageDescription

let package = Package(
    name: "bulwark-benchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "bulwark", path: ".."),
        .package(url: "https://github.com/ordo-one/package-benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "BulwarkBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "BulwarkCore", package: "bulwark"),
                .product(name: "BulwarkGit", package: "bulwark"),
                .product(name: "BulwarkHost", package: "bulwark"),
            ],
            path: "Benchmarks/BulwarkBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]),
    ]
)
