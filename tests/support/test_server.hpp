// Where the tests that need a server find it, and how they keep out of each other's way.
#pragma once

#include <string>

namespace gridflow::test {

// MONGODB_URI when set; else the URI the dev server fixture recorded in $GRIDFLOW_DEV_SERVER_DIR/uri.
// Throws std::runtime_error naming both places when neither is there.
[[nodiscard]] std::string server_uri();

// A name no other test run uses: prefix, the process id and a counter. The dev server cannot drop databases,
// so tests isolate themselves by name instead of cleaning up.
[[nodiscard]] std::string unique_name(const std::string& prefix);

}  // namespace gridflow::test
