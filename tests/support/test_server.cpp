#include "support/test_server.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

namespace gridflow::test {

std::string server_uri() {
    if (const char* uri = std::getenv("MONGODB_URI"); uri != nullptr && *uri != '\0') return uri;
    if (const char* dir = std::getenv("GRIDFLOW_DEV_SERVER_DIR"); dir != nullptr) {
        std::ifstream in(std::string(dir) + "/uri");
        std::string uri;
        if (in >> uri) return uri;
    }
    throw std::runtime_error(
        "no server: set MONGODB_URI, or run through ctest so the dev server fixture starts one "
        "(GRIDFLOW_DEV_SERVER_DIR/uri)");
}

std::string unique_name(const std::string& prefix) {
    static std::atomic<int> counter{0};
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    return prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(now % 1000000007) + "_" +
           std::to_string(counter++);
}

}  // namespace gridflow::test
