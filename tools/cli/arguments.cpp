#include "arguments.hpp"

#include <gridflow/wire/error.hpp>
#include <gridflow/wire/uri.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <optional>

namespace gridflow::cli {

namespace {

// mongofiles' --host: "host", "host:port", "h1,h2" or "setName/h1,h2". The set name only matters for
// discovery, which the client does not do yet, so it is dropped.
std::string uri_from_host(std::string host, const std::optional<std::uint16_t>& port) {
    if (const auto slash = host.find('/'); slash != std::string::npos)
        host.erase(0, slash + 1);
    if (host.empty())
        host = "localhost";
    std::string hosts;
    std::size_t start = 0;
    while (start <= host.size()) {
        auto end = host.find(',', start);
        if (end == std::string::npos)
            end = host.size();
        std::string one = host.substr(start, end - start);
        const bool bracketed = !one.empty() && one.front() == '[';
        const bool has_port =
            bracketed ? one.find("]:") != std::string::npos : one.find(':') != std::string::npos;
        if (port && !has_port) {
            one += ':';
            one += std::to_string(*port);
        }
        hosts += (hosts.empty() ? "" : ",") + one;
        start = end + 1;
    }
    return "mongodb://" + hosts + "/";
}

// Appends key=value to a connection string's options, adding the "/" that must precede "?" when the URI has
// no path.
std::string with_option(std::string uri, std::string_view key, std::string_view value) {
    if (uri.find('?') == std::string::npos) {
        const auto scheme = uri.find("://");
        const auto path = uri.find('/', scheme == std::string::npos ? 0 : scheme + 3);
        uri += path == std::string::npos ? "/?" : "?";
    } else if (uri.back() != '?' && uri.back() != '&') {
        uri += "&";
    }
    uri += std::string(key) + "=" + std::string(value);
    return uri;
}

// RFC 3986 percent-encoding of everything but the unreserved characters, for user names, passwords and option
// values placed into a connection string.
std::string percent_encoded(std::string_view text) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (const char c : text) {
        const auto u = static_cast<unsigned char>(c);
        if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
            out += c;
        } else {
            out += '%';
            out += hex[u >> 4];
            out += hex[u & 0x0f];
        }
    }
    return out;
}

// mongofiles' --ssl* and authentication flags as the URI options of the same meaning, so the URI parser's
// checks (conflicting TLS options, unknown mechanisms) apply to them too.
std::string with_security_flags(std::string uri, const settings& s) {
    if (s.password && !s.username)
        throw usage_error("--password needs --username");
    if (s.username) {
        if (!s.password)
            throw usage_error("--username needs --password (gridflow does not prompt)");
        const auto authority = uri.find("://");
        if (authority == std::string::npos)
            throw usage_error("bad URI: no scheme");
        const auto hosts_end = uri.find_first_of("/?", authority + 3);
        if (uri.substr(authority + 3, hosts_end - (authority + 3)).find('@') != std::string::npos)
            throw usage_error("--username given, but the URI already names a user");
        uri.insert(authority + 3, percent_encoded(*s.username) + ":" + percent_encoded(*s.password) + "@");
    }
    if (s.ssl)
        uri = with_option(std::move(uri), "tls", "true");
    if (s.ssl_ca_file)
        uri = with_option(std::move(uri), "tlsCAFile", percent_encoded(*s.ssl_ca_file));
    if (s.ssl_pem_key_file)
        uri = with_option(std::move(uri), "tlsCertificateKeyFile", percent_encoded(*s.ssl_pem_key_file));
    if (s.ssl_pem_key_password) {
        uri = with_option(std::move(uri), "tlsCertificateKeyFilePassword",
                          percent_encoded(*s.ssl_pem_key_password));
    }
    if (s.ssl_allow_invalid_certificates)
        uri = with_option(std::move(uri), "tlsAllowInvalidCertificates", "true");
    if (s.ssl_allow_invalid_hostnames)
        uri = with_option(std::move(uri), "tlsAllowInvalidHostnames", "true");
    if (s.authentication_database)
        uri = with_option(std::move(uri), "authSource", percent_encoded(*s.authentication_database));
    if (s.authentication_mechanism)
        uri = with_option(std::move(uri), "authMechanism", percent_encoded(*s.authentication_mechanism));
    return uri;
}

// The hex digits of the shell's ObjectId("...") form, which mongofiles also takes.
std::optional<std::string_view> shell_object_id(std::string_view text) {
    constexpr std::string_view open = "ObjectId(\"";
    constexpr std::string_view close = "\")";
    if (!text.starts_with(open) || !text.ends_with(close))
        return std::nullopt;
    const std::string_view hex = text.substr(open.size(), text.size() - open.size() - close.size());
    if (hex.size() != 24 || !std::all_of(hex.begin(), hex.end(),
                                         [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); }))
        return std::nullopt;
    return hex;
}

}  // namespace

