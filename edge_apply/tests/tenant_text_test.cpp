// Tenant keys in text: the escaped form is one token, plain keys stay readable, every byte
// round-trips, malformed escapes are refused.
#include "edge_apply/tenant_text.hpp"

#include <gtest/gtest.h>

namespace edgeshard::apply {
namespace {

TEST(TenantText, EscapesOnlyWhatSeparatesTokens) {
  EXPECT_EQ(escape_tenant_text("acme"), "acme");
  EXPECT_EQ(escape_tenant_text("a/b"), "a/b");
  EXPECT_EQ(escape_tenant_text("\xC3\xA9t\xC3\xA9"), "\xC3\xA9t\xC3\xA9");
  EXPECT_EQ(escape_tenant_text("a b,c%\n\t\x7F"), "a%20b%2Cc%25%0A%09%7F");
  EXPECT_FALSE(tenant_text_needs_escape("a/b\xC3\xA9"));
  EXPECT_TRUE(tenant_text_needs_escape("a b"));
  EXPECT_TRUE(tenant_text_needs_escape("50%"));
}

TEST(TenantText, EveryByteRoundTrips) {
  std::string all;
  for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
  const std::string text = escape_tenant_text(all);
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    EXPECT_TRUE(u > 0x20 && u != ',' && u != 0x7F) << static_cast<int>(u);
  }
  std::string back;
  ASSERT_TRUE(unescape_tenant_text(text, back));
  EXPECT_EQ(back, all);
  ASSERT_TRUE(unescape_tenant_text("a%2cb%2C", back));  // either case
  EXPECT_EQ(back, "a,b,");
}

TEST(TenantText, RefusesMalformedEscapes) {
  std::string out;
  EXPECT_FALSE(unescape_tenant_text("50%", out));
  EXPECT_FALSE(unescape_tenant_text("%4", out));
  EXPECT_FALSE(unescape_tenant_text("%zz", out));
  EXPECT_TRUE(unescape_tenant_text("", out));
  EXPECT_EQ(out, "");
}

}  // namespace
}  // namespace edgeshard::apply
