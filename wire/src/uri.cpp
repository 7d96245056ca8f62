#include <gridflow/wire/uri.hpp>

#include <gridflow/wire/error.hpp>

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <limits>
#include <set>
#include <utility>

namespace gridflow::wire {

namespace {

constexpr std::string_view mongodb_scheme = "mongodb://";
constexpr std::string_view srv_scheme = "mongodb+srv://";
constexpr std::string_view mask = "***";
constexpr std::string_view external_source = "$external";

using raw_option_map = std::map<std::string, std::string, std::less<>>;

// Options whose values are secrets, lower-cased: redacted() masks them and warnings never quote them.
constexpr std::array<std::string_view, 2> secret_options{"proxypassword", "tlscertificatekeyfilepassword"};

bool is_secret_option(std::string_view lower_key) {
    return std::find(secret_options.begin(), secret_options.end(), lower_key) != secret_options.end();
}

// The longest raw spelling of a secret option's name: every character percent-encoded.
constexpr std::size_t max_secret_key_size = 3 * std::max(secret_options[0].size(), secret_options[1].size());

bool is_ascii_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

// Keys are normalised by lower-casing A-Z only, as the Connection String spec says; other bytes stay as they
// are.
std::string to_lower_ascii(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; });
    return out;
}

std::string to_upper_ascii(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; });
    return out;
}

// Percent-decodes s; empty when a '%' does not start a "%XX" escape.
std::optional<std::string> percent_decode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out += s[i];
            continue;
        }
        if (i + 2 >= s.size())
            return std::nullopt;
        const int high = hex_value(s[i + 1]);
        const int low = hex_value(s[i + 2]);
        if (high < 0 || low < 0)
            return std::nullopt;
        out += static_cast<char>(high * 16 + low);
        i += 2;
    }
    return out;
}

// Every piece of s between separators, empty pieces included.
std::vector<std::string_view> split(std::string_view s, char separator) {
    std::vector<std::string_view> pieces;
    std::size_t start = 0;
    for (;;) {
        const auto end = s.find(separator, start);
        pieces.push_back(s.substr(start, end - start));
        if (end == std::string_view::npos)
            return pieces;
        start = end + 1;
    }
}

std::string quoted(std::string_view s) {
    return "'" + std::string(s) + "'";
}

// A whole-string decimal integer: no sign other than a leading '-', no spaces, no trailing text.
std::optional<std::int64_t> parse_integer(std::string_view s) {
    std::int64_t value = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc() || end != s.data() + s.size())
        return std::nullopt;
    return value;
}

// The scheme text begins with, when it is one of the two this parser reads.
std::optional<std::string_view> known_scheme(std::string_view text) {
    for (const auto scheme : {srv_scheme, mongodb_scheme}) {
        if (text.starts_with(scheme))
            return scheme;
    }
    return std::nullopt;
}

// The text after the scheme, split as the Connection String spec's reference algorithm does: the authority
// runs to the first '/' or '?' (so neither may appear unescaped in user information or hosts), and the last
// '@' in it ends the user information.
struct uri_parts {
    std::optional<std::string_view> userinfo;
    std::string_view hosts;
    std::optional<std::string_view> path;   // after the '/' that ends the hosts, up to '?'
    std::optional<std::string_view> query;  // after the first '?' that follows the hosts
    std::size_t authority_end = 0;          // offset of that first '/' or '?', else the size of the text
    // An '@' follows the authority, so where the user information ends is not certain. The spec reads that
    // '@' as part of the database name or of an option value, but it may as well end a user name or password
    // that holds an unescaped '/' or '?' (base64 passwords hold '/'): then the password may be anything
    // before the last '@', and no piece of the text before it may be shown.
    bool userinfo_uncertain = false;
};

uri_parts split_parts(std::string_view rest) {
    uri_parts parts;
    parts.authority_end = std::min(rest.find_first_of("/?"), rest.size());
    const auto last_at = rest.rfind('@');
    parts.userinfo_uncertain = last_at != std::string_view::npos && last_at > parts.authority_end;
    const auto authority = rest.substr(0, parts.authority_end);
    if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
        parts.userinfo = authority.substr(0, at);
        parts.hosts = authority.substr(at + 1);
    } else {
        parts.hosts = authority;
    }
    if (parts.authority_end == rest.size())
        return parts;
    auto tail = rest.substr(parts.authority_end);
    const auto question = tail.find('?');
    if (tail.front() == '/')
        parts.path = tail.substr(1, question == std::string_view::npos ? question : question - 1);
    if (question != std::string_view::npos)
        parts.query = tail.substr(question + 1);
    return parts;
}

// True when an '@' after the authority cannot be read as part of an option value: the user name or password
// then holds an unescaped '/' or '?', or the database name an '@' (which has to be written %40 for the two to
// be told apart). An '@' in an option value (replicaSet=my@set) is valid by the spec.
bool has_misplaced_at(const uri_parts& parts) {
    if (!parts.userinfo_uncertain)
        return false;
    if (parts.path && parts.path->find('@') != std::string_view::npos)
        return true;
    if (!parts.query)
        return false;
    const auto pairs = split(*parts.query, '&');
    return std::any_of(pairs.begin(), pairs.end(), [](std::string_view pair) {
        const auto at = pair.find('@');
        return at != std::string_view::npos && at < pair.find('=');
    });
}

// Offsets [begin, end) into the text after the scheme that redact() replaces by ***. An empty range still
// shows ***: "bob:@host" has a password, and showing that it has one reveals nothing of it.
using hidden_ranges = std::vector<std::pair<std::size_t, std::size_t>>;

