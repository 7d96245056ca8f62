// Shared by the connection string spec runners (connection_string.cpp, uri_options.cpp,
// auth_connection_string.cpp): loads every JSON file of a folder under tests/spec/data, checks each case with
// a per-format checker, counts passes, failures and explicit skips, and prints one summary line.
//
// Comparisons go through one canonical text form: a spec value (bson::element) and the parsed value are both
// rendered (strings quoted, numbers in decimal, arrays in order, documents with sorted keys) and compared as
// strings, so a mismatch reads naturally in the failure message.
#pragma once

#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/error.hpp>
#include <gridflow/wire/uri.hpp>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gridflow::test::uri_spec {

// Problems found in one case; empty when it passes.
using problems = std::vector<std::string>;
using case_checker = std::function<problems(const bson::view& test_case)>;
// Description of a case that cannot pass -> why.
using skip_list = std::map<std::string, std::string, std::less<>>;

inline std::string quote(std::string_view s) {
    return "\"" + std::string(s) + "\"";
}

inline std::string render(const bson::element& e) {
    switch (e.type()) {
        case BSON_TYPE_UTF8:
            return quote(e.as_string());
        case BSON_TYPE_BOOL:
            return e.as_bool() ? "true" : "false";
        case BSON_TYPE_INT32:
        case BSON_TYPE_INT64:
        case BSON_TYPE_DOUBLE:
            return std::to_string(e.as_integer());
        case BSON_TYPE_ARRAY: {
            std::string out = "[";
            e.as_array().for_each([&](const bson::element& item) {
                if (out.size() > 1)
                    out += ",";
                out += render(item);
            });
            return out + "]";
        }
        case BSON_TYPE_DOCUMENT: {
            std::vector<std::pair<std::string, std::string>> fields;
            e.as_document().for_each(
                [&](const bson::element& field) { fields.emplace_back(field.key(), render(field)); });
            std::sort(fields.begin(), fields.end());
            std::string out = "{";
            for (const auto& [key, value] : fields)
                out += (out.size() > 1 ? "," : "") + key + ":" + value;
            return out + "}";
        }
        default:
            return "null";
    }
}

inline std::string render(const wire::key_value_map& map) {
    std::string out = "{";
    for (const auto& [key, value] : map)
        out += (out.size() > 1 ? "," : "") + key + ":" + quote(value);
    return out + "}";
}

inline std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; });
    return out;
}

using rendered = std::optional<std::string>;

inline rendered text(const std::optional<std::string>& v) {
    return v ? rendered(quote(*v)) : std::nullopt;
}
inline rendered flag(const std::optional<bool>& v) {
    return v ? rendered(*v ? "true" : "false") : std::nullopt;
}
template <class T>
rendered number(const std::optional<T>& v) {
    return v ? rendered(std::to_string(*v)) : std::nullopt;
}
inline rendered millis(const std::optional<std::chrono::milliseconds>& v) {
    return v ? rendered(std::to_string(v->count())) : std::nullopt;
}

