// The command line: mongofiles' commands and options (spelled as mongofiles spells them) plus gridflow's own.
//
//   gridflow [options] <command> [arguments]      options may also follow the command, as with mongofiles
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace gridflow::cli {

// The command line cannot be understood: exit status 2.
class usage_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct settings {
    std::string command;
    std::vector<std::string> arguments;

    // Where: --uri, or --host/--port, else $MONGODB_URI, else mongodb://localhost:27017.
    std::optional<std::string> uri;
    std::optional<std::string> host;
    std::optional<std::uint16_t> port;
    std::optional<std::string> db;
    std::string prefix = "fs";

    // TLS and authentication, as mongofiles spells them; each maps to the URI option of the same meaning.
    bool ssl = false;                                       // --ssl: tls=true
    std::optional<std::string> ssl_ca_file;                 // --sslCAFile: tlsCAFile
    std::optional<std::string> ssl_pem_key_file;            // --sslPEMKeyFile: tlsCertificateKeyFile
    std::optional<std::string> ssl_pem_key_password;        // --sslPEMKeyPassword
    bool ssl_allow_invalid_certificates = false;            // --sslAllowInvalidCertificates
    bool ssl_allow_invalid_hostnames = false;               // --sslAllowInvalidHostnames
    std::optional<std::string> username;                    // --username/-u
    std::optional<std::string> password;                    // --password/-p
    std::optional<std::string> authentication_database;     // --authenticationDatabase: authSource
    std::optional<std::string> authentication_mechanism;    // --authenticationMechanism: authMechanism

    std::optional<std::string> local;         // --local/-l; "-" is stdin or stdout
    std::optional<std::string> content_type;  // --type/-t, stored as metadata.contentType
    bool replace = false;                     // --replace/-r
    std::optional<std::string> write_concern;
    std::optional<std::string> read_preference;
    std::string regex_options;

    bool quiet = false;
    int verbosity = 0;

    // gridflow's own.
    bool json = false;                    // list, search, stat
    bool repair = false;                  // fsck
    std::optional<std::string> stat_id;   // stat --id
    bool allow_unsafe_traversal = false;  // get, get_id, get_regex
    std::size_t jobs = 1;
    std::optional<std::size_t> window;
    std::optional<std::int32_t> chunk_size;

    bool help = false;
    bool version = false;
};

// Parses argv and checks each command's arguments and the options it accepts; throws usage_error with a
// message fit for one stderr line.
[[nodiscard]] settings parse_command_line(int argc, char** argv);

[[nodiscard]] std::string usage_text();

}  // namespace gridflow::cli
