// wire::uri beyond the spec tests (tests/spec/connection_string.cpp and friends): redaction, secrecy of
// passwords in errors, defaults, typed accessors and the validation rules the spec files do not exercise.
#define BOOST_TEST_MODULE unit_wire_uri
#include <boost/test/unit_test.hpp>

#include <gridflow/wire/error.hpp>
#include <gridflow/wire/uri.hpp>

#include <string>
#include <string_view>
#include <vector>

using namespace gridflow;
using wire::uri;

namespace {

// The message of the invalid_uri error that parsing text raises.
std::string parse_error(std::string_view text) {
    try {
        static_cast<void>(uri::parse(text));
    } catch (const gridflow::error& e) {
        BOOST_TEST((e.code() == errc::invalid_uri), text);
        BOOST_TEST((e.kind() == error_kind::usage), text);
        return e.what();
    }
    BOOST_ERROR("parsed, but should be refused: " << text);
    return {};
}

bool contains(std::string_view haystack, std::string_view needle) {
    return haystack.find(needle) != std::string_view::npos;
}

// A URI whose password (or a piece that may be one) has an awkward shape, how redact_uri shows it, and
// pieces of the password that no output may contain.
struct password_shape {
    std::string_view text;
    std::string_view redacted;
    std::vector<std::string_view> secrets;
};

const std::vector<password_shape>& password_shapes() {
    static const std::vector<password_shape> shapes{
        // Issue 22: a base64 password with '/' and '=' (the '=' made the '@' look like part of an option
        // value), and more unescaped '/' and '?' in user information: the password may run to the last '@'.
        {"mongodb://app:k3/Jd9x=@db.example:27017/app",
         "mongodb://***@db.example:27017/app",
         {"k3/", "Jd9x"}},
        {"mongodb://app:k3?Jd9x=@db.example/app", "mongodb://***@db.example/app", {"k3?", "Jd9x"}},
        {"mongodb+srv://app:k3/Jd9x=@cluster0.example.com/app",
         "mongodb+srv://***@cluster0.example.com/app",
         {"k3/", "Jd9x"}},
        {"mongodb://:k3/Jd9x=@db.example/app", "mongodb://***@db.example/app", {"k3/", "Jd9x"}},
        {"mongodb://ap/p:k3Jd9x@db.example", "mongodb://***@db.example", {"k3Jd9x"}},
        {"mongodb://app:k3:J/d9x@db.example", "mongodb://***@db.example", {"k3:", "d9x"}},
        // The spec reads these '@' as part of an option value, and hosts, options and warnings would quote
        // pieces of the password: the port "Zq8", the unknown option "Jd9xZq8".
        {"mongodb://app:Zq8/?replicaSet=Jd9x@db.example/?w=1",
         "mongodb://***@db.example/?w=1",
         {"Zq8", "Jd9x"}},
        {"mongodb://app:27017/?appName=Jd9x@db.example", "mongodb://***@db.example", {"27017", "Jd9x"}},
        {"mongodb://app:27017/?Jd9xZq8=v@db.example", "mongodb://***@db.example", {"27017", "Jd9x"}},
        {"mongodb://app:Zq8/?w=1@db.example&proxyPassword=Jd9x",
         "mongodb://***@db.example&proxyPassword=***",
         {"Zq8", "Jd9x"}},
        // An '@' in the authority and another after it: the password may run to either.
        {"mongodb://app:k3@Jd9x/z@db.example/app", "mongodb://***@db.example/app", {"k3@", "Jd9x"}},
        {"mongodb://alice:Jd9xZq8@example.com/admin?replicaset=my@replicaset",
         "mongodb://***@replicaset",
         {"Jd9x"}},
        // A secret option value holding an '@' is masked with what precedes it.
        {"mongodb://db.example/?proxyHost=p&proxyUsername=u&proxyPassword=Jd9x@Zq8",
         "mongodb://***",
         {"Jd9x", "Zq8"}},
        // No '@' follows the first '/' or '?': the last '@' ends the user information, the first ':' starts
        // the password.
        {"mongodb://app:k3#Jd9x@db.example/app", "mongodb://app:***@db.example/app", {"k3#", "Jd9x"}},
        {"mongodb://app:k3@Jd9x@db.example/app", "mongodb://app:***@db.example/app", {"k3@", "Jd9x"}},
        {"mongodb://app:k3:Jd9x@db.example", "mongodb://app:***@db.example", {"k3:", "Jd9x"}},
        {"mongodb://app:k3%2FJd9x%3D@db.example/app", "mongodb://app:***@db.example/app", {"k3%2F", "Jd9x"}},
        {"mongodb://app:k3%zzJd9x@db.example/app", "mongodb://app:***@db.example/app", {"k3%", "Jd9x"}},
        {"mongodb://:Zq8Jd9x@db.example", "mongodb://:***@db.example", {"Zq8", "Jd9x"}},
        // Without a known scheme nothing is shown: the text before "://" may be user information.
        {"mongo://app:k3/Jd9x=@db.example",
         "<hidden: not a mongodb:// or mongodb+srv:// connection string>",
         {"k3/", "Jd9x"}},
        {"app:k3/Jd9x=@db.example",
         "<hidden: not a mongodb:// or mongodb+srv:// connection string>",
         {"Jd9x"}},
    };
    return shapes;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(redaction)

BOOST_AUTO_TEST_CASE(masks_the_password_and_keeps_everything_else) {
    const auto u = uri::parse("mongodb://alice:s%3Acret@db1,db2:27018/app?replicaSet=rs0&w=majority");
    BOOST_TEST(u.redacted() == "mongodb://alice:***@db1,db2:27018/app?replicaSet=rs0&w=majority");
    BOOST_TEST(u.credentials()->password.value() == "s:cret");
}

BOOST_AUTO_TEST_CASE(leaves_a_uri_without_password_as_written) {
    BOOST_TEST(uri::parse("mongodb://localhost").redacted() == "mongodb://localhost");
    BOOST_TEST(uri::parse("mongodb://bob@localhost/?appName=x").redacted() ==
               "mongodb://bob@localhost/?appName=x");
    // An empty password is still a password: its presence is masked too.
    BOOST_TEST(uri::parse("mongodb://bob:@localhost").redacted() == "mongodb://bob:***@localhost");
}

BOOST_AUTO_TEST_CASE(masks_up_to_the_last_at_sign_when_the_password_may_run_to_it) {
    for (const auto& shape : password_shapes()) {
        const std::string shown = wire::redact_uri(shape.text);
        BOOST_TEST(shown == shape.redacted, shape.text);
        for (const auto secret : shape.secrets)
            BOOST_TEST(!contains(shown, secret), shape.text << " -> " << shown);
    }
}

BOOST_AUTO_TEST_CASE(masks_secret_option_values) {
    const auto u = uri::parse(
        "mongodb+srv://cluster.example.com/?tlsCertificateKeyFilePassword=k3y&PROXYHOST=p&proxyUsername=u&"
        "proxyPassword=pr0xy&tlsCAFile=ca.pem");
    BOOST_TEST(
        u.redacted() ==
        "mongodb+srv://cluster.example.com/?tlsCertificateKeyFilePassword=***&PROXYHOST=p&proxyUsername=u&"
        "proxyPassword=***&tlsCAFile=ca.pem");
    // The typed options still carry the secrets for the layers that need them.
    BOOST_TEST(u.options().tls_certificate_key_file_password.value() == "k3y");
    BOOST_TEST(u.options().proxy_password.value() == "pr0xy");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(errors)

BOOST_AUTO_TEST_CASE(never_contain_the_password) {
    // Each is invalid; the password (or what would be one) must not appear in the message.
    for (const std::string_view text : {
             "mongodb://alice:Hunter2Secret@localhost:foo",
             "mongodb://alice:Hunter2Secret@localhost:0/db",
             "mongodb://alice:Hunter2Secret@bad host",
             "mongodb://alice:Hunter2Secret@localhost/bad$db",
             "mongodb://alice:Hunter2Secret@localhost/?tlsInsecure=true&tlsAllowInvalidHostnames=true",
             "mongodb://alice:Hunter2Secret@a,b/?directConnection=true",
             "mongodb://alice:Hunter2Secret@localhost/?authMechanism=MONGODB-X509",
             "mongodb://alice:Hunter2Secret@localhost/?authMechanism=NOPE",
             "mongodb://alice:Hunter2Secret@localhost/?w",
             "mongo://alice:Hunter2Secret@localhost",
             "alice:Hunter2Secret@localhost",
             "mongodb://alice:Hunter2/Secret@localhost",          // unescaped '/' in the password
             "mongodb://alice:Hunter2?Secret@localhost",          // unescaped '?' in the password
             "mongodb://alice:Hunter2@Secret@localhost",          // unescaped '@'
             "mongodb://alice:Hunter2:Secret@localhost",          // unescaped ':'
             "mongodb://alice:Hunter2%Secret@localhost",          // '%' that is no escape
             "mongodb://alice:Hunter2 Secret@localhost",          // a character that must be escaped
             "mongodb://localhost/?proxyPassword=Hunter2Secret",  // proxyPassword without proxyHost
             "mongodb://localhost/?proxyHost=p&proxyPassword=Hunter2Secret",
         }) {
        const auto message = parse_error(text);
        BOOST_TEST(!contains(message, "Hunter2"), text << " -> " << message);
        BOOST_TEST(!contains(message, "Secret"), text << " -> " << message);
    }
}

BOOST_AUTO_TEST_CASE(never_contain_a_password_of_any_shape) {
    // The URIs the spec accepts must still parse; every output then shows the URI only as redact_uri does.
    for (const auto& shape : password_shapes()) {
        std::vector<std::string> outputs;
        try {
            const auto u = uri::parse(shape.text);
            BOOST_TEST(u.redacted() == shape.redacted, shape.text);
            outputs = u.warnings();
            outputs.push_back(u.redacted());
        } catch (const gridflow::error& e) {
            BOOST_TEST((e.code() == errc::invalid_uri), shape.text);
            outputs.emplace_back(e.what());
            if (shape.redacted.starts_with("mongodb"))
                BOOST_TEST(contains(e.what(), "'" + std::string(shape.redacted) + "'"), e.what());
        }
        for (const auto& output : outputs) {
            for (const auto secret : shape.secrets)
                BOOST_TEST(!contains(output, secret), shape.text << " -> " << output);
        }
    }
    BOOST_TEST(uri::parse("mongodb://app:27017/?appName=Jd9x@db.example").options().app_name.value() ==
               "Jd9x@db.example");
    const auto spec = uri::parse("mongodb://alice:Jd9xZq8@example.com/admin?replicaset=my@replicaset");
    BOOST_TEST(spec.credentials()->password.value() == "Jd9xZq8");
    BOOST_TEST(spec.options().replica_set.value() == "my@replicaset");
    // A piece of the URI that a message would quote is masked, and the message says why.
    const auto masked = parse_error("mongodb://app:Zq8/?replicaSet=Jd9x@db.example/?w=1");
    BOOST_TEST(contains(masked, "the port of host '***'"), masked);
    BOOST_TEST(contains(masked, "may end a password"), masked);
    BOOST_TEST(contains(parse_error("mongodb://app:k3/Jd9x=@db.example:27017/app"), "unescaped '/'"));
}

BOOST_AUTO_TEST_CASE(show_the_redacted_uri_and_name_the_problem) {
    const auto message = parse_error("mongodb://alice:pw@localhost:foo");
    BOOST_TEST(contains(message, "'mongodb://alice:***@localhost:foo'"), message);
    BOOST_TEST(contains(message, "port of host 'localhost:foo'"), message);

    BOOST_TEST(contains(parse_error(""), "empty"));
    BOOST_TEST(contains(parse_error("http://x"), "mongodb://"));
    BOOST_TEST(contains(parse_error("mongodb:///tmp/mongodb-27017.sock"), "percent-encoded"));
    BOOST_TEST(contains(parse_error("mongodb://::1"), "brackets"));
    BOOST_TEST(contains(parse_error("mongodb://[::1"), "']'"));
    BOOST_TEST(contains(parse_error("mongodb://[nonsense]"), "not an IPv6 address"));
    BOOST_TEST(contains(parse_error("mongodb://%2Ftmp%2Fmongodb.socket"), ".sock"));
    BOOST_TEST(contains(parse_error("mongodb://%2Ftmp%2Fm.sock:27017"), "takes no port"));
    BOOST_TEST(contains(parse_error("mongodb://a,,b"), "empty entry"));
    BOOST_TEST(contains(parse_error("mongodb://a/db/coll"), "'/'"));
    BOOST_TEST(contains(parse_error("mongodb://a/?authSource="), "authSource"));
    BOOST_TEST(contains(parse_error("mongodb://a/?tls=true&ssl=false"), "same value"));
    BOOST_TEST(contains(parse_error("mongodb://a/?authMechanism=MONGODB-CR"), "SCRAM-SHA-256"));
}

BOOST_AUTO_TEST_CASE(srv_rules) {
    BOOST_TEST(contains(parse_error("mongodb+srv://a.example.com:27017"), "no port"));
    BOOST_TEST(contains(parse_error("mongodb+srv://a.example.com,b.example.com"), "exactly one"));
    BOOST_TEST(contains(parse_error("mongodb+srv://127.0.0.1"), "DNS host name"));
    BOOST_TEST(contains(parse_error("mongodb+srv://a.example.com/?directConnection=true"), "mongodb+srv"));
    BOOST_TEST(contains(parse_error("mongodb://a/?srvServiceName=x"), "mongodb+srv"));
}

BOOST_AUTO_TEST_CASE(cross_option_rules) {
    BOOST_TEST(contains(parse_error("mongodb://a/?minPoolSize=10&maxPoolSize=5"), "exceeds maxPoolSize"));
    BOOST_TEST(contains(parse_error("mongodb://a/?readPreferenceTags=dc:ny"), "primary"));
    BOOST_TEST(
        contains(parse_error("mongodb://a/?readPreference=primary&maxStalenessSeconds=120"), "primary"));
    BOOST_TEST(contains(parse_error("mongodb://a/?proxyHost=p&proxyUsername=u"), "together"));
    BOOST_TEST(contains(parse_error("mongodb://a/?authMechanism=SCRAM-SHA-256"), "user name"));
    BOOST_TEST(contains(parse_error("mongodb://u@a/?authMechanism=SCRAM-SHA-256"), "password"));
    BOOST_TEST(
        contains(parse_error("mongodb://u:p@a/?authMechanismProperties=SERVICE_NAME:x"), "does not apply"));
    // maxPoolSize=0 means no limit, so any minPoolSize fits.
    BOOST_TEST(uri::parse("mongodb://a/?minPoolSize=10&maxPoolSize=0").options().min_pool_size.value() == 10);
    // Tags and staleness are fine with a mode other than primary, and an empty tag set is fine with primary.
    BOOST_TEST(
        uri::parse("mongodb://a/?readPreference=nearest&readPreferenceTags=dc:ny&maxStalenessSeconds=90")
            .options()
            .max_staleness_seconds.value() == 90);
    BOOST_TEST(uri::parse("mongodb://a/?readPreferenceTags=").options().read_preference_tags.size() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(defaults)

BOOST_AUTO_TEST_CASE(a_bare_uri_sets_nothing) {
    const auto u = uri::parse("mongodb://Example.COM");
    BOOST_TEST(!u.is_srv());
    BOOST_TEST(!u.tls_enabled());
    BOOST_TEST(u.warnings().empty());
    BOOST_TEST(u.raw_options().empty());
    BOOST_TEST(!u.database().has_value());
    BOOST_TEST(!u.credentials().has_value());
    BOOST_TEST_REQUIRE(u.hosts().size() == 1u);
    BOOST_TEST((u.hosts()[0].kind == wire::host_kind::hostname));
    BOOST_TEST(u.hosts()[0].host ==
               "example.com");  // host names compare case-insensitively; stored lower-case
    BOOST_TEST(u.hosts()[0].port == wire::default_port);
    const auto& o = u.options();
    BOOST_TEST(!o.tls.has_value());
    BOOST_TEST(!o.connect_timeout.has_value());
    BOOST_TEST(!o.max_pool_size.has_value());
    BOOST_TEST(!o.w.has_value());
    BOOST_TEST(!o.read_preference.has_value());
    BOOST_TEST(o.read_preference_tags.empty());
    BOOST_TEST(!o.compressors.has_value());
    BOOST_TEST(!o.auth_source.has_value());
}

BOOST_AUTO_TEST_CASE(srv_enables_tls_unless_told_not_to) {
    const auto srv = uri::parse("mongodb+srv://cluster0.example.com/app");
    BOOST_TEST(srv.is_srv());
    BOOST_TEST(srv.tls_enabled());
    BOOST_TEST(srv.database().value() == "app");
    BOOST_TEST(!uri::parse("mongodb+srv://cluster0.example.com/?tls=false").tls_enabled());
    BOOST_TEST(uri::parse("mongodb://a/?ssl=true").tls_enabled());
}

BOOST_AUTO_TEST_CASE(credential_sources_follow_the_mechanism) {
    BOOST_TEST(uri::parse("mongodb://u:p@a").credentials()->source == "admin");
    BOOST_TEST(uri::parse("mongodb://u:p@a/app").credentials()->source == "app");
    BOOST_TEST(uri::parse("mongodb://u:p@a/app?authSource=other").credentials()->source == "other");
    BOOST_TEST(uri::parse("mongodb://u:p@a/?authMechanism=PLAIN").credentials()->source == "$external");
    BOOST_TEST(uri::parse("mongodb://a/?authMechanism=MONGODB-X509").credentials()->source == "$external");
    const auto gssapi = uri::parse("mongodb://u%40REALM@a/?authMechanism=GSSAPI").credentials().value();
    BOOST_TEST(gssapi.mechanism_properties.at("SERVICE_NAME") == "mongodb");
    BOOST_TEST(gssapi.username.value() == "u@REALM");
    // The default mechanism is negotiated, so it stays unset.
    BOOST_TEST(!uri::parse("mongodb://u:p@a").credentials()->mechanism.has_value());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(typed_options)

BOOST_AUTO_TEST_CASE(values_are_decoded_and_typed) {
    const auto u = uri::parse(
        "mongodb://a/?connectTimeoutMS=2500&wTimeoutMS=5000000000&w=2&readPreference=secondaryPreferred&"
        "readPreferenceTags=dc:ny,rack:1&readPreferenceTags=&appName=my%20app&compressors=zstd,lz4,zlib&"
        "serverMonitoringMode=poll&journal=true&maxPoolSize=20&proxyHost=p&proxyPort=1081");
    const auto& o = u.options();
    BOOST_TEST(o.connect_timeout.value().count() == 2500);
    BOOST_TEST(o.w_timeout.value().count() == 5'000'000'000);  // wTimeoutMS is 64-bit
    BOOST_TEST(std::get<std::int32_t>(o.w.value()) == 2);
    BOOST_TEST((o.read_preference.value() == wire::read_mode::secondary_preferred));
    BOOST_TEST(wire::to_string(*o.read_preference) == "secondaryPreferred");
    BOOST_TEST_REQUIRE(o.read_preference_tags.size() == 2u);
    BOOST_TEST(o.read_preference_tags[0].at("rack") == "1");
    BOOST_TEST(o.read_preference_tags[1].empty());
    BOOST_TEST(o.app_name.value() == "my app");
    // lz4 is not a MongoDB compressor: dropped with a warning, the order of the others kept.
    BOOST_TEST((o.compressors.value() == std::vector<std::string>{"zstd", "zlib"}));
    BOOST_TEST(u.warnings().size() == 1u);
    BOOST_TEST((o.server_monitoring.value() == wire::server_monitoring_mode::poll));
    BOOST_TEST(o.journal.value());
    BOOST_TEST(o.max_pool_size.value() == 20);
    BOOST_TEST(o.proxy_port.value() == 1081);
    BOOST_TEST(std::get<std::string>(uri::parse("mongodb://a/?w=majority").options().w.value()) ==
               "majority");
}

BOOST_AUTO_TEST_CASE(raw_options_keep_every_key_lower_cased) {
    const auto u = uri::parse("mongodb://a/?AppName=x&fooBar=1&fooBar=2&tls%49nsecure=true");
    BOOST_TEST(u.raw_options().at("appname") == "x");
    BOOST_TEST(u.raw_options().at("foobar") == "2");
    BOOST_TEST(u.raw_options().at("tlsinsecure") == "true");  // keys are percent-decoded too
    BOOST_TEST(u.options().tls_insecure.value());
    BOOST_TEST(u.warnings().size() == 2u);  // fooBar is unknown, twice
}

BOOST_AUTO_TEST_CASE(invalid_values_are_ignored_with_a_warning) {
    const auto u = uri::parse(
        "mongodb://a/?journal=1&maxPoolSize=-1&heartbeatFrequencyMS=499&retryWrites=false"
        "&retryWrites=TRUE");
    BOOST_TEST(!u.options().journal.has_value());  // only "true" and "false" are booleans
    BOOST_TEST(!u.options().max_pool_size.has_value());
    BOOST_TEST(!u.options().heartbeat_frequency.has_value());
    BOOST_TEST(u.options().retry_writes.value() == false);  // the repeat is invalid, so the valid value stays
    BOOST_TEST(u.warnings().size() == 5u);
    // A stray '&' separates nothing and is not an error.
    const auto stray = uri::parse("mongodb://a/?&appName=x&&");
    BOOST_TEST(stray.options().app_name.value() == "x");
    BOOST_TEST(stray.warnings().empty());
}

BOOST_AUTO_TEST_CASE(hosts_of_every_kind) {
    const auto u =
        uri::parse("mongodb://db.example.com:27018,10.0.0.1,[::1]:27019,%2Ftmp%2Fmongodb-27017.sock");
    BOOST_TEST_REQUIRE(u.hosts().size() == 4u);
    BOOST_TEST((u.hosts()[1].kind == wire::host_kind::ipv4));
    BOOST_TEST((u.hosts()[2].kind == wire::host_kind::ip_literal));
    BOOST_TEST((u.hosts()[3].kind == wire::host_kind::unix_socket));
    BOOST_TEST(u.hosts()[0].to_string() == "db.example.com:27018");
    BOOST_TEST(u.hosts()[1].to_string() == "10.0.0.1:27017");
    BOOST_TEST(u.hosts()[2].to_string() == "[::1]:27019");
    BOOST_TEST(u.hosts()[3].to_string() == "/tmp/mongodb-27017.sock");
    BOOST_TEST(u.hosts()[3].port == 0);
}

BOOST_AUTO_TEST_CASE(auth_mechanism_properties_without_credentials_warn) {
    const auto u = uri::parse("mongodb://a/?authMechanismProperties=SERVICE_NAME:x");
    BOOST_TEST(!u.credentials().has_value());
    BOOST_TEST(u.warnings().size() == 1u);
    // Property names are case-insensitive; they are stored upper-cased.
    const auto gssapi =
        uri::parse("mongodb://u@a/?authMechanism=GSSAPI&authMechanismProperties=service_name:other");
    BOOST_TEST(gssapi.credentials()->mechanism_properties.at("SERVICE_NAME") == "other");
}

BOOST_AUTO_TEST_SUITE_END()