// The parsed value of an option named by its lower-cased key, rendered; empty when the URI left it unset.
inline rendered parsed_option(const wire::uri_options& o, std::string_view key) {
    static const std::map<std::string, std::function<rendered(const wire::uri_options&)>, std::less<>> by_key{
        {"appname", [](const auto& u) { return text(u.app_name); }},
        {"authmechanism", [](const auto& u) { return text(u.auth_mechanism); }},
        {"authmechanismproperties",
         [](const auto& u) {
             return u.auth_mechanism_properties ? rendered(render(*u.auth_mechanism_properties))
                                                : std::nullopt;
         }},
        {"authsource", [](const auto& u) { return text(u.auth_source); }},
        {"compressors",
         [](const auto& u) -> rendered {
             if (!u.compressors)
                 return std::nullopt;
             std::string out = "[";
             for (const auto& c : *u.compressors)
                 out += (out.size() > 1 ? "," : "") + quote(c);
             return out + "]";
         }},
        {"connecttimeoutms", [](const auto& u) { return millis(u.connect_timeout); }},
        {"directconnection", [](const auto& u) { return flag(u.direct_connection); }},
        {"enableoverloadretargeting", [](const auto& u) { return flag(u.enable_overload_retargeting); }},
        {"heartbeatfrequencyms", [](const auto& u) { return millis(u.heartbeat_frequency); }},
        {"journal", [](const auto& u) { return flag(u.journal); }},
        {"loadbalanced", [](const auto& u) { return flag(u.load_balanced); }},
        {"localthresholdms", [](const auto& u) { return millis(u.local_threshold); }},
        {"maxadaptiveretries", [](const auto& u) { return number(u.max_adaptive_retries); }},
        {"maxconnecting", [](const auto& u) { return number(u.max_connecting); }},
        {"maxidletimems", [](const auto& u) { return millis(u.max_idle_time); }},
        {"maxpoolsize", [](const auto& u) { return number(u.max_pool_size); }},
        {"maxstalenessseconds", [](const auto& u) { return number(u.max_staleness_seconds); }},
        {"minpoolsize", [](const auto& u) { return number(u.min_pool_size); }},
        {"proxyhost", [](const auto& u) { return text(u.proxy_host); }},
        {"proxypassword", [](const auto& u) { return text(u.proxy_password); }},
        {"proxyport", [](const auto& u) { return number(u.proxy_port); }},
        {"proxyusername", [](const auto& u) { return text(u.proxy_username); }},
        {"readconcernlevel", [](const auto& u) { return text(u.read_concern_level); }},
        {"readpreference",
         [](const auto& u) {
             return u.read_preference ? rendered(quote(wire::to_string(*u.read_preference))) : std::nullopt;
         }},
        {"readpreferencetags",
         [](const auto& u) -> rendered {
             if (u.read_preference_tags.empty())
                 return std::nullopt;
             std::string out = "[";
             for (const auto& tags : u.read_preference_tags)
                 out += (out.size() > 1 ? "," : "") + render(tags);
             return out + "]";
         }},
        {"replicaset", [](const auto& u) { return text(u.replica_set); }},
        {"retryreads", [](const auto& u) { return flag(u.retry_reads); }},
        {"retrywrites", [](const auto& u) { return flag(u.retry_writes); }},
        {"servermonitoringmode",
         [](const auto& u) {
             return u.server_monitoring ? rendered(quote(wire::to_string(*u.server_monitoring)))
                                        : std::nullopt;
         }},
        {"serverselectiontimeoutms", [](const auto& u) { return millis(u.server_selection_timeout); }},
        {"serverselectiontryonce", [](const auto& u) { return flag(u.server_selection_try_once); }},
        {"sockettimeoutms", [](const auto& u) { return millis(u.socket_timeout); }},
        {"srvmaxhosts", [](const auto& u) { return number(u.srv_max_hosts); }},
        {"srvservicename", [](const auto& u) { return text(u.srv_service_name); }},
        {"ssl", [](const auto& u) { return flag(u.tls); }},
        {"timeoutms", [](const auto& u) { return millis(u.timeout); }},
        {"tls", [](const auto& u) { return flag(u.tls); }},
        {"tlsallowinvalidcertificates", [](const auto& u) { return flag(u.tls_allow_invalid_certificates); }},
        {"tlsallowinvalidhostnames", [](const auto& u) { return flag(u.tls_allow_invalid_hostnames); }},
        {"tlscafile", [](const auto& u) { return text(u.tls_ca_file); }},
        {"tlscertificatekeyfile", [](const auto& u) { return text(u.tls_certificate_key_file); }},
        {"tlscertificatekeyfilepassword",
         [](const auto& u) { return text(u.tls_certificate_key_file_password); }},
        {"tlsdisablecertificaterevocationcheck",
         [](const auto& u) { return flag(u.tls_disable_certificate_revocation_check); }},
        {"tlsdisableocspendpointcheck",
         [](const auto& u) { return flag(u.tls_disable_ocsp_endpoint_check); }},
        {"tlsinsecure", [](const auto& u) { return flag(u.tls_insecure); }},
        {"w",
         [](const auto& u) -> rendered {
             if (!u.w)
                 return std::nullopt;
             if (const auto* n = std::get_if<std::int32_t>(&*u.w))
                 return std::to_string(*n);
             return quote(std::get<std::string>(*u.w));
         }},
        {"waitqueuetimeoutms", [](const auto& u) { return millis(u.wait_queue_timeout); }},
        {"wtimeoutms", [](const auto& u) { return millis(u.w_timeout); }},
        {"zlibcompressionlevel", [](const auto& u) { return number(u.zlib_compression_level); }},
    };
    const auto found = by_key.find(key);
    if (found == by_key.end())
        return "<no typed field for this option>";
    return found->second(o);
}

inline std::string join(const std::vector<std::string>& items, std::string_view separator = "; ") {
    std::string out;
    for (const auto& item : items)
        out += (out.empty() ? "" : std::string(separator)) + item;
    return out;
}

// Parses the case's uri; records a problem and returns empty when validity differs from `valid`.
inline std::optional<wire::uri> parse_as_expected(std::string_view text, bool valid, problems& found) {
    try {
        auto parsed = wire::uri::parse(text);
        if (!valid)
            found.push_back("parsed, but the spec says the URI is invalid");
        return valid ? std::optional<wire::uri>(std::move(parsed)) : std::nullopt;
    } catch (const gridflow::error& e) {
        if (e.code() != gridflow::errc::invalid_uri)
            found.push_back(std::string("wrong error code: ") + e.what());
        if (valid)
            found.push_back(std::string("refused, but the spec says valid: ") + e.what());
        return std::nullopt;
    }
}

