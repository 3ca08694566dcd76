// Per-client limits of the gateway (server/internal/client_limits.h): the address buckets that the
// connection and completion caps count, and the completion limiter itself.
#include "server/internal/client_limits.h"

#include <gtest/gtest.h>

#include <memory>

namespace airlock::server::internal {
namespace {

// Attack (#15): the per-address caps keyed on the exact address, and one IPv6 host holds a whole
// /64 (2^64 addresses), so it could open a fresh cap's worth from every address. IPv6 clients are
// counted per /64 (configurable), IPv4 clients per address.
TEST(ClientAddressBucket, Ipv6AddressesOfOneSlash64AreOneClient) {
  EXPECT_EQ(ClientAddressBucket("::1", 64), "::/64");
  EXPECT_EQ(ClientAddressBucket("::1", 64), ClientAddressBucket("::2", 64));
  EXPECT_EQ(ClientAddressBucket("2001:db8:1:2:aaaa::1", 64), "2001:db8:1:2::/64");
  EXPECT_EQ(ClientAddressBucket("2001:db8:1:2:aaaa::1", 64),
            ClientAddressBucket("2001:db8:1:2:ffff:ffff:ffff:ffff", 64));
  EXPECT_NE(ClientAddressBucket("2001:db8:1:2::1", 64), ClientAddressBucket("2001:db8:1:3::1", 64));
  // Other prefixes: /128 is the address itself, /48 a site.
  EXPECT_EQ(ClientAddressBucket("::1", 128), "::1/128");
  EXPECT_NE(ClientAddressBucket("::1", 128), ClientAddressBucket("::2", 128));
  EXPECT_EQ(ClientAddressBucket("2001:db8:1:2::1", 48),
            ClientAddressBucket("2001:db8:1:ff::1", 48));
  EXPECT_EQ(ClientAddressBucket("2001:db8:1:2::1", 60), "2001:db8:1::/60");
  EXPECT_EQ(ClientAddressBucket("2001:db8:1:1f::1", 60), "2001:db8:1:10::/60");
  // A zone and brackets do not make another client; spelling does not either.
  EXPECT_EQ(ClientAddressBucket("fe80::1%eth0", 64), "fe80::/64");
  EXPECT_EQ(ClientAddressBucket("[2001:DB8:0001:0002::1]", 64), "2001:db8:1:2::/64");
}

TEST(ClientAddressBucket, Ipv4IsCountedPerAddressAlsoWhenMappedIntoIpv6) {
  EXPECT_EQ(ClientAddressBucket("127.0.0.1", 64), "127.0.0.1");
  EXPECT_NE(ClientAddressBucket("127.0.0.1", 64), ClientAddressBucket("127.0.0.2", 64));
  EXPECT_EQ(ClientAddressBucket("::ffff:192.0.2.7", 64), "192.0.2.7");
  EXPECT_EQ(ClientAddressBucket("::ffff:192.0.2.7", 1), "192.0.2.7");
  // Not an address: unchanged (never an empty bucket shared by everyone).
  EXPECT_EQ(ClientAddressBucket("not-an-address", 64), "not-an-address");
}

TEST(CompletionLimiter, CapsPerAddressAndPerKeyAndFreesPlacesOnRelease) {
  CompletionLimiter limiter(/*per_address=*/2, /*per_key=*/3);
  auto a1 = limiter.TryAcquire("10.0.0.1", "key-a");
  auto a2 = limiter.TryAcquire("10.0.0.1", "key-a");
  ASSERT_TRUE(a1.slot && a2.slot);
  auto a3 = limiter.TryAcquire("10.0.0.1", "key-b");
  EXPECT_FALSE(a3.slot);
  EXPECT_EQ(a3.refusal, CompletionLimiter::Refusal::kAddress);
  EXPECT_EQ(a3.limit, 2);
  auto b1 = limiter.TryAcquire("10.0.0.2", "key-a");
  ASSERT_TRUE(b1.slot);
  auto b2 = limiter.TryAcquire("10.0.0.2", "key-a");
  EXPECT_FALSE(b2.slot);
  EXPECT_EQ(b2.refusal, CompletionLimiter::Refusal::kKey);
  // A refused request took no place.
  EXPECT_EQ(limiter.InFlightForAddress("10.0.0.2"), 1);
  EXPECT_EQ(limiter.InFlightForKey("key-a"), 3);
  EXPECT_EQ(limiter.InFlightForKey("key-b"), 0);
  // Anonymous requests are limited per address only.
  auto anon = limiter.TryAcquire("10.0.0.2", "");
  EXPECT_TRUE(anon.slot);
  a1.slot.reset();
  EXPECT_EQ(limiter.InFlightForAddress("10.0.0.1"), 1);
  EXPECT_EQ(limiter.InFlightForKey("key-a"), 2);
  EXPECT_TRUE(limiter.TryAcquire("10.0.0.1", "key-b").slot);
}

TEST(CompletionLimiter, ASlotMayOutliveItsLimiter) {
  std::shared_ptr<CompletionLimiter::Slot> slot;
  {
    CompletionLimiter limiter(1, 1);
    slot = limiter.TryAcquire("10.0.0.1", "k").slot;
    ASSERT_TRUE(slot);
  }
  slot.reset();  // no use after free (ASan)
}

}  // namespace
}  // namespace airlock::server::internal
