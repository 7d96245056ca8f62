// The mongodb:// connection string, parsed and validated per the MongoDB Connection String, URI Options and
// Authentication specifications (the spec tests under tests/spec/data are the reference).
//
//   auto u =
//   gridflow::wire::uri::parse("mongodb://alice:s3cret@db1,db2:27018/app?replicaSet=rs0&w=majority");
//   u.hosts()[1].port;              // 27018
//   u.options().replica_set;        // "rs0"
//   u.credentials()->source;        // "app"
//   u.redacted();                   // "mongodb://alice:***@db1,db2:27018/app?replicaSet=rs0&w=majority"
//
// Errors and warnings follow the specs: a malformed URI, conflicting options or unusable credentials throw
// gridflow::error (errc::invalid_uri) naming the problem; an unknown option, a repeated key or an invalid
// value of a known option is ignored and reported in warnings(), as the spec requires. Messages and warnings
// never contain the password: where they show the URI they show redacted(), and when an '@' follows the host
// list (so that the password may run up to it) they mask every other piece of the URI they would quote too.
//
// mongodb+srv:// is parsed and validated (one host name, no port) and marked by is_srv(); resolving its SRV
// and TXT records is the connection layer's job, which refuses it with errc::not_supported for now.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace gridflow::wire {

inline constexpr std::uint16_t default_port = 27017;

enum class host_kind {
    hostname,     // a DNS name (ASCII letters lowercased; UTF-8 names are kept as written)
    ipv4,         // dotted-quad IPv4 address
    ip_literal,   // IPv6 address, written in brackets in the URI; stored without them
    unix_socket,  // percent-encoded path ending in ".sock"; stored decoded
};

struct uri_host {
    host_kind kind = host_kind::hostname;
    std::string host;
    // default_port when the URI gives none; 0 for a unix_socket, which has no port.
    std::uint16_t port = default_port;

    // "host:port", "[::1]:port", or the socket path: the form to show in messages and to key servers by.
    [[nodiscard]] std::string to_string() const;
    friend bool operator==(const uri_host&, const uri_host&) = default;
};

// Comma-separated key:value pairs (authMechanismProperties, one readPreferenceTags tag set).
using key_value_map = std::map<std::string, std::string, std::less<>>;

enum class read_mode { primary, primary_preferred, secondary, secondary_preferred, nearest };
// The spec's spelling: "primaryPreferred", ...
[[nodiscard]] std::string_view to_string(read_mode mode) noexcept;

enum class server_monitoring_mode { automatic, stream, poll };
// "auto", "stream", "poll".
[[nodiscard]] std::string_view to_string(server_monitoring_mode mode) noexcept;

// The write concern's w: a number of nodes, or a string such as "majority" or a tag set name.
using write_concern_w = std::variant<std::int32_t, std::string>;

// Every option the specs define, as given in the URI: empty when the URI does not set it (or set it to a
// value that was ignored with a warning), so the layer that uses an option applies its own default. Ranges
// are those of the URI Options spec; a value outside them is ignored with a warning.
struct uri_options {
    // Connection and server selection.
    std::optional<std::string> app_name;                                // appName, at most 128 bytes
    std::optional<std::chrono::milliseconds> connect_timeout;           // connectTimeoutMS; 0: none
    std::optional<std::chrono::milliseconds> socket_timeout;            // socketTimeoutMS; 0: none
    std::optional<std::chrono::milliseconds> timeout;                   // timeoutMS; 0: none
    std::optional<std::chrono::milliseconds> server_selection_timeout;  // serverSelectionTimeoutMS; > 0
    std::optional<bool> server_selection_try_once;                      // serverSelectionTryOnce
    std::optional<std::chrono::milliseconds> heartbeat_frequency;       // heartbeatFrequencyMS; >= 500
    std::optional<std::chrono::milliseconds> local_threshold;           // localThresholdMS
    std::optional<server_monitoring_mode> server_monitoring;            // serverMonitoringMode
    std::optional<std::string> replica_set;                             // replicaSet
    std::optional<bool> direct_connection;                              // directConnection; true: one host
    std::optional<bool> load_balanced;                                  // loadBalanced

    // Connection pool.
    std::optional<std::chrono::milliseconds> max_idle_time;       // maxIdleTimeMS; 0: no limit
    std::optional<std::int32_t> min_pool_size;                    // minPoolSize; <= maxPoolSize
    std::optional<std::int32_t> max_pool_size;                    // maxPoolSize; 0: no limit
    std::optional<std::int32_t> max_connecting;                   // maxConnecting; > 0
    std::optional<std::chrono::milliseconds> wait_queue_timeout;  // waitQueueTimeoutMS; > 0

    // Retries and overload handling.
    std::optional<bool> retry_reads;                   // retryReads
    std::optional<bool> retry_writes;                  // retryWrites
    std::optional<std::int32_t> max_adaptive_retries;  // maxAdaptiveRetries
    std::optional<bool> enable_overload_retargeting;   // enableOverloadRetargeting

    // Read and write concern, read preference.
    std::optional<write_concern_w> w;                    // w; a number is >= 0
    std::optional<std::chrono::milliseconds> w_timeout;  // wTimeoutMS (64-bit); 0: none
    std::optional<bool> journal;                         // journal
    std::optional<std::string> read_concern_level;       // readConcernLevel, any string
    std::optional<read_mode> read_preference;            // readPreference
    std::vector<key_value_map> read_preference_tags;    // readPreferenceTags, in order; {} matches any server
    std::optional<std::int32_t> max_staleness_seconds;  // maxStalenessSeconds; -1: none, else >= 90