// rest with every hidden range, merged with those it overlaps or touches, replaced by ***.
std::string mask_ranges(std::string_view rest, hidden_ranges hidden) {
    std::sort(hidden.begin(), hidden.end());
    std::string out;
    std::size_t shown_from = 0;
    for (std::size_t i = 0; i < hidden.size();) {
        auto [begin, end] = hidden[i];
        for (++i; i < hidden.size() && hidden[i].first <= end; ++i)
            end = std::max(end, hidden[i].second);
        out += rest.substr(shown_from, begin - shown_from);
        out += mask;
        shown_from = end;
    }
    out += rest.substr(shown_from);
    return out;
}

// The URI as written, with the password and secret option values masked; empty when text does not begin
// with a known scheme, since what precedes a "://" then may be user information without its scheme.
std::string redact(std::string_view text) {
    const auto scheme = known_scheme(text);
    if (!scheme)
        return {};
    const auto rest = text.substr(scheme->size());
    const auto parts = split_parts(rest);
    hidden_ranges hidden;
    if (parts.userinfo_uncertain) {
        // Whichever '@' ends the user information, it is at or before the last one.
        hidden.emplace_back(0, rest.rfind('@'));
    } else if (parts.userinfo) {
        // A user name cannot hold ':', so the first one starts the password.
        if (const auto colon = parts.userinfo->find(':'); colon != std::string_view::npos)
            hidden.emplace_back(colon + 1, parts.userinfo->size());
    }
    // Secret option values. Every '?' and '&' after the authority may start a key=value pair, not only those
    // of the spec's query: when the user information is uncertain, the query may begin at any later '?'.
    // Masking a pair that the spec reads as part of another option's value errs on the safe side.
    for (auto start = parts.authority_end; start < rest.size(); ++start) {
        if (rest[start] != '?' && rest[start] != '&')
            continue;
        const auto key_begin = start + 1;
        const auto key_size = rest.substr(key_begin, max_secret_key_size + 1).find_first_of("=&");
        if (key_size == std::string_view::npos || rest[key_begin + key_size] != '=')
            continue;
        const auto key = rest.substr(key_begin, key_size);
        if (!is_secret_option(to_lower_ascii(percent_decode(key).value_or(std::string(key)))))
            continue;
        const auto value_begin = key_begin + key_size + 1;
        hidden.emplace_back(value_begin, std::min(rest.find('&', value_begin), rest.size()));
    }
    return std::string(*scheme) + mask_ranges(rest, std::move(hidden));
}

// Raises errc::invalid_uri for one URI, showing it only in its redacted form. Pieces of the URI reach
// messages and warnings only through quote(), which masks every piece when the user information is
// uncertain: any piece before the last '@' may then be part of the password.
class failure_reporter {
public:
    failure_reporter(std::string shown, bool mask_pieces)
        : shown_(std::move(shown)), mask_pieces_(mask_pieces) {}

    [[noreturn]] void fail(const std::string& problem) const {
        std::string what = "invalid MongoDB URI";
        if (!shown_.empty())
            what += " " + quoted(shown_);
        what += ": " + problem;
        if (masked_any_) {
            what +=
                " (pieces of the URI are masked: an '@' after the host list may end a password that holds an "
                "unescaped '/' or '?')";
        }
        throw error(errc::invalid_uri, what);
    }

    [[nodiscard]] std::string quote(std::string_view piece) const {
        if (!mask_pieces_)
            return quoted(piece);
        masked_any_ = true;
        return quoted(mask);
    }

    [[nodiscard]] const std::string& shown() const noexcept { return shown_; }

private:
    std::string shown_;
    bool mask_pieces_;
    // A message or warning masked a piece, so the failure explains why.
    mutable bool masked_any_ = false;
};

// ----------------------------------------------------------------------------------------------------
// User information and hosts

struct userinfo {
    std::string username;
    std::optional<std::string> password;
};

// RFC 3986 userinfo characters besides ':' and pct-encoded: unreserved and sub-delims.
bool is_userinfo_char(char c) {
    return is_ascii_alnum(c) || std::string_view("-._~!$&'()*+,;=").find(c) != std::string_view::npos;
}

// Checks one side of the user information. The password is never quoted, not even one character of it.
void check_userinfo_part(const failure_reporter& report, std::string_view raw, bool is_password) {
    const std::string part = is_password ? "password" : "user name";
    for (std::size_t i = 0; i < raw.size(); ++i) {
        const char c = raw[i];
        if (c == '%') {
            if (i + 2 >= raw.size() || hex_value(raw[i + 1]) < 0 || hex_value(raw[i + 2]) < 0) {
                report.fail("the " + part +
                            " contains a '%' that does not start a %XX escape; percent-encode " +
                            "the user name and password ('%' is %25)");
            }
            i += 2;
        } else if (!is_userinfo_char(c)) {
            report.fail("the " + part + " contains " +
                        (is_password ? std::string("a character") : report.quote({&c, 1})) +
                        " that must be percent-encoded");
        }
    }
}

userinfo parse_userinfo(const failure_reporter& report, std::string_view raw) {
    if (raw.find('@') != std::string_view::npos) {
        report.fail("the user name or password contains an unescaped '@'; percent-encode it as %40");
    }
    const auto colon = raw.find(':');
    if (colon != std::string_view::npos && raw.find(':', colon + 1) != std::string_view::npos) {
        report.fail("the password contains an unescaped ':'; percent-encode it as %3A");
    }
    const auto user_raw = raw.substr(0, colon);
    check_userinfo_part(report, user_raw, false);
    userinfo info{*percent_decode(user_raw), std::nullopt};
    if (colon != std::string_view::npos) {
        const auto password_raw = raw.substr(colon + 1);
        check_userinfo_part(report, password_raw, true);
        info.password = *percent_decode(password_raw);
    }
    return info;
}