// The format shared by the connection-string and uri-options folders: valid, warning, hosts, auth, options;
// a null field asks for no assertion.
inline problems check_connection_string_case(const bson::view& test_case) {
    problems found;
    const auto parsed =
        parse_as_expected(test_case.at("uri").as_string(), test_case.at("valid").as_bool(), found);
    if (!parsed)
        return found;

    if (const auto warning = test_case.at("warning"); warning.type() == BSON_TYPE_BOOL) {
        if (warning.as_bool() == parsed->warnings().empty()) {
            found.push_back(warning.as_bool() ? "expected a warning, got none"
                                              : "expected no warning, got: " + join(parsed->warnings()));
        }
    }

    if (const auto hosts = test_case.at("hosts"); hosts.type() == BSON_TYPE_ARRAY) {
        std::vector<bson::element> expected;
        hosts.as_array().for_each([&](const bson::element& h) { expected.push_back(h); });
        if (expected.size() != parsed->hosts().size()) {
            found.push_back("expected " + std::to_string(expected.size()) + " hosts, got " +
                            std::to_string(parsed->hosts().size()));
        }
        for (std::size_t i = 0; i < std::min(expected.size(), parsed->hosts().size()); ++i) {
            const auto want = expected[i].as_document();
            const auto& got = parsed->hosts()[i];
            static const std::map<wire::host_kind, std::string_view> kind_names{
                {wire::host_kind::hostname, "hostname"},
                {wire::host_kind::ipv4, "ipv4"},
                {wire::host_kind::ip_literal, "ip_literal"},
                {wire::host_kind::unix_socket, "unix"}};
            const auto where = "host " + std::to_string(i) + ": ";
            if (want.at("type").as_string() != kind_names.at(got.kind)) {
                found.push_back(where + "type " + std::string(kind_names.at(got.kind)) + ", expected " +
                                std::string(want.at("type").as_string()));
            }
            if (want.at("host").as_string() != got.host)
                found.push_back(where + "host " + quote(got.host) + ", expected " + render(want.at("host")));
            if (const auto port = want.at("port"); port.is_number() && port.as_integer() != got.port) {
                found.push_back(where + "port " + std::to_string(got.port) + ", expected " + render(port));
            }
        }
    }

    if (const auto auth = test_case.at("auth"); auth.type() == BSON_TYPE_DOCUMENT) {
        const auto want = auth.as_document();
        const auto& credential = parsed->credentials();
        const auto check = [&](std::string_view field, const std::optional<std::string>& got) {
            if (const auto e = want.at(field);
                e.type() == BSON_TYPE_UTF8 && (!got || *got != e.as_string())) {
                found.push_back("auth." + std::string(field) + " is " + (got ? quote(*got) : "unset"));
            }
        };
        check("username", credential ? credential->username : std::nullopt);
        check("password", credential ? credential->password : std::nullopt);
        check("db", parsed->database());
    }

    if (const auto options = test_case.at("options"); options.type() == BSON_TYPE_DOCUMENT) {
        options.as_document().for_each([&](const bson::element& want) {
            const auto got = parsed_option(parsed->options(), lower(want.key()));
            if (got != render(want)) {
                found.push_back("option " + std::string(want.key()) + " is " + got.value_or("unset") +
                                ", expected " + render(want));
            }
        });
    }
    return found;
}

// Runs every case of every JSON file in GRIDFLOW_SPEC_DATA_DIR/folder, then prints
// "uri spec (<folder>): N passed, F failed, K skipped".
inline void run_folder(std::string_view folder, const case_checker& check, const skip_list& skips = {}) {
    const auto dir = std::filesystem::path(GRIDFLOW_SPEC_DATA_DIR) / folder;
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        if (entry.path().extension() == ".json")
            files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    BOOST_TEST_REQUIRE(!files.empty(), "no spec files in " << dir);

    int passed = 0;
    int failed = 0;
    int skipped = 0;
    std::set<std::string, std::less<>> skips_used;
    for (const auto& path : files) {
        std::ifstream in(path, std::ios::binary);
        std::stringstream json;
        json << in.rdbuf();
        const auto file = bson::document::from_json(json.str());
        const auto name = path.filename().string();
        file.at("tests").as_array().for_each([&](const bson::element& e) {
            const auto test_case = e.as_document();
            const std::string description(test_case.at("description").as_string());
            if (const auto skip = skips.find(description); skip != skips.end()) {
                std::cout << "skipped " << name << ": " << description << ": " << skip->second << "\n";
                skips_used.insert(description);
                ++skipped;
                return;
            }
            const auto found = check(test_case);
            BOOST_TEST(found.empty(), name << ": " << description << " (" << test_case.at("uri").as_string()
                                           << "): " << join(found));
            ++(found.empty() ? passed : failed);
        });
    }
    for (const auto& [description, reason] : skips) {
        BOOST_TEST(skips_used.contains(description),
                   "skip list names a case that does not exist: " << description);
    }
    std::cout << "uri spec (" << folder << "): " << passed << " passed, " << failed << " failed, " << skipped
              << " skipped" << std::endl;
}

}  // namespace gridflow::test::uri_spec
