import BrokerTestSupport
import EphemeralServer
import EphemeralStore
import Foundation
import Testing

@Suite("Pools over real sockets")
struct PoolProtocolTests {
    @Test func waitingLeaseIsGrantedTheMomentTheHolderDisconnects() async throws {
        let harness = try await BrokerHarness.start()
        defer { Task { await harness.broker.shutdown() } }
        let admin = try harness.connect()
        #expect(
            try admin.request(#"{"action":"define_pool","pool":"accounts","items":[{"user":"a"},{"user":"b"}]}"#)
                == #"{"ok":true,"capacity":2}"#)
        var holder: RawConnection? = try harness.connect()
        let first = try json(try holder!.request(#"{"action":"lease","pool":"accounts","id":1}"#))
        #expect(first["index"] as? Int == 0 && first["fence"] as? Int == 1)
        #expect((first["item"] as? [String: String]) == ["user": "a"])
        _ = try holder!.request(#"{"action":"lease","pool":"accounts"}"#)
        let waiter = try harness.connect()
        try waiter.send(
            #"{"action":"lease","pool":"accounts","wait":30000,"id":"w"}"# + "\n" + #"{"action":"ping","id":"after"}"#
                + "\n")
        #expect(
            try await waitFor {
                let stats = try json(try admin.request(#"{"action":"stats"}"#))["stats"] as? [String: Any]
                return ((stats?["pools"] as? [String: Any])?["accounts"] as? [String: Any])?["waiting"] as? Int == 1
            })
        holder = nil  // the worker dies: its connection closes
        let granted = try json(try waiter.readLine())
        #expect(granted["id"] as? String == "w" && granted["fence"] as? Int == 3)
        #expect(try json(try waiter.readLine())["id"] as? String == "after", "the ping's reply waited its turn")
        let stats = try json(try admin.request(#"{"action":"stats"}"#))["stats"] as? [String: Any]
        let pool = (stats?["pools"] as? [String: Any])?["accounts"] as? [String: Any]
        #expect(pool?["releasedByDisconnect"] as? Int == 2 && pool?["held"] as? Int == 1 && pool?["waits"] as? Int == 1)
    }

    @Test func exhaustedTimeoutStaleFenceAndUnknownPool() async throws {
        let harness = try await BrokerHarness.start()
        defer { Task { await harness.broker.shutdown() } }
        let connection = try harness.connect()
        _ = try connection.request(#"{"action":"define_pool","pool":"p","capacity":1}"#)
        let lease = try json(try connection.request(#"{"action":"lease","pool":"p","ttl":60000}"#))
        #expect(try errorName(try connection.request(#"{"action":"lease","pool":"p"}"#)) == "pool_exhausted")
        #expect(try errorName(try connection.request(#"{"action":"lease","pool":"p","wait":20}"#)) == "timeout")
        #expect(try errorName(try connection.request(#"{"action":"lease","pool":"zz"}"#)) == "unknown_pool")
        #expect(try errorName(try connection.request(#"{"action":"lease","pool":"p","wait":-3}"#)) == "invalid_wait")
        #expect(
            try errorName(try connection.request(#"{"action":"define_pool","pool":"q","capacity":0}"#))
                == "invalid_pool")
        #expect(
            try errorName(try connection.request(#"{"action":"release","pool":"p","index":0,"fence":99}"#))
                == "stale_fence")
        #expect(
            try errorName(try connection.request(#"{"action":"renew","pool":"p","index":0,"fence":"x"}"#))
                == "invalid_request")
        let fence = lease["fence"] as? Int ?? 0
        #expect(
            try errorName(
                try connection.request(#"{"action":"renew","pool":"p","index":0,"fence":\#(fence),"ttl":1000}"#)) == nil
        )
        #expect(
            try connection.request(#"{"action":"release","pool":"p","index":0,"fence":\#(fence)}"#)
                == #"{"ok":true,"released":true}"#)
        #expect(
            try errorName(try connection.request(#"{"action":"release","pool":"p","index":0,"fence":\#(fence)}"#))
                == "not_holder")
        #expect(
            try errorName(try connection.request(#"{"action":"lease","key":"orig","workerId":"w"}"#)) == nil,
            "the original lease still works")
    }

    @Test func drainEndsWaits() async throws {
        let harness = try await BrokerHarness.start()
        let connection = try harness.connect()
        _ = try connection.request(#"{"action":"define_pool","pool":"p","capacity":1}"#)
        _ = try connection.request(#"{"action":"lease","pool":"p"}"#)
        let waiter = try harness.connect()
        try waiter.send(#"{"action":"lease","pool":"p","wait":60000}"# + "\n")
        #expect(
            try await waitFor {
                let stats = try json(try connection.request(#"{"action":"stats"}"#))["stats"] as? [String: Any]
                return ((stats?["pools"] as? [String: Any])?["p"] as? [String: Any])?["waiting"] as? Int == 1
            })
        await harness.broker.drain()
        #expect(try errorName(try waiter.readLine()) == "draining")
        await harness.broker.stop()
    }

    @Test func aLapseFoundByARequestThatThenFailsStillReachesTheWaiter() async throws {
        let harness = try await BrokerHarness.start()
        defer { Task { await harness.broker.shutdown() } }
        let holder = try harness.connect()
        _ = try holder.request(#"{"action":"define_pool","pool":"p","capacity":1}"#)
        let lease = try json(try holder.request(#"{"action":"lease","pool":"p","ttl":50}"#))
        let waiter = try harness.connect()
        try waiter.send(#"{"action":"lease","pool":"p","wait":60000,"id":"w"}"# + "\n")
        #expect(
            try await waitFor {
                let stats = try json(try holder.request(#"{"action":"stats"}"#))["stats"] as? [String: Any]
                return ((stats?["pools"] as? [String: Any])?["p"] as? [String: Any])?["waiting"] as? Int == 1
            })
        harness.clock.advance(by: 100)  // the holder's lease lapses; no sweep has run
        let fence = lease["fence"] as? Int ?? 0
        #expect(
            try errorName(try holder.request(#"{"action":"release","pool":"p","index":0,"fence":\#(fence)}"#))
                == "stale_fence")
        let granted = try json(try waiter.readLine())
        #expect(granted["id"] as? String == "w" && granted["fence"] as? Int == fence + 1)
    }
}