// DNS names: letters, digits, '-', '.', '_', and any UTF-8 byte (internationalised names are kept as
// written).
bool is_hostname_char(char c) {
    return is_ascii_alnum(c) || c == '-' || c == '.' || c == '_' || static_cast<unsigned char>(c) >= 0x80;
}

std::uint16_t parse_port(const failure_reporter& report, std::string_view port, std::string_view host_text) {
    const auto value = std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })
                           ? parse_integer(port)
                           : std::nullopt;
    if (!value || *value < 1 || *value > 65535) {
        report.fail("the port of host " + report.quote(host_text) + " is not a number from 1 to 65535");
    }
    return static_cast<std::uint16_t>(*value);
}

struct parsed_host {
    uri_host host;
    bool port_given = false;
};

parsed_host parse_host(const failure_reporter& report, std::string_view raw) {
    parsed_host result;
    if (raw.empty())
        report.fail("the host list has an empty entry");
    if (raw.front() == '[') {
        const auto close = raw.find(']');
        if (close == std::string_view::npos)
            report.fail("IP literal " + report.quote(raw) + " has no closing ']'");
        const std::string address(raw.substr(1, close - 1));
        in6_addr parsed{};
        if (inet_pton(AF_INET6, address.c_str(), &parsed) != 1) {
            report.fail(report.quote(address) + " in " + report.quote(raw) + " is not an IPv6 address");
        }
        const auto after = raw.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':')
                report.fail("unexpected text after ']' in host " + report.quote(raw));
            result.host.port = parse_port(report, after.substr(1), raw);
            result.port_given = true;
        }
        result.host.kind = host_kind::ip_literal;
        result.host.host = to_lower_ascii(address);
        return result;
    }

    const auto colon = raw.find(':');
    if (colon != std::string_view::npos && raw.find(':', colon + 1) != std::string_view::npos) {
        report.fail("host " + report.quote(raw) +
                    " has more than one ':' (IPv6 addresses go in brackets: [::1]:27017)");
    }
    const auto name = raw.substr(0, colon);
    if (name.empty())
        report.fail("host " + report.quote(raw) + " has no name");
    if (colon != std::string_view::npos) {
        result.host.port = parse_port(report, raw.substr(colon + 1), raw);
        result.port_given = true;
    }
    const auto decoded = percent_decode(name);
    if (!decoded)
        report.fail("host " + report.quote(raw) + " contains a '%' that does not start a %XX escape");

    // Only a percent-encoded '/' makes a socket path: "mongodb-27017.sock" alone is a host name.
    if (decoded->find('/') != std::string::npos) {
        if (!decoded->ends_with(".sock")) {
            report.fail("UNIX domain socket path " + report.quote(*decoded) + " must end in '.sock'");
        }
        if (result.port_given)
            report.fail("UNIX domain socket " + report.quote(*decoded) + " takes no port");
        result.host.kind = host_kind::unix_socket;
        result.host.host = *decoded;
        result.host.port = 0;
        return result;
    }
    in_addr ipv4{};
    if (inet_pton(AF_INET, decoded->c_str(), &ipv4) == 1) {
        result.host.kind = host_kind::ipv4;
        result.host.host = *decoded;
        return result;
    }
    if (!std::all_of(decoded->begin(), decoded->end(), is_hostname_char)) {
        report.fail("host " + report.quote(*decoded) +
                    " is not a host name, IPv4 address, [IPv6] literal or " +
                    "percent-encoded UNIX domain socket path");
    }
    result.host.kind = host_kind::hostname;
    result.host.host = to_lower_ascii(*decoded);
    return result;
}

std::vector<uri_host> parse_hosts(const failure_reporter& report, std::string_view raw, bool srv,
                                  bool path_follows_directly) {
    if (raw.empty()) {
        report.fail(
            path_follows_directly
                ? "no host given; a UNIX domain socket path must be percent-encoded (%2Ftmp%2Fmongodb.sock)"
                : "no host given");
    }
    std::vector<uri_host> hosts;
    for (const auto piece : split(raw, ',')) {
        auto [host, port_given] = parse_host(report, piece);
        if (srv && port_given)
            report.fail("a mongodb+srv:// host name takes no port");
        if (srv && host.kind != host_kind::hostname) {
            report.fail("mongodb+srv:// needs a DNS host name, not an IP address or socket path");
        }
        hosts.push_back(std::move(host));
    }
    if (srv && hosts.size() > 1)
        report.fail("mongodb+srv:// takes exactly one host name");
    return hosts;
}

std::optional<std::string> parse_database(const failure_reporter& report,
                                          std::optional<std::string_view> path) {
    if (!path || path->empty())
        return std::nullopt;
    auto name = percent_decode(*path);
    if (!name)
        report.fail("the database name contains a '%' that does not start a %XX escape");
    // Periods are allowed so that the path can name a namespace (db.collection), as the spec permits.
    if (const auto bad = name->find_first_of("/\\ \"$"); bad != std::string::npos) {
        report.fail("database name " + report.quote(*name) + " contains " +
                    report.quote(name->substr(bad, 1)) + ", which a database name cannot contain");
    }
    return name;
}

// ----------------------------------------------------------------------------------------------------
// Options

class option_parser;

// What a repeated key means. The Connection String spec leaves precedence open and asks for a warning; the
// URI Options and SOCKS5 specs make some repeats errors, and list-valued options collect every occurrence.
enum class on_repeat { last_wins, collect, forbidden };

using apply_fn = void (*)(option_parser&, std::string_view name, const std::string& value);

struct option_rule {
    std::string_view name;  // as the specs spell it, for messages
    apply_fn apply;
    on_repeat repeat = on_repeat::last_wins;
};

class option_parser {
public:
    option_parser(const failure_reporter& report, uri_options& options, raw_option_map& raw,
                  std::vector<std::string>& warnings)
        : report_(report), options_(options), raw_(raw), warnings_(warnings) {}

