#pragma once
// The built-in services by name, for cohortd's configuration and the tools.

#include <memory>
#include <string_view>
#include <vector>

#include "cohort/service.h"

namespace cohort::services {

/// A fresh service: "kv" (KvService), "counter" (CounterService), "echo" (EchoService), "ledger" (LedgerService);
/// nullptr for any other name.
std::unique_ptr<Service> make_service(std::string_view name);
/// The names make_service knows, in a fixed order.
const std::vector<std::string_view>& service_names();

}  // namespace cohort::services
