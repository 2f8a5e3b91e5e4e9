// swift-tools-version: 6.1
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

/// The benchmark executables build only when asked (`EPHEMERAL_BENCHMARKS=1`), so tests never pay for them.
let benchmarks = Context.environment["EPHEMERAL_BENCHMARKS"] != nil
/// The libFuzzer target builds only when asked (`EPHEMERAL_FUZZ=1`, by `Tests/Fuzz/run.sh`).
let fuzzing = Context.environment["EPHEMERAL_FUZZ"] != nil

let package = Package(
    name: "EphemeralBroker",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ephemeral-broker", targets: ["EphemeralBrokerCLI"]),
        .library(name: "EphemeralWire", targets: ["EphemeralWire"]),
        .library(name: "EphemeralStore", targets: ["EphemeralStore"]),
        .library(name: "EphemeralServer", targets: ["EphemeralServer"]),
        .library(name: "EphemeralBrokerClient", targets: ["EphemeralBrokerClient"]),
        .library(name: "EphemeralBrokerTesting", targets: ["EphemeralBrokerTesting"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/adam-fowler/compress-nio", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // Already in the graph through swift-subprocess; named here because `FilePath` is in its API.
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CEphemeralCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"]), .brew(["openssl@3"])]
        ),
        // The parent-death signal of a command ephemeral-broker runs (prctl is variadic: Swift cannot call it).
        .systemLibrary(name: "CEphemeralProcess"),
        .target(
            name: "EphemeralWire",
            dependencies: [
                "CEphemeralCrypto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "EphemeralStore",
            dependencies: ["EphemeralWire"],
            swiftSettings: strict
        ),
        .target(
            name: "EphemeralServer",
            dependencies: [
                "EphemeralWire",
                "EphemeralStore",
                "CEphemeralCrypto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "EphemeralBrokerClient",
            dependencies: [
                "EphemeralWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "EphemeralBrokerTesting",
            dependencies: ["EphemeralBrokerClient", "EphemeralWire"],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "EphemeralBrokerCLI",
            dependencies: [
                "CEphemeralProcess",
                "EphemeralServer",
                "EphemeralWire",
                "EphemeralBrokerClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system", condition: .when(platforms: [.linux])),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "EphemeralWireTests",
            dependencies: [
                "EphemeralWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "EphemeralStoreTests",
            dependencies: ["EphemeralStore", "EphemeralWire"],
            swiftSettings: strict
        ),
        .target(
            name: "BrokerTestSupport",
            dependencies: ["EphemeralWire"],
            path: "Tests/BrokerTestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "EphemeralServerTests",
            dependencies: [
                "EphemeralServer", "EphemeralWire", "EphemeralStore", "BrokerTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "EphemeralBrokerClientTests",
            dependencies: ["EphemeralBrokerClient", "EphemeralWire", "BrokerTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "EphemeralBrokerTestingTests",
            dependencies: [
                "EphemeralBrokerTesting", "EphemeralBrokerClient", "EphemeralServer", "EphemeralStore", "EphemeralWire",
                "BrokerTestSupport",
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "EphemeralBrokerCLITests",
            dependencies: ["EphemeralBrokerCLI", "EphemeralWire", "BrokerTestSupport"],
            swiftSettings: strict
        ),
    ]
)

if benchmarks {
    package.products += [
        .executable(name: "eb-loadgen", targets: ["LoadGenerator"]),
        .executable(name: "eb-floor", targets: ["FloorServer"]),
        .executable(name: "eb-clientbench", targets: ["ClientBench"]),
        .executable(name: "eb-storefill", targets: ["StoreFill"]),
    ]
    package.targets += [
        .executableTarget(
            name: "LoadGenerator", dependencies: ["EphemeralWire"], path: "Benchmarks/LoadGenerator"),
        .executableTarget(
            name: "FloorServer",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Benchmarks/FloorServer"),
        .executableTarget(
            name: "ClientBench", dependencies: ["EphemeralBrokerClient"], path: "Benchmarks/ClientBench"),
        .executableTarget(
            name: "StoreFill", dependencies: ["EphemeralStore", "EphemeralWire"], path: "Benchmarks/StoreFill"),
    ]
}

if fuzzing {
    package.products += [.executable(name: "eb-fuzz", targets: ["FuzzWire"])]
    package.targets += [
        .executableTarget(
            name: "FuzzWire",
            dependencies: ["EphemeralWire", .product(name: "NIOCore", package: "swift-nio")],
            path: "Tests/Fuzz",
            exclude: ["corpus", "run.sh"]),
    ]
}