    void parse(std::string_view query);
    void validate(bool srv, std::size_t host_count) const;

    uri_options& options() noexcept { return options_; }
    const failure_reporter& report() const noexcept { return report_; }
    void warn(std::string message) { warnings_.push_back(std::move(message)); }
    // The Connection String spec: an invalid value of a known option is ignored with a warning.
    void ignore(std::string_view name, std::string_view value, std::string_view expected) {
        std::string message = "ignoring option " + std::string(name);
        if (!is_secret_option(to_lower_ascii(name)))
            message += "=" + report_.quote(value);
        warn(message + ": expected " + std::string(expected));
    }
    // Every tls and ssl occurrence must agree (URI Options spec, "Conflicting TLS options").
    void check_tls_alias(std::string_view name, const std::string& value) {
        for (const auto& [other_name, other_value] : tls_values_) {
            if (other_value != value) {
                report_.fail(other_name + "=" + report_.quote(other_value) + " and " + std::string(name) +
                             "=" + report_.quote(value) +
                             " conflict; every tls and ssl option must have the same value");
            }
        }
        tls_values_.emplace_back(name, value);
    }

private:
    [[nodiscard]] bool given(std::string_view lower_key) const { return given_.contains(lower_key); }

    const failure_reporter& report_;
    uri_options& options_;
    raw_option_map& raw_;
    std::vector<std::string>& warnings_;
    // Lower-cased keys given with a non-empty value: the conflict rules are about presence, whatever the
    // value.
    std::set<std::string, std::less<>> given_;
    std::vector<std::pair<std::string, std::string>> tls_values_;
};

template <class T>
using field = std::optional<T> uri_options::*;

template <field<std::string> F>
void set_text(option_parser& p, std::string_view, const std::string& value) {
    p.options().*F = value;
}

template <field<bool> F>
void set_bool(option_parser& p, std::string_view name, const std::string& value) {
    // Only the two spellings the spec requires; the legacy ones ("1", "yes", ...) are deprecated.
    if (value == "true") {
        p.options().*F = true;
    } else if (value == "false") {
        p.options().*F = false;
    } else {
        p.ignore(name, value, "true or false");
    }
}

std::optional<std::int64_t> ranged_integer(option_parser& p, std::string_view name, const std::string& value,
                                           std::int64_t min, std::int64_t max) {
    const auto parsed = parse_integer(value);
    if (parsed && *parsed >= min && *parsed <= max)
        return parsed;
    const auto expected =
        max == std::numeric_limits<std::int32_t>::max() || max == std::numeric_limits<std::int64_t>::max()
            ? "an integer >= " + std::to_string(min)
            : "an integer from " + std::to_string(min) + " to " + std::to_string(max);
    p.ignore(name, value, expected);
    return std::nullopt;
}

template <field<std::int32_t> F, std::int32_t Min,
          std::int32_t Max = std::numeric_limits<std::int32_t>::max()>
void set_int32(option_parser& p, std::string_view name, const std::string& value) {
    if (const auto v = ranged_integer(p, name, value, Min, Max))
        p.options().*F = static_cast<std::int32_t>(*v);
}

// Durations are 32-bit like every integer option, except where the spec says 64 (wTimeoutMS).
template <field<std::chrono::milliseconds> F, std::int64_t Min,
          std::int64_t Max = std::numeric_limits<std::int32_t>::max()>
void set_millis(option_parser& p, std::string_view name, const std::string& value) {
    if (const auto v = ranged_integer(p, name, value, Min, Max))
        p.options().*F = std::chrono::milliseconds(*v);
}

void set_tls(option_parser& p, std::string_view name, const std::string& value) {
    p.check_tls_alias(name, value);
    set_bool<&uri_options::tls>(p, name, value);
}

void set_app_name(option_parser& p, std::string_view name, const std::string& value) {
    // The handshake spec caps client.application.name at 128 bytes; the server refuses longer names.
    if (value.size() > 128) {
        p.ignore(name, value, "at most 128 bytes");
        return;
    }
    p.options().app_name = value;
}

void set_w(option_parser& p, std::string_view name, const std::string& value) {
    if (const auto number = parse_integer(value)) {
        if (*number < 0 || *number > std::numeric_limits<std::int32_t>::max()) {
            p.ignore(name, value, "a non-negative integer or a string");
            return;
        }
        p.options().w = static_cast<std::int32_t>(*number);
        return;
    }
    p.options().w = value;
}

constexpr std::array<std::pair<std::string_view, read_mode>, 5> read_modes{{
    {"primary", read_mode::primary},
    {"primaryPreferred", read_mode::primary_preferred},
    {"secondary", read_mode::secondary},
    {"secondaryPreferred", read_mode::secondary_preferred},
    {"nearest", read_mode::nearest},
}};

void set_read_preference(option_parser& p, std::string_view name, const std::string& value) {
    for (const auto& [spelling, mode] : read_modes) {
        if (value == spelling) {
            p.options().read_preference = mode;
            return;
        }
    }
    p.ignore(name, value, "primary, primaryPreferred, secondary, secondaryPreferred or nearest");
}

// Splits "k1:v1,k2:v2"; a value may contain ':' (TOKEN_RESOURCE:mongodb://host) but never ','. Empty when a
// pair has no ':'.
std::optional<std::vector<std::pair<std::string, std::string>>> parse_pairs(std::string_view text) {
    std::vector<std::pair<std::string, std::string>> pairs;
    for (const auto piece : split(text, ',')) {
        const auto colon = piece.find(':');
        if (colon == std::string_view::npos || colon == 0)
            return std::nullopt;
        pairs.emplace_back(piece.substr(0, colon), piece.substr(colon + 1));
    }
    return pairs;
}

