#include "services/registry.h"

#include "cohort/services/kv_service.h"
#include "services/counter_service.h"
#include "services/echo_service.h"
#include "services/ledger_service.h"

namespace cohort::services {

std::unique_ptr<Service> make_service(std::string_view name) {
  if (name == "kv") return std::make_unique<KvService>();
  if (name == "counter") return std::make_unique<CounterService>();
  if (name == "echo") return std::make_unique<EchoService>();
  if (name == "ledger") return std::make_unique<LedgerService>();
  return nullptr;
}

const std::vector<std::string_view>& service_names() {
  static const std::vector<std::string_view> names{"kv", "counter", "echo", "ledger"};
  return names;
}

}  // namespace cohort::services