    // Wire compression: the known compressors (snappy, zlib, zstd) in the order given.
    std::optional<std::vector<std::string>> compressors;  // compressors
    std::optional<std::int32_t> zlib_compression_level;   // zlibCompressionLevel, -1 to 9

    // TLS. tls and ssl are aliases; every occurrence of either must carry the same value.
    std::optional<bool> tls;
    std::optional<std::string> tls_ca_file;                        // tlsCAFile
    std::optional<std::string> tls_certificate_key_file;           // tlsCertificateKeyFile
    std::optional<std::string> tls_certificate_key_file_password;  // secret: masked by redacted()
    std::optional<bool> tls_allow_invalid_certificates;            // tlsAllowInvalidCertificates
    std::optional<bool> tls_allow_invalid_hostnames;               // tlsAllowInvalidHostnames
    // tlsInsecure: relax every check the options above and below relax. It excludes all four of them.
    std::optional<bool> tls_insecure;
    std::optional<bool> tls_disable_ocsp_endpoint_check;           // tlsDisableOCSPEndpointCheck
    std::optional<bool> tls_disable_certificate_revocation_check;  // tlsDisableCertificateRevocationCheck

    // mongodb+srv:// only.
    std::optional<std::string> srv_service_name;  // srvServiceName
    std::optional<std::int32_t> srv_max_hosts;    // srvMaxHosts; 0: no limit

    // SOCKS5 proxy. The other three need proxyHost; username and password come together.
    std::optional<std::string> proxy_host;      // proxyHost
    std::optional<std::uint16_t> proxy_port;    // proxyPort; the default is 1080
    std::optional<std::string> proxy_username;  // proxyUsername
    std::optional<std::string> proxy_password;  // secret: masked by redacted()

    // Authentication options as written; uri::credentials() holds the credential they make up, with defaults.
    std::optional<std::string> auth_source;                  // authSource
    std::optional<std::string> auth_mechanism;               // authMechanism, a known mechanism
    std::optional<key_value_map> auth_mechanism_properties;  // keys upper-cased
};

// The credential the URI configures (Authentication spec, "MongoCredential"), with the spec's defaults
// applied and its per-mechanism rules checked.
struct credential {
    std::optional<std::string> username;  // absent only where the mechanism allows (X509, AWS, OIDC)
    std::optional<std::string> password;
    // authSource; else $external for GSSAPI, MONGODB-X509, MONGODB-AWS and MONGODB-OIDC; else the URI's
    // database; else admin (SCRAM) or $external (PLAIN).
    std::string source;
    // Empty: not named in the URI, so the handshake negotiates SCRAM-SHA-256 or SCRAM-SHA-1.
    std::optional<std::string> mechanism;
    // Keys upper-cased; GSSAPI gets SERVICE_NAME "mongodb" by default.
    key_value_map mechanism_properties;
};

// The connection string with its password and the values of secret options (proxyPassword,
// tlsCertificateKeyFilePassword) replaced by ***, for logs, messages and output. Works on any text, parsable
// or not, so that a typo never leaks a password. Where the password ends is certain only when no '@' follows
// the host list; otherwise (an unescaped '/' or '?' in the password, but also an '@' in an option value)
// everything up to the last '@' is masked: "mongodb://u:k3/x=@db/app" shows as "mongodb://***@db/app". Text
// that does not begin with mongodb:// or mongodb+srv:// is not shown at all.
[[nodiscard]] std::string redact_uri(std::string_view connection_string);

class uri {
public:
    // Throws gridflow::error (errc::invalid_uri) naming the problem.
    [[nodiscard]] static uri parse(std::string_view text);

    [[nodiscard]] bool is_srv() const noexcept { return srv_; }
    // In the order written; never empty. One hostname for mongodb+srv://.
    [[nodiscard]] const std::vector<uri_host>& hosts() const noexcept { return hosts_; }
    // The database of the path, percent-decoded; may be dotted (db.collection).
    [[nodiscard]] const std::optional<std::string>& database() const noexcept { return database_; }
    // Present when the URI has user information ("@") or an authMechanism. A database or authSource alone
    // does not ask for authentication.
    [[nodiscard]] const std::optional<credential>& credentials() const noexcept { return credential_; }
    [[nodiscard]] const uri_options& options() const noexcept { return options_; }
    // Every option written, typed or not: lower-cased key -> percent-decoded value (the last one when a key
    // is repeated). The place to look for options uri_options does not model.
    [[nodiscard]] const std::map<std::string, std::string, std::less<>>& raw_options() const noexcept {
        return raw_options_;
    }
    // What the specs say to warn about: unknown options, ignored values, repeated keys.
    [[nodiscard]] const std::vector<std::string>& warnings() const noexcept { return warnings_; }
    // The URI as written with the password and the values of secret options (proxyPassword,
    // tlsCertificateKeyFilePassword) replaced by ***, as redact_uri() shows it: safe for logs and error
    // messages.
    [[nodiscard]] const std::string& redacted() const noexcept { return redacted_; }

    // tls (or ssl) when given, else true for mongodb+srv:// and false otherwise, as the specs default it.
    [[nodiscard]] bool tls_enabled() const noexcept { return options_.tls.value_or(srv_); }

private:
    uri() = default;

    bool srv_ = false;
    std::vector<uri_host> hosts_;
    std::optional<std::string> database_;
    std::optional<credential> credential_;
    uri_options options_;
    std::map<std::string, std::string, std::less<>> raw_options_;
    std::vector<std::string> warnings_;
    std::string redacted_;
};

}  // namespace gridflow::wire