void add_read_preference_tags(option_parser& p, std::string_view name, const std::string& value) {
    key_value_map tags;
    if (!value.empty()) {
        // A tag set is all or nothing: keeping part of one would let servers match that the user did not
        // allow.
        const auto pairs = parse_pairs(value);
        if (!pairs) {
            p.ignore(name, value, "a tag set such as dc:ny,rack:1");
            return;
        }
        tags.insert(pairs->begin(), pairs->end());
    }
    p.options().read_preference_tags.push_back(std::move(tags));
}

void set_max_staleness(option_parser& p, std::string_view name, const std::string& value) {
    const auto v = parse_integer(value);
    if (!v || (*v != -1 && *v < 90) || *v > std::numeric_limits<std::int32_t>::max()) {
        p.ignore(name, value, "-1 (no maximum) or a number of seconds >= 90");
        return;
    }
    p.options().max_staleness_seconds = static_cast<std::int32_t>(*v);
}

void set_compressors(option_parser& p, std::string_view name, const std::string& value) {
    constexpr std::array<std::string_view, 3> known{"snappy", "zlib", "zstd"};
    std::vector<std::string> compressors;
    for (const auto piece : split(value, ',')) {
        // The compression spec: unknown compressors are left out with a warning, never sent in the handshake.
        if (std::find(known.begin(), known.end(), piece) == known.end()) {
            p.ignore(name, piece, "snappy, zlib or zstd");
        } else {
            compressors.emplace_back(piece);
        }
    }
    p.options().compressors = std::move(compressors);
}

void set_server_monitoring(option_parser& p, std::string_view name, const std::string& value) {
    if (value == "auto") {
        p.options().server_monitoring = server_monitoring_mode::automatic;
    } else if (value == "stream") {
        p.options().server_monitoring = server_monitoring_mode::stream;
    } else if (value == "poll") {
        p.options().server_monitoring = server_monitoring_mode::poll;
    } else {
        p.ignore(name, value, "auto, stream or poll");
    }
}

// RFC 6335 section 5.1 service names (letters, digits, single hyphens inside, at least one letter), but as
// long as 62 characters: the Initial DNS Seedlist Discovery spec lifts the 15-character limit up to the DNS
// label limit.
void set_srv_service_name(option_parser& p, std::string_view name, const std::string& value) {
    const bool valid =
        value.size() <= 62 && value.front() != '-' && value.back() != '-' &&
        value.find("--") == std::string::npos &&
        std::all_of(value.begin(), value.end(), [](char c) { return is_ascii_alnum(c) || c == '-'; }) &&
        std::any_of(value.begin(), value.end(),
                    [](char c) { return is_ascii_alnum(c) && !(c >= '0' && c <= '9'); });
    if (!valid) {
        p.ignore(name, value, "an SRV service name (letters, digits and hyphens)");
        return;
    }
    p.options().srv_service_name = value;
}

void set_proxy_port(option_parser& p, std::string_view name, const std::string& value) {
    if (const auto v = ranged_integer(p, name, value, 1, 65535))
        p.options().proxy_port = static_cast<std::uint16_t>(*v);
}

constexpr std::array<std::string_view, 7> auth_mechanisms{
    "SCRAM-SHA-256", "SCRAM-SHA-1", "MONGODB-X509", "GSSAPI", "PLAIN", "MONGODB-AWS", "MONGODB-OIDC"};

void set_auth_mechanism(option_parser& p, std::string_view, const std::string& value) {
    // Not a warning: ignoring a mechanism the user asked for would authenticate some other way than intended.
    if (std::find(auth_mechanisms.begin(), auth_mechanisms.end(), value) == auth_mechanisms.end()) {
        std::string known;
        for (const auto mechanism : auth_mechanisms)
            known += (known.empty() ? "" : ", ") + std::string(mechanism);
        p.report().fail("authMechanism " + p.report().quote(value) + " is not supported; use one of " +
                        known);
    }
    p.options().auth_mechanism = value;
}

void set_auth_mechanism_properties(option_parser& p, std::string_view name, const std::string& value) {
    // Split after percent-decoding, as the spec tests require: an encoded ',' (%2C) still separates pairs,
    // which is why a value containing ',' cannot be given in the URI. A pair without ':' is dropped alone.
    key_value_map properties;
    for (const auto piece : split(value, ',')) {
        const auto colon = piece.find(':');
        if (colon == std::string_view::npos || colon == 0) {
            p.ignore(name, piece, "KEY:value pairs separated by ',' (a value cannot contain ',')");
            continue;
        }
        const auto key = to_upper_ascii(piece.substr(0, colon));
        if (properties.contains(key))
            p.warn(std::string(name) + " repeats " + p.report().quote(key) + "; the last value is used");
        properties.insert_or_assign(key, std::string(piece.substr(colon + 1)));
    }
    p.options().auth_mechanism_properties = std::move(properties);
}