server_target resolve_target(const settings& s, std::string_view environment_uri) {
    std::string text;
    if (s.uri)
        text = *s.uri;
    else if (s.host || s.port)
        text = uri_from_host(s.host.value_or("localhost"), s.port);
    else if (!environment_uri.empty())
        text = environment_uri;
    else
        text = "mongodb://localhost:27017/";
    text = with_security_flags(std::move(text), s);

    std::optional<wire::uri> parsed;
    try {
        parsed = wire::uri::parse(text);
    } catch (const error& e) {
        throw usage_error(std::string("bad URI: ") + e.what());
    }
    server_target target;
    target.address = parsed->hosts().front().to_string();
    target.redacted = parsed->redacted();
    const auto& options = parsed->options();
    if (options.connect_timeout) {
        target.connect_timeout = *options.connect_timeout;
        target.connection_string = text;
    } else {
        // The client has no server selection loop yet; serverSelectionTimeoutMS, when given, is the user's
        // bound on how long finding the server may take, which here is the connect.
        target.connect_timeout = options.server_selection_timeout.value_or(default_connect_timeout);
        target.connection_string =
            with_option(text, "connectTimeoutMS", std::to_string(target.connect_timeout.count()));
    }
    if (s.db) {
        target.database = *s.db;
    } else if (parsed->database() && !parsed->database()->empty()) {
        // A path of "db.collection" names a collection too; the database is what precedes the dot.
        const std::string& path = *parsed->database();
        target.database = path.substr(0, path.find('.'));
    } else {
        target.database = "test";
    }
    if (target.database.empty())
        throw usage_error("--db must not be empty");
    return target;
}

bson::value parse_id(std::string_view text) {
    std::string json(text);
    if (const auto hex = shell_object_id(text))
        json = R"({"$oid": ")" + std::string(*hex) + "\"}";
    // Wrapped in a document so libbson's Extended JSON parser reads the value; exactly one field must come
    // out, so text such as `1, "x": 2` is refused rather than half-used.
    try {
        const auto doc = bson::document::from_json("{\"id\": " + json + "\n}");
        if (doc.view().count_keys() == 1) {
            if (const auto e = doc.find("id"))
                return bson::value(*e);
        }
    } catch (const error&) {
    }
    throw usage_error(
        "bad id '" + std::string(text) +
        "': not an Extended JSON value (e.g. '{\"$oid\": \"<24 hex digits>\"}', 42 or '\"text\"')");
}

bson::document parse_write_concern(std::string_view text) {
    const auto bad = [&](const std::string& why) {
        return usage_error("bad --writeConcern '" + std::string(text) + "': " + why);
    };
    if (text.empty())
        throw bad("empty");
    if (text.front() == '{') {
        try {
            return bson::document::from_json(text);
        } catch (const error& e) {
            throw bad(e.what());
        }
    }
    bson::builder b;
    if (std::all_of(text.begin(), text.end(),
                    [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
        if (text.size() > 9)
            throw bad("too many nodes");
        b.append("w", static_cast<std::int32_t>(std::stoi(std::string(text))));
    } else {
        b.append("w", text);
    }
    return b.extract();
}

std::string parse_read_preference(std::string_view text) {
    std::string mode(text);
    if (!text.empty() && text.front() == '{') {
        try {
            const auto doc = bson::document::from_json(text);
            const auto e = doc.find("mode");
            if (!e || e->type() != BSON_TYPE_UTF8)
                throw usage_error("");
            mode = std::string(e->as_string());
        } catch (const std::exception&) {
            throw usage_error("bad --readPreference '" + std::string(text) +
                              "': expected a document with a mode");
        }
    }
    static constexpr std::array<std::string_view, 5> modes{"primary", "primaryPreferred", "secondary",
                                                           "secondaryPreferred", "nearest"};
    if (std::find(modes.begin(), modes.end(), mode) == modes.end()) {
        throw usage_error(
            "bad --readPreference '" + std::string(text) +
            "': the modes are primary, primaryPreferred, secondary, secondaryPreferred, nearest");
    }
    return mode;
}

std::string regex_escape(std::string_view text) {
    std::string out;
    for (const char c : text) {
        if (std::string_view(R"(\^$.|?*+()[]{})").find(c) != std::string_view::npos)
            out += '\\';
        out += c;
    }
    return out;
}

}  // namespace gridflow::cli
