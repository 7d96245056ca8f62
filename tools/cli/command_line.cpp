#include "command_line.hpp"

#include <getopt.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <string_view>

namespace gridflow::cli {

namespace {

// Long options without a short form get codes above the char range.
enum option_code : int {
    opt_uri = 256,
    opt_port,
    opt_prefix,
    opt_write_concern,
    opt_read_preference,
    opt_regex_options,
    opt_quiet,
    opt_json,
    opt_repair,
    opt_id,
    opt_allow_unsafe_traversal,
    opt_window,
    opt_chunk_size,
    opt_help,
    opt_version,
    opt_ssl,
    opt_ssl_ca_file,
    opt_ssl_pem_key_file,
    opt_ssl_pem_key_password,
    opt_ssl_allow_invalid_certificates,
    opt_ssl_allow_invalid_hostnames,
    opt_authentication_database,
    opt_authentication_mechanism,
};

const std::array<option, 32> long_options{{
    {"uri", required_argument, nullptr, opt_uri},
    {"host", required_argument, nullptr, 'h'},
    {"port", required_argument, nullptr, opt_port},
    {"db", required_argument, nullptr, 'd'},
    {"prefix", required_argument, nullptr, opt_prefix},
    {"local", required_argument, nullptr, 'l'},
    {"type", required_argument, nullptr, 't'},
    {"replace", no_argument, nullptr, 'r'},
    {"writeConcern", required_argument, nullptr, opt_write_concern},
    {"readPreference", required_argument, nullptr, opt_read_preference},
    {"regexOptions", required_argument, nullptr, opt_regex_options},
    {"quiet", no_argument, nullptr, opt_quiet},
    {"verbose", optional_argument, nullptr, 'v'},
    {"json", no_argument, nullptr, opt_json},
    {"repair", no_argument, nullptr, opt_repair},
    {"id", required_argument, nullptr, opt_id},
    {"allowUnsafeTraversal", no_argument, nullptr, opt_allow_unsafe_traversal},
    {"jobs", required_argument, nullptr, 'j'},
    {"window", required_argument, nullptr, opt_window},
    {"chunk-size", required_argument, nullptr, opt_chunk_size},
    {"ssl", no_argument, nullptr, opt_ssl},
    {"sslCAFile", required_argument, nullptr, opt_ssl_ca_file},
    {"sslPEMKeyFile", required_argument, nullptr, opt_ssl_pem_key_file},
    {"sslPEMKeyPassword", required_argument, nullptr, opt_ssl_pem_key_password},
    {"sslAllowInvalidCertificates", no_argument, nullptr, opt_ssl_allow_invalid_certificates},
    {"sslAllowInvalidHostnames", no_argument, nullptr, opt_ssl_allow_invalid_hostnames},
    {"username", required_argument, nullptr, 'u'},
    {"password", required_argument, nullptr, 'p'},
    {"authenticationDatabase", required_argument, nullptr, opt_authentication_database},
    {"authenticationMechanism", required_argument, nullptr, opt_authentication_mechanism},
    {"help", no_argument, nullptr, opt_help},
    {"version", no_argument, nullptr, opt_version},
}};

// The terminating entry getopt_long needs, kept apart so the table above stays a plain list.
std::vector<option> option_table() {
    std::vector<option> table(long_options.begin(), long_options.end());
    table.push_back({nullptr, 0, nullptr, 0});
    return table;
}

std::uint64_t parse_number(std::string_view text, std::string_view what, std::uint64_t min, std::uint64_t max,
                           bool sizes = false) {
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    std::string_view suffix(end, static_cast<std::size_t>(text.data() + text.size() - end));
    std::uint64_t scale = 1;
    if (sizes && (suffix == "k" || suffix == "K" || suffix == "KiB")) {
        scale = 1024;
        suffix = {};
    } else if (sizes && (suffix == "m" || suffix == "M" || suffix == "MiB")) {
        scale = 1024 * 1024;
        suffix = {};
    }
    if (ec != std::errc() || end == text.data() || !suffix.empty() || value > max / scale ||
        value * scale < min) {
        throw usage_error(std::string(what) + " must be a whole number from " + std::to_string(min) + " to " +
                          std::to_string(max) + ", got '" + std::string(text) + "'");
    }
    return value * scale;
}

struct command_rule {
    std::string_view name;
    std::size_t min_arguments;
    std::size_t max_arguments;
    std::string_view synopsis;
};

constexpr std::size_t many = static_cast<std::size_t>(-1);

constexpr std::array<command_rule, 12> commands{{
    {"list", 0, 1, "list [prefix]"},
    {"search", 1, 1, "search <substring>"},
    {"put", 1, many, "put <file>..."},
    {"put_id", 2, 2, "put_id <file> <id>"},
    {"get", 1, many, "get <name>..."},
    {"get_id", 1, 1, "get_id <id>"},
    {"get_regex", 1, 1, "get_regex <regex>"},
    {"delete", 1, many, "delete <name>..."},
    {"delete_id", 1, 1, "delete_id <id>"},
    {"cat", 1, many, "cat <name>..."},
    {"stat", 0, 1, "stat <name> | stat --id <id>"},
    {"fsck", 0, 0, "fsck [--repair]"},
}};

void check(const settings& s) {
    const auto rule = std::find_if(commands.begin(), commands.end(),
                                   [&](const command_rule& r) { return r.name == s.command; });
    if (rule == commands.end()) {
        std::string names;
        for (const auto& r : commands)
            names += (names.empty() ? "" : ", ") + std::string(r.name);
        throw usage_error("unknown command '" + s.command + "' (the commands are " + names + ")");
    }
    const std::size_t n = s.arguments.size();
    if (n < rule->min_arguments || n > rule->max_arguments)
        throw usage_error("wrong number of arguments; usage: gridflow " + std::string(rule->synopsis));

    auto only_for = [&](bool given, std::string_view option,
                        std::initializer_list<std::string_view> allowed) {
        if (given && std::find(allowed.begin(), allowed.end(), s.command) == allowed.end())
            throw usage_error(std::string(option) + " does not apply to " + s.command);
    };
    only_for(s.json, "--json", {"list", "search", "stat"});
    only_for(s.repair, "--repair", {"fsck"});
    only_for(s.stat_id.has_value(), "--id", {"stat"});

    if (s.local && n > 1 && (s.command == "put" || s.command == "get"))
        throw usage_error("--local names one local file, but " + std::to_string(n) + " files were given");
    if (s.local && s.command == "get_regex")
        throw usage_error("--local does not apply to get_regex: each file is written under its own name");
    if (s.command == "put" && !s.local &&
        std::find(s.arguments.begin(), s.arguments.end(), "-") != s.arguments.end())
        throw usage_error("reading stdin needs a GridFS name: gridflow put <name> --local -");
    if (s.command == "stat" && (n == 1) == s.stat_id.has_value())
        throw usage_error("stat takes a file name or --id <id>, not both or neither");
    if (s.uri && (s.host || s.port))
        throw usage_error("--uri cannot be combined with --host or --port");
}

}  // namespace

settings parse_command_line(int argc, char** argv) {
    settings s;
    const std::vector<option> table = option_table();
    std::vector<std::string> positional;
    // "-": non-options come back in order as code 1, so options may precede or follow the command whatever
    // POSIXLY_CORRECT says. ":": a missing argument is reported as ':' so we can word the message ourselves.
    const char* short_options = "-:h:d:l:t:rvj:u:p:";
    opterr = 0;
    optind = 1;
    for (;;) {
        int index = -1;
        const int c = getopt_long(argc, argv, short_options, table.data(), &index);
        if (c == -1)
            break;
        const std::string_view arg = optarg != nullptr ? optarg : "";
        switch (c) {
            case 1:
                positional.emplace_back(arg);
                break;
            case opt_uri:
                s.uri = arg;
                break;
            case 'h':
                s.host = arg;
                break;
            case opt_port:
                s.port = static_cast<std::uint16_t>(parse_number(arg, "--port", 1, 65535));
                break;
            case 'd':
                s.db = arg;
                break;
            case opt_prefix:
                if (arg.empty())
                    throw usage_error("--prefix must not be empty");
                s.prefix = arg;
                break;
            case 'l':
                s.local = arg;
                break;
            case 't':
                s.content_type = arg;
                break;
            case 'r':
                s.replace = true;
                break;
            case opt_write_concern:
                s.write_concern = arg;
                break;
            case opt_read_preference:
                s.read_preference = arg;
                break;
            case opt_regex_options:
                s.regex_options = arg;
                break;
            case opt_quiet:
                s.quiet = true;
                break;
            case 'v':
                s.verbosity += optarg != nullptr ? static_cast<int>(parse_number(arg, "--verbose", 0, 5)) : 1;
                break;
            case opt_json:
                s.json = true;
                break;
            case opt_repair:
                s.repair = true;
                break;
            case opt_id:
                s.stat_id = arg;
                break;
            case opt_allow_unsafe_traversal:
                s.allow_unsafe_traversal = true;
                break;
            case 'j':
                s.jobs = parse_number(arg, "--jobs", 1, 64);
                break;
            case opt_window:
                s.window = parse_number(arg, "--window", 1, 256);
                break;
            case opt_chunk_size:
                // A chunk document must fit in 16 MiB of BSON with its _id, files_id and n.
                s.chunk_size =
                    static_cast<std::int32_t>(parse_number(arg, "--chunk-size", 1, 15 * 1024 * 1024, true));
                break;
            case opt_ssl:
                s.ssl = true;
                break;
            case opt_ssl_ca_file:
                s.ssl_ca_file = arg;
                break;
            case opt_ssl_pem_key_file:
                s.ssl_pem_key_file = arg;
                break;
            case opt_ssl_pem_key_password:
                s.ssl_pem_key_password = arg;
                break;
            case opt_ssl_allow_invalid_certificates:
                s.ssl_allow_invalid_certificates = true;
                break;
            case opt_ssl_allow_invalid_hostnames:
                s.ssl_allow_invalid_hostnames = true;
                break;
            case 'u':
                s.username = arg;
                break;
            case 'p':
                s.password = arg;
                break;
            case opt_authentication_database:
                s.authentication_database = arg;
                break;
            case opt_authentication_mechanism:
                s.authentication_mechanism = arg;
                break;
            case opt_help:
                s.help = true;
                break;
            case opt_version:
                s.version = true;
                break;
            case ':':
                // "gridflow -h" alone: mongofiles spells --host -h, but a lone -h is a plea for help.
                if (optopt == 'h') {
                    s.help = true;
                    break;
                }
                throw usage_error(std::string("option ") + argv[optind - 1] + " needs a value");
            default:
                if (optopt != 0)
                    throw usage_error(std::string("unknown option -") + static_cast<char>(optopt));
                throw usage_error(std::string("unknown option ") + argv[optind - 1]);
        }
    }
    // Whatever follows "--" is positional.
    for (int i = optind; i < argc; ++i)
        positional.emplace_back(argv[i]);
    if (s.help || s.version)
        return s;
    if (positional.empty())
        throw usage_error("no command given (try gridflow --help)");
    s.command = positional.front();
    s.arguments.assign(positional.begin() + 1, positional.end());
    check(s);
    return s;
}

std::string usage_text() {
    return R"(usage: gridflow [options] <command> [arguments]

Stores and fetches files in MongoDB GridFS; a drop-in for mongofiles.

commands:
  list [prefix]           files whose name starts with prefix: "name<TAB>length" per line
  search <substring>      files whose name contains substring
  put <file>...           upload local files under their names (--local: read that file instead)
  put_id <file> <id>      upload with the given _id (Extended JSON: '{"$oid":"..."}', 42, '"text"')
  get <name>...           download the newest revision of each name (--local: write there instead)
  get_id <id>             download the file with that _id
  get_regex <regex>       download every file whose name matches (--regexOptions, e.g. i)
  delete <name>...        delete every revision of each name
  delete_id <id>          delete the file with that _id
  cat <name>...           write files to stdout
  stat <name>|--id <id>   show the files document (--json: one line of Extended JSON)
  fsck [--repair]         find files with missing, short or extra chunks and orphan chunks;
                          --repair deletes orphan chunks only (never run it while uploads are in progress:
                          an unfinished upload's chunks look exactly like orphans)

connection (mongofiles spelling):
  --uri <uri>             connection string (default $MONGODB_URI, else mongodb://localhost:27017);
                          connectTimeoutMS defaults to 5000 (or serverSelectionTimeoutMS when given)
  -h, --host <host>       server host (also set/host1,host2 form), instead of --uri
  --port <port>           server port
  -d, --db <name>         database (default: the URI's, else test)
  --prefix <bucket>       GridFS bucket name (default fs)
  --writeConcern <wc>     majority, a number, or a document such as '{"w": 1, "j": true}'
  --readPreference <rp>   primary, primaryPreferred, secondary, secondaryPreferred, nearest,
                          or a document such as '{"mode": "nearest"}'

security (mongofiles spelling; the same as the URI's tls* and auth options):
  --ssl                         connect with TLS (tls=true)
  --sslCAFile <file>            CA certificates to trust (tlsCAFile; default: the system store)
  --sslPEMKeyFile <file>        client certificate and key (tlsCertificateKeyFile)
  --sslPEMKeyPassword <pw>      password of that key (tlsCertificateKeyFilePassword)
  --sslAllowInvalidCertificates, --sslAllowInvalidHostnames
  -u, --username <user>         user to authenticate as (--password is then required)
  -p, --password <pw>           never printed: URIs in messages have it masked
  --authenticationDatabase <db> authSource (default: the URI's database, else admin)
  --authenticationMechanism <m> SCRAM-SHA-256, SCRAM-SHA-1 or MONGODB-X509 (default: negotiated)

files:
  -l, --local <path>      local file name; - is stdin (put) or stdout (get)
  -t, --type <mime>       content type, stored as metadata.contentType
  -r, --replace           after a successful put, delete the other files of that name
  --regexOptions <flags>  options of get_regex's regular expression
  --allowUnsafeTraversal  let get write names that leave the current folder (.., absolute paths)
  -j, --jobs <n>          transfer up to n files at once (default 1)
  --window <n>            insert commands or range queries in flight per transfer (default 8)
  --chunk-size <bytes>    chunk size of new files (suffix K or M allowed; default 255K)
  --json                  machine output for list, search and stat

output:
  --quiet                 only errors on stderr; no progress bar
  -v, --verbose           more detail on stderr (repeat for more)
  --help, --version

Ctrl-C stops between blocks: a download leaves no partial file, an upload deletes the chunks it wrote
(a put reading a terminal stops at its next line; a second Ctrl-C quits at once).

exit status: 0 success, 1 an operation failed, 2 the command line is wrong, 130 interrupted.
)";
}

}  // namespace gridflow::cli