const std::map<std::string, option_rule, std::less<>>& option_rules() {
    using o = uri_options;
    constexpr auto int64_max = std::numeric_limits<std::int64_t>::max();
    static const std::map<std::string, option_rule, std::less<>> rules = [] {
        const std::vector<option_rule> list{
            {"appName", set_app_name},
            {"authMechanism", set_auth_mechanism},
            {"authMechanismProperties", set_auth_mechanism_properties},
            {"authSource", set_text<&o::auth_source>},
            {"compressors", set_compressors},
            {"connectTimeoutMS", set_millis<&o::connect_timeout, 0>},
            {"directConnection", set_bool<&o::direct_connection>},
            {"enableOverloadRetargeting", set_bool<&o::enable_overload_retargeting>},
            {"heartbeatFrequencyMS", set_millis<&o::heartbeat_frequency, 500>},
            {"journal", set_bool<&o::journal>},
            {"loadBalanced", set_bool<&o::load_balanced>},
            {"localThresholdMS", set_millis<&o::local_threshold, 0>},
            {"maxAdaptiveRetries", set_int32<&o::max_adaptive_retries, 0>},
            {"maxConnecting", set_int32<&o::max_connecting, 1>},
            {"maxIdleTimeMS", set_millis<&o::max_idle_time, 0>},
            {"maxPoolSize", set_int32<&o::max_pool_size, 0>},
            {"maxStalenessSeconds", set_max_staleness},
            {"minPoolSize", set_int32<&o::min_pool_size, 0>},
            {"proxyHost", set_text<&o::proxy_host>, on_repeat::forbidden},
            {"proxyPassword", set_text<&o::proxy_password>, on_repeat::forbidden},
            {"proxyPort", set_proxy_port, on_repeat::forbidden},
            {"proxyUsername", set_text<&o::proxy_username>, on_repeat::forbidden},
            {"readConcernLevel", set_text<&o::read_concern_level>},
            {"readPreference", set_read_preference},
            {"readPreferenceTags", add_read_preference_tags, on_repeat::collect},
            {"replicaSet", set_text<&o::replica_set>},
            {"retryReads", set_bool<&o::retry_reads>},
            {"retryWrites", set_bool<&o::retry_writes>},
            {"serverMonitoringMode", set_server_monitoring},
            {"serverSelectionTimeoutMS", set_millis<&o::server_selection_timeout, 1>},
            {"serverSelectionTryOnce", set_bool<&o::server_selection_try_once>},
            {"socketTimeoutMS", set_millis<&o::socket_timeout, 0>},
            {"srvMaxHosts", set_int32<&o::srv_max_hosts, 0>},
            {"srvServiceName", set_srv_service_name},
            {"ssl", set_tls, on_repeat::collect},
            {"timeoutMS", set_millis<&o::timeout, 0>},
            {"tls", set_tls, on_repeat::collect},
            {"tlsAllowInvalidCertificates", set_bool<&o::tls_allow_invalid_certificates>},
            {"tlsAllowInvalidHostnames", set_bool<&o::tls_allow_invalid_hostnames>},
            {"tlsCAFile", set_text<&o::tls_ca_file>},
            {"tlsCertificateKeyFile", set_text<&o::tls_certificate_key_file>},
            {"tlsCertificateKeyFilePassword", set_text<&o::tls_certificate_key_file_password>},
            {"tlsDisableCertificateRevocationCheck", set_bool<&o::tls_disable_certificate_revocation_check>},
            {"tlsDisableOCSPEndpointCheck", set_bool<&o::tls_disable_ocsp_endpoint_check>},
            {"tlsInsecure", set_bool<&o::tls_insecure>},
            {"w", set_w},
            {"waitQueueTimeoutMS", set_millis<&o::wait_queue_timeout, 1>},
            {"wTimeoutMS", set_millis<&o::w_timeout, 0, int64_max>},
            {"zlibCompressionLevel", set_int32<&o::zlib_compression_level, -1, 9>},
        };
        std::map<std::string, option_rule, std::less<>> by_key;
        for (const auto& rule : list)
            by_key.emplace(to_lower_ascii(rule.name), rule);
        return by_key;
    }();
    return rules;
}

void option_parser::parse(std::string_view query) {
    std::set<std::string, std::less<>> seen;
    for (const auto pair : split(query, '&')) {
        // A stray '&' (trailing, or doubled) separates nothing; it is not a key without a value.
        if (pair.empty())
            continue;
        const auto equals = pair.find('=');
        if (equals == std::string_view::npos) {
            report_.fail("option " + report_.quote(pair) +
                         " has no '=value' (write key=value pairs separated by '&')");
        }
        const auto raw_key = pair.substr(0, equals);
        auto key = percent_decode(raw_key);
        if (!key || key->empty())
            report_.fail("option " + report_.quote(raw_key) + " has a malformed or empty name");
        const auto lower = to_lower_ascii(*key);
        const auto value = percent_decode(pair.substr(equals + 1));
        if (!value) {
            report_.fail("the value of option " + report_.quote(*key) +
                         " contains a '%' that does not start a %XX escape");
        }
        raw_[lower] = *value;

        const auto rule = option_rules().find(lower);
        if (rule == option_rules().end()) {
            warn("ignoring unsupported option " + report_.quote(*key));
            continue;
        }
        const auto name = rule->second.name;
        if (!seen.insert(lower).second) {
            if (rule->second.repeat == on_repeat::forbidden)
                report_.fail(std::string(name) + " is given more than once");
            if (rule->second.repeat == on_repeat::last_wins) {
                warn(std::string(name) + " is given more than once; the last valid value is used");
            }
        }
        if (value->empty()) {
            // The Auth spec makes an empty authSource an error; an empty tag set is {} (any server); other
            // options are ignored, as the Connection String spec says for integers and booleans.
            if (lower == "authsource")
                report_.fail("authSource must not be empty");
            if (lower != "readpreferencetags") {
                warn("ignoring option " + std::string(name) + ": its value is empty");
                continue;
            }
        }
        given_.insert(lower);
        rule->second.apply(*this, name, *value);
    }
}

