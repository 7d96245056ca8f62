#include <gridflow/wire/error.hpp>
#include <gridflow/wire/sansio/handshake.hpp>

#include <boost/version.hpp>

#include <algorithm>

#include <sys/utsname.h>

namespace gridflow::wire::sansio {

namespace {

constexpr const char* driver_version = "0.1.0";

std::int32_t positive_int32(const bson::element& e) {
    const std::int64_t v = e.as_integer();
    if (v <= 0 || v > INT32_MAX) {
        throw error(errc::bad_reply, "hello reply field '" + std::string(e.key()) + "' out of range");
    }
    return static_cast<std::int32_t>(v);
}

// The labels of a reply or of one of its error documents (errorLabels is top-level in a reply, and inside
// writeConcernError on some server versions).
void append_labels(bson::view doc, std::vector<std::string>& labels) {
    const auto found = doc.find("errorLabels");
    if (!found || found->type() != BSON_TYPE_ARRAY)
        return;
    found->as_array().for_each([&](const bson::element& e) {
        if (e.type() != BSON_TYPE_UTF8)
            return;
        std::string label(e.as_string());
        if (std::find(labels.begin(), labels.end(), label) == labels.end())
            labels.push_back(std::move(label));
    });
}

server_error_info server_error_from(bson::view doc) {
    server_error_info info;
    // A reply without a code keeps unknown_server_error_code, so that the error_code is not falsy.
    if (auto code = doc.find("code"); code && code->is_number() && code->as_integer() != 0) {
        info.code = static_cast<int>(code->as_integer());
    }
    if (auto name = doc.find("codeName"); name && name->type() == BSON_TYPE_UTF8) {
        info.code_name = std::string(name->as_string());
    }
    if (auto msg = doc.find("errmsg"); msg && msg->type() == BSON_TYPE_UTF8) {
        info.message = std::string(msg->as_string());
    }
    return info;
}

}  // namespace

bson::document make_hello_command(const hello_options& options) {
    utsname uts{};
    const bool have_uname = ::uname(&uts) == 0;
    bson::builder b;
    b.append("hello", std::int32_t{1});
    b.append("helloOk", true);
    b.append_document("client", [&](bson::builder& client) {
        if (options.app_name) {
            client.append_document("application", [&](bson::builder& app) { app.append("name", *options.app_name); });
        }
        client.append_document("driver", [](bson::builder& driver) {
            driver.append("name", "gridflow");
            driver.append("version", driver_version);
        });
        client.append_document("os", [&](bson::builder& os) {
            os.append("type", have_uname ? uts.sysname : "unknown");
            if (have_uname) {
                os.append("name", uts.sysname);
                os.append("architecture", uts.machine);
                os.append("version", uts.release);
            }
        });
        client.append("platform", "C++20, Boost.Asio " + std::to_string(BOOST_VERSION / 100000) + "." +
                                      std::to_string(BOOST_VERSION / 100 % 1000));
    });
    if (options.sasl_supported_mechs) b.append("saslSupportedMechs", *options.sasl_supported_mechs);
    if (options.speculative_authenticate) b.append("speculativeAuthenticate", *options.speculative_authenticate);
    b.append("$db", "admin");
    return b.extract();
}

server_description parse_hello_reply(bson::view reply) {
    server_description d;
    if (auto e = reply.find("maxBsonObjectSize")) d.max_bson_object_size = positive_int32(*e);
    if (auto e = reply.find("maxMessageSizeBytes")) d.max_message_size_bytes = positive_int32(*e);
    if (auto e = reply.find("maxWriteBatchSize")) d.max_write_batch_size = positive_int32(*e);
    if (auto e = reply.find("minWireVersion")) d.min_wire_version = static_cast<std::int32_t>(e->as_integer());
    if (auto e = reply.find("maxWireVersion")) d.max_wire_version = static_cast<std::int32_t>(e->as_integer());
    if (auto e = reply.find("isWritablePrimary")) {
        d.is_writable_primary = e->truthy();
    } else if (auto legacy = reply.find("ismaster")) {
        d.is_writable_primary = legacy->truthy();
    }
    if (auto e = reply.find("secondary")) d.is_secondary = e->truthy();
    if (auto e = reply.find("setName")) d.set_name = std::string(e->as_string());
    if (auto e = reply.find("msg")) d.msg = std::string(e->as_string());
    if (auto e = reply.find("connectionId")) d.connection_id = e->as_integer();
    if (auto e = reply.find("logicalSessionTimeoutMinutes"); e && e->is_number()) {
        d.logical_session_timeout_minutes = static_cast<std::int32_t>(e->as_integer());
    }
    if (auto e = reply.find("saslSupportedMechs")) {
        e->as_array().for_each(
            [&](const bson::element& mech) { d.sasl_supported_mechs.emplace_back(mech.as_string()); });
    }
    if (d.max_wire_version < min_supported_wire_version) {
        throw error(errc::wire_version_too_old,
                    "server maxWireVersion " + std::to_string(d.max_wire_version) +
                        " is below 6: gridflow needs MongoDB 3.6 or newer");
    }
    if (d.max_bson_object_size > d.max_message_size_bytes) {
        throw error(errc::bad_reply, "hello reply: maxBsonObjectSize exceeds maxMessageSizeBytes");
    }
    return d;
}

namespace {

void check_ok(bson::view reply) {
    const auto ok = reply.find("ok");
    if (!ok) throw error(errc::bad_reply, "reply has no 'ok' field: " + reply.to_json());
    if (!ok->truthy()) {
        server_error_info info = server_error_from(reply);
        append_labels(reply, info.error_labels);
        throw error(std::move(info));
    }
}

void check_write_concern(bson::view reply) {
    if (auto wce = reply.find("writeConcernError")) {
        if (wce->type() != BSON_TYPE_DOCUMENT)
            throw error(errc::bad_reply, "writeConcernError is not a document");
        server_error_info info = server_error_from(wce->as_document());
        info.write_concern_error = true;
        append_labels(reply, info.error_labels);
        append_labels(wce->as_document(), info.error_labels);
        throw error(std::move(info));
    }
}

}  // namespace

std::vector<server_error_info> write_errors_of(bson::view reply) {
    std::vector<server_error_info> errors;
    const auto write_errors = reply.find("writeErrors");
    if (!write_errors)
        return errors;
    if (write_errors->type() != BSON_TYPE_ARRAY)
        throw error(errc::bad_reply, "writeErrors is not an array");
    write_errors->as_array().for_each([&](const bson::element& e) {
        if (e.type() != BSON_TYPE_DOCUMENT)
            throw error(errc::bad_reply, "writeErrors holds an element that is not a document");
        const bson::view we = e.as_document();
        server_error_info info = server_error_from(we);
        const auto index = we.find("index");
        info.write_error_index = index && index->is_number() ? index->as_integer() : 0;
        errors.push_back(std::move(info));
    });
    return errors;
}

void check_command_reply(bson::view reply) {
    check_ok(reply);
    auto errors = write_errors_of(reply);
    if (!errors.empty())
        throw error(std::move(errors.front()));
    check_write_concern(reply);
}

void check_command_status(bson::view reply) {
    check_ok(reply);
    check_write_concern(reply);
}

}  // namespace gridflow::wire::sansio
