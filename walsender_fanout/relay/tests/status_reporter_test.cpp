// The relay's status report is valid JSON whatever bytes a subscriber's tenant keys hold.
#include "walsender_fanout/relay/status_reporter.hpp"

#include <gtest/gtest.h>

namespace edgeshard::relay {
namespace {

TEST(StatusReport, TenantKeysWithAnyBytesStayOneJsonString) {
  RelayStatus st;
  SubscriberStatus s;
  s.name = "edge \"1\"";
  s.tenants = "a\nb,c\\d,\x01,\xC3\xA9,\xFF";
  st.subscribers.push_back(s);
  const std::string json = status_report_json(st);
  EXPECT_NE(json.find(R"("subscriber":"edge \"1\"")"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("tenants":"a\nb,c\\d,\u0001,)" "\xC3\xA9" R"(,\ufffd")"), std::string::npos) << json;
  EXPECT_EQ(json.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace edgeshard::relay