void option_parser::validate(bool srv, std::size_t host_count) const {
    const auto& o = options_;
    const auto& rules = option_rules();
    const auto name = [&](std::string_view key) { return std::string(rules.find(key)->second.name); };

    // URI Options spec, "Conflicting TLS options": these pairs may not appear together, whatever their
    // values.
    constexpr std::array<std::pair<std::string_view, std::string_view>, 7> exclusive{{
        {"tlsinsecure", "tlsallowinvalidcertificates"},
        {"tlsinsecure", "tlsallowinvalidhostnames"},
        {"tlsinsecure", "tlsdisableocspendpointcheck"},
        {"tlsinsecure", "tlsdisablecertificaterevocationcheck"},
        {"tlsallowinvalidcertificates", "tlsdisableocspendpointcheck"},
        {"tlsallowinvalidcertificates", "tlsdisablecertificaterevocationcheck"},
        {"tlsdisableocspendpointcheck", "tlsdisablecertificaterevocationcheck"},
    }};
    for (const auto& [a, b] : exclusive) {
        if (given(a) && given(b))
            report_.fail(name(a) + " and " + name(b) + " cannot be given together");
    }

    if (o.direct_connection.value_or(false)) {
        if (host_count > 1)
            report_.fail("directConnection=true allows only one host");
        if (srv)
            report_.fail("directConnection=true cannot be used with mongodb+srv://");
    }

    // Load Balancer spec, "URI Validation".
    if (o.load_balanced.value_or(false)) {
        if (host_count > 1)
            report_.fail("loadBalanced=true allows only one host");
        if (given("replicaset"))
            report_.fail("loadBalanced=true cannot be combined with replicaSet");
        if (o.direct_connection.value_or(false)) {
            report_.fail("loadBalanced=true cannot be combined with directConnection=true");
        }
    }

    // Initial DNS Seedlist Discovery spec, "URI Validation".
    if (!srv) {
        for (const auto key : {"srvservicename", "srvmaxhosts"}) {
            if (given(key))
                report_.fail(name(key) + " is only allowed with mongodb+srv://");
        }
    }
    if (o.srv_max_hosts.value_or(0) > 0) {
        if (given("replicaset"))
            report_.fail("srvMaxHosts cannot be combined with replicaSet");
        if (o.load_balanced.value_or(false))
            report_.fail("srvMaxHosts cannot be combined with loadBalanced=true");
    }

    // SOCKS5 spec, "MongoClient Configuration".
    if (!o.proxy_host) {
        for (const auto key : {"proxyport", "proxyusername", "proxypassword"}) {
            if (given(key))
                report_.fail(name(key) + " requires proxyHost");
        }
    }
    if (o.proxy_username.has_value() != o.proxy_password.has_value()) {
        report_.fail("proxyUsername and proxyPassword must be given together");
    }

    // Connection Pooling spec: minPoolSize <= maxPoolSize, where a maxPoolSize of 0 means no limit.
    if (o.min_pool_size && o.max_pool_size && *o.max_pool_size != 0 && *o.min_pool_size > *o.max_pool_size) {
        report_.fail("minPoolSize " + report_.quote(std::to_string(*o.min_pool_size)) +
                     " exceeds maxPoolSize " + report_.quote(std::to_string(*o.max_pool_size)));
    }

    // Server Selection and Max Staleness specs: mode primary (also by default) takes no tags and no
    // staleness.
    if (o.read_preference.value_or(read_mode::primary) == read_mode::primary) {
        const bool has_tags = std::any_of(o.read_preference_tags.begin(), o.read_preference_tags.end(),
                                          [](const key_value_map& tags) { return !tags.empty(); });
        if (has_tags)
            report_.fail("readPreferenceTags cannot be used with readPreference primary");
        if (o.max_staleness_seconds.value_or(-1) > 0) {
            report_.fail("maxStalenessSeconds cannot be used with readPreference primary");
        }
    }
}

// ----------------------------------------------------------------------------------------------------
// Credentials (Authentication spec)

bool is_external_mechanism(std::string_view mechanism) {
    return mechanism == "GSSAPI" || mechanism == "MONGODB-X509" || mechanism == "MONGODB-AWS" ||
           mechanism == "MONGODB-OIDC";
}

void check_oidc_properties(const failure_reporter& report, const credential& c) {
    const auto& props = c.mechanism_properties;
    const auto environment = props.find("ENVIRONMENT");
    // Callbacks cannot be written in a URI, so a URI-configured OIDC credential needs a built-in environment.
    if (environment == props.end()) {
        report.fail("MONGODB-OIDC needs authMechanismProperties ENVIRONMENT (test, azure, gcp or k8s)");
    }
    const auto& env = environment->second;
    if (env != "test" && env != "azure" && env != "gcp" && env != "k8s") {
        report.fail("MONGODB-OIDC ENVIRONMENT " + report.quote(env) + " is not one of test, azure, gcp, k8s");
    }
    const bool wants_resource = env == "azure" || env == "gcp";
    if (wants_resource != props.contains("TOKEN_RESOURCE")) {
        report.fail(wants_resource ? "MONGODB-OIDC ENVIRONMENT " + env + " needs TOKEN_RESOURCE"
                                   : "MONGODB-OIDC ENVIRONMENT " + env + " takes no TOKEN_RESOURCE");
    }
    // Only the azure integration uses a user name (as the managed identity's client id).
    if (c.username && env != "azure")
        report.fail("MONGODB-OIDC ENVIRONMENT " + env + " takes no user name");
}

// The mechanism properties each mechanism accepts from a URI; any other is an error, as the spec recommends.
std::vector<std::string_view> allowed_properties(std::string_view mechanism) {
    if (mechanism == "GSSAPI")
        return {"SERVICE_NAME", "CANONICALIZE_HOST_NAME", "SERVICE_REALM", "SERVICE_HOST"};
    // ALLOWED_HOSTS and the callbacks are MongoClient settings that a URI must not carry.
    if (mechanism == "MONGODB-OIDC")
        return {"ENVIRONMENT", "TOKEN_RESOURCE"};
    // MONGODB-AWS takes credentials only from its environment since DRIVERS-3131, so no AWS_SESSION_TOKEN
    // either.
    return {};
}

