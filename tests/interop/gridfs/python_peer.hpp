// Runs a PyMongo peer script of this folder and reads the one Extended JSON document it prints.
//
// The interpreter is the first of $GRIDFLOW_PYTHON, the python3 programs on PATH and /usr/bin/python3 that can
// import pymongo and gridfs: Debian's python3-pymongo serves /usr/bin/python3, and a pyenv python3 earlier on
// PATH usually cannot import it.
#pragma once

#include <gridflow/wire/bson.hpp>

#include <boost/test/unit_test.hpp>

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace gridflow::test {

inline std::string shell_quote(std::string_view s) {
    std::string out = "'";
    for (const char c : s)
        out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

inline const std::string& pymongo_python() {
    static const std::string found = [] {
        std::vector<std::string> candidates;
        if (const char* env = std::getenv("GRIDFLOW_PYTHON"); env != nullptr && *env != '\0')
            candidates.emplace_back(env);
        if (const char* path = std::getenv("PATH"); path != nullptr) {
            std::stringstream dirs(path);
            for (std::string dir; std::getline(dirs, dir, ':');) {
                if (!dir.empty())
                    candidates.push_back(dir + "/python3");
            }
        }
        candidates.emplace_back("/usr/bin/python3");
        for (const auto& candidate : candidates) {
            const auto probe = shell_quote(candidate) + " -c 'import pymongo, gridfs' >/dev/null 2>&1";
            if (std::system(probe.c_str()) == 0)
                return candidate;
        }
        throw std::runtime_error(
            "no python3 that can import pymongo (install python3-pymongo or set GRIDFLOW_PYTHON)");
    }();
    return found;
}

// Runs `script` (a path) with `args` and returns the document it printed; fails the test when it exits
// non-zero.
inline bson::document run_python_peer(const std::string& script, const std::vector<std::string>& args) {
    std::string command = shell_quote(pymongo_python()) + " " + shell_quote(script);
    for (const auto& arg : args)
        command += " " + shell_quote(arg);
    FILE* pipe = ::popen(command.c_str(), "r");
    BOOST_TEST_REQUIRE(pipe != nullptr, "cannot run " << command);
    std::string output;
    char buffer[65536];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;)
        output.append(buffer, n);
    const int status = ::pclose(pipe);
    BOOST_TEST_REQUIRE((WIFEXITED(status) && WEXITSTATUS(status) == 0),
                       command << " failed (status " << status << "); stdout: " << output);
    return bson::document::from_json(output);
}

}  // namespace gridflow::test
