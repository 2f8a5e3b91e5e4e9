// swift-tools-version: 6.1
import PackageDescription

// A user's test suite: more XCTest methods than test accounts, run with `swift test --parallel` under
// `ephemeral-broker run --pool accounts=…`; see check.sh.
let package = Package(
    name: "ParallelAccounts",
    dependencies: [.package(name: "EphemeralBroker", path: "../..")],
    targets: [
        .testTarget(
            name: "ParallelAccountsTests",
            dependencies: [
                .product(name: "EphemeralBrokerTesting", package: "EphemeralBroker"),
                .product(name: "EphemeralBrokerClient", package: "EphemeralBroker"),
            ]
        )
    ]
)