std::optional<credential> make_credential(const failure_reporter& report, const std::optional<userinfo>& info,
                                          const std::optional<std::string>& database, const uri_options& o,
                                          std::vector<std::string>& warnings) {
    if (!info && !o.auth_mechanism) {
        if (o.auth_mechanism_properties) {
            warnings.emplace_back(
                "ignoring authMechanismProperties: no credentials or authMechanism are given");
        }
        return std::nullopt;
    }
    credential c;
    if (info) {
        c.username = info->username;
        c.password = info->password;
    }
    c.mechanism = o.auth_mechanism;
    if (o.auth_mechanism_properties)
        c.mechanism_properties = *o.auth_mechanism_properties;
    const std::string mechanism = c.mechanism.value_or("SCRAM");  // SCRAM-SHA-256 or -1, negotiated
    const std::string shown = c.mechanism.value_or("the default mechanism (SCRAM)");

    if (o.auth_source) {
        c.source = *o.auth_source;
    } else if (is_external_mechanism(mechanism)) {
        c.source = external_source;
    } else {
        c.source =
            database.value_or(mechanism == "PLAIN" ? std::string(external_source) : std::string("admin"));
    }
    if (is_external_mechanism(mechanism) && c.source != external_source) {
        report.fail(mechanism + " requires authSource $external, not " + report.quote(c.source));
    }

    const bool needs_username = mechanism == "SCRAM" || mechanism.starts_with("SCRAM-") ||
                                mechanism == "PLAIN" || mechanism == "GSSAPI";
    if (needs_username && (!c.username || c.username->empty()))
        report.fail(shown + " requires a user name");
    // The spec's valid-auth tests accept a user name without password when no mechanism is named, so for the
    // default the password is checked when authenticating; a named mechanism that needs one needs it now.
    if ((mechanism.starts_with("SCRAM-") || mechanism == "PLAIN") && !c.password) {
        report.fail(mechanism + " requires a password");
    }
    if ((mechanism == "MONGODB-X509" || mechanism == "MONGODB-OIDC") && c.password) {
        report.fail(mechanism + " takes no password");
    }
    if (mechanism == "MONGODB-AWS" && (c.username || c.password)) {
        report.fail(
            "MONGODB-AWS takes no user name or password in the URI; it reads AWS credentials from the "
            "environment");
    }

    const auto allowed = allowed_properties(mechanism);
    for (const auto& [key, value] : c.mechanism_properties) {
        if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
            report.fail("authMechanismProperties " + report.quote(key) + " does not apply to " + shown);
        }
    }
    if (mechanism == "GSSAPI") {
        if (const auto canonicalize = c.mechanism_properties.find("CANONICALIZE_HOST_NAME");
            canonicalize != c.mechanism_properties.end()) {
            constexpr std::array<std::string_view, 5> modes{"none", "forward", "forwardAndReverse", "true",
                                                            "false"};
            if (std::find(modes.begin(), modes.end(), canonicalize->second) == modes.end()) {
                report.fail("CANONICALIZE_HOST_NAME " + report.quote(canonicalize->second) +
                            " is not one of none, forward, forwardAndReverse, true, false");
            }
        }
        c.mechanism_properties.try_emplace("SERVICE_NAME", "mongodb");
    }
    if (mechanism == "MONGODB-OIDC")
        check_oidc_properties(report, c);
    return c;
}

}  // namespace

std::string uri_host::to_string() const {
    switch (kind) {
        case host_kind::unix_socket:
            return host;
        case host_kind::ip_literal:
            return "[" + host + "]:" + std::to_string(port);
        case host_kind::hostname:
        case host_kind::ipv4:
            break;
    }
    return host + ":" + std::to_string(port);
}

std::string_view to_string(read_mode mode) noexcept {
    for (const auto& [spelling, m] : read_modes) {
        if (m == mode)
            return spelling;
    }
    return "primary";
}

std::string_view to_string(server_monitoring_mode mode) noexcept {
    switch (mode) {
        case server_monitoring_mode::stream:
            return "stream";
        case server_monitoring_mode::poll:
            return "poll";
        case server_monitoring_mode::automatic:
            break;
    }
    return "auto";
}

std::string redact_uri(std::string_view connection_string) {
    std::string shown = redact(connection_string);
    if (shown.empty())
        return "<hidden: not a mongodb:// or mongodb+srv:// connection string>";
    return shown;
}

uri uri::parse(std::string_view text) {
    const auto scheme = known_scheme(text);
    const auto parts = split_parts(scheme ? text.substr(scheme->size()) : std::string_view());
    const failure_reporter report(redact(text), parts.userinfo_uncertain);
    if (text.empty())
        report.fail("the connection string is empty");
    if (!scheme)
        report.fail("it must begin with mongodb:// or mongodb+srv://");
    uri result;
    result.srv_ = *scheme == srv_scheme;
    if (has_misplaced_at(parts)) {
        report.fail(
            "an '@' follows the host list outside an option value: the user name or password contains an "
            "unescaped '/' or '?', or the database name an '@'; percent-encode them (%2F, %3F, %40)");
    }
    result.redacted_ = report.shown();

    std::optional<userinfo> info;
    if (parts.userinfo)
        info = parse_userinfo(report, *parts.userinfo);
    result.hosts_ = parse_hosts(report, parts.hosts, result.srv_, parts.path.has_value());
    result.database_ = parse_database(report, parts.path);

    option_parser options(report, result.options_, result.raw_options_, result.warnings_);
    if (parts.query)
        options.parse(*parts.query);
    options.validate(result.srv_, result.hosts_.size());

    result.credential_ = make_credential(report, info, result.database_, result.options_, result.warnings_);
    return result;
}

}  // namespace gridflow::wire
