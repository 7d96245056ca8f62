// The matching rules of the Unified Test Format ("Evaluating Matches", source/unified-test-format in the
// specifications repository), as far as the GridFS tests use them, for tests/spec/gridfs.cpp.
//
//   match()        expected (from the JSON) against actual (from the server or the engine): extra fields are
//                  allowed in root-level documents only, arrays have the same length, numbers (int32, int64,
//                  double) compare by value, and the special operators $$exists, $$type, $$unsetOrMatches,
//                  $$matchesEntity, $$matchesHexBytes and $$lte apply.
//   match_exact()  the rule for a test's `outcome`: documents equal except for key order (numbers by value),
//   no
//                  extra fields anywhere and no operators.
//
// Both append one line per mismatch to `problems`, naming the path of the field, so an empty list means a
// match. An operator this file does not know is a mismatch too, never silently ignored.
#pragma once

#include <gridflow/wire/bson.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gridflow::test::unified {

using problem_list = std::vector<std::string>;
// A saved BSON entity by name (for $$matchesEntity); nullopt when the map has none of that name.
using entity_lookup = std::function<std::optional<bson::element>(std::string_view name)>;

// Bytes from an even-length, case-insensitive hex string; nullopt when malformed.
inline std::optional<std::vector<std::uint8_t>> from_hex(std::string_view hex) {
    if (hex.size() % 2 != 0)
        return std::nullopt;
    const auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9')
            return c - '0';
        if (c >= 'a' && c <= 'f')
            return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
            return c - 'A' + 10;
        return -1;
    };
    std::vector<std::uint8_t> out;
    out.reserve(hex.size() / 2);
    for (std::size_t i = 0; i < hex.size(); i += 2) {
        const int hi = nibble(hex[i]);
        const int lo = nibble(hex[i + 1]);
        if (hi < 0 || lo < 0)
            return std::nullopt;
        out.push_back(static_cast<std::uint8_t>(hi * 16 + lo));
    }
    return out;
}

inline bool is_number(bson_type_t t) {
    return t == BSON_TYPE_INT32 || t == BSON_TYPE_INT64 || t == BSON_TYPE_DOUBLE;
}

// long double holds every int64 and every double exactly on the platforms we build for (x86-64: 64-bit
// mantissa), so 2^53 + 1 as int64 and as double are told apart.
inline long double number_value(const bson::element& e) {
    switch (e.type()) {
        case BSON_TYPE_INT32:
            return e.as_int32();
        case BSON_TYPE_INT64:
            return static_cast<long double>(e.as_int64());
        default:
            return e.as_double();
    }
}

inline std::string describe(const bson::element& e) {
    bson::builder b;
    b.append("v", e);
    const auto json = b.view().to_json();
    // {"v" : X } -> X, for shorter messages.
    const auto colon = json.find(':');
    return colon == std::string::npos ? json : json.substr(colon + 2, json.size() - colon - 4);
}

// The $type alias of a BSON type, as the $$type operator names them.
inline std::optional<bson_type_t> type_from_alias(std::string_view alias) {
    static const std::map<std::string_view, bson_type_t> aliases{
        {"double", BSON_TYPE_DOUBLE},
        {"string", BSON_TYPE_UTF8},
        {"object", BSON_TYPE_DOCUMENT},
        {"array", BSON_TYPE_ARRAY},
        {"binData", BSON_TYPE_BINARY},
        {"undefined", BSON_TYPE_UNDEFINED},
        {"objectId", BSON_TYPE_OID},
        {"bool", BSON_TYPE_BOOL},
        {"date", BSON_TYPE_DATE_TIME},
        {"null", BSON_TYPE_NULL},
        {"regex", BSON_TYPE_REGEX},
        {"dbPointer", BSON_TYPE_DBPOINTER},
        {"javascript", BSON_TYPE_CODE},
        {"symbol", BSON_TYPE_SYMBOL},
        {"javascriptWithScope", BSON_TYPE_CODEWSCOPE},
        {"int", BSON_TYPE_INT32},
        {"timestamp", BSON_TYPE_TIMESTAMP},
        {"long", BSON_TYPE_INT64},
        {"decimal", BSON_TYPE_DECIMAL128},
        {"minKey", BSON_TYPE_MINKEY},
        {"maxKey", BSON_TYPE_MAXKEY},
    };
    const auto found = aliases.find(alias);
    if (found == aliases.end())
        return std::nullopt;
    return found->second;
}

// The single "$$..." key of an operator document, or empty when the document is not an operator.
inline std::string_view operator_name(const bson::element& expected) {
    if (expected.type() != BSON_TYPE_DOCUMENT)
        return {};
    const auto doc = expected.as_document();
    if (doc.count_keys() != 1)
        return {};
    std::string_view name;
    doc.for_each([&](const bson::element& field) { name = field.key(); });
    return name.starts_with("$$") ? name : std::string_view{};
}

// Scalars (neither document nor array): numbers by value, everything else by type and bytes.
inline bool scalars_equal(const bson::element& expected, const bson::element& actual) {
    if (is_number(expected.type()) && is_number(actual.type()))
        return number_value(expected) == number_value(actual);
    if (expected.type() != actual.type())
        return false;
    const auto a = expected.raw_value();
    const auto b = actual.raw_value();
    return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

class matcher {
public:
    matcher(entity_lookup entities, problem_list& problems)
        : entities_(std::move(entities)), problems_(problems) {}

    // `root`: actual is a root-level document (extra fields allowed at its top level only).
    void match(const bson::element& expected, const std::optional<bson::element>& actual, bool root,
               const std::string& path) {
        if (const auto op = operator_name(expected); !op.empty()) {
            apply_operator(op, expected.as_document().at(op), actual, root, path);
            return;
        }
        if (!actual) {
            fail(path, "is missing, expected " + describe(expected));
            return;
        }
        if (expected.type() == BSON_TYPE_DOCUMENT) {
            if (actual->type() != BSON_TYPE_DOCUMENT) {
                fail(path, "is " + describe(*actual) + ", expected a document");
                return;
            }
            match_document(expected.as_document(), actual->as_document(), root, path);
            return;
        }
        if (expected.type() == BSON_TYPE_ARRAY) {
            if (actual->type() != BSON_TYPE_ARRAY) {
                fail(path, "is " + describe(*actual) + ", expected an array");
                return;
            }
            match_array(expected.as_array(), actual->as_array(), false, path);
            return;
        }
        if (!scalars_equal(expected, *actual))
            fail(path, "is " + describe(*actual) + ", expected " + describe(expected));
    }

    // An array of root-level documents, as an iterable result such as find's.
    void match_iterable(const bson::element& expected, const bson::element& actual, const std::string& path) {
        if (expected.type() != BSON_TYPE_ARRAY || actual.type() != BSON_TYPE_ARRAY) {
            match(expected, actual, false, path);
            return;
        }
        match_array(expected.as_array(), actual.as_array(), true, path);
    }

    void match_document(bson::view expected, bson::view actual, bool root, const std::string& path) {
        expected.for_each([&](const bson::element& field) {
            const std::string key(field.key());
            const auto got = actual.find(key);
            const auto op = operator_name(field);
            if (op == "$$exists") {
                const bool want = field.as_document().at(op).truthy();
                if (want != got.has_value())
                    fail(join(path, key), want ? "is missing" : "exists, expected it absent");
                return;
            }
            // $$unsetOrMatches and the other operators see an absent value themselves.
            match(field, got, false, join(path, key));
        });
        if (root)
            return;
        actual.for_each([&](const bson::element& field) {
            if (!expected.contains(field.key()))
                fail(join(path, std::string(field.key())), "is an extra field (" + describe(field) + ")");
        });
    }

private:
    static std::string join(const std::string& path, const std::string& key) {
        return path.empty() ? key : path + "." + key;
    }

    void fail(const std::string& path, const std::string& what) {
        problems_.push_back((path.empty() ? std::string("result") : path) + " " + what);
    }

    void match_array(bson::view expected, bson::view actual, bool root_elements, const std::string& path) {
        std::vector<bson::element> want;
        std::vector<bson::element> got;
        expected.for_each([&](const bson::element& e) { want.push_back(e); });
        actual.for_each([&](const bson::element& e) { got.push_back(e); });
        if (want.size() != got.size()) {
            fail(path,
                 "has " + std::to_string(got.size()) + " elements, expected " + std::to_string(want.size()));
            return;
        }
        for (std::size_t i = 0; i < want.size(); ++i)
            match(want[i], got[i], root_elements, path + "[" + std::to_string(i) + "]");
    }

    void apply_operator(std::string_view op, const bson::element& argument,
                        const std::optional<bson::element>& actual, bool root, const std::string& path) {
        if (op == "$$unsetOrMatches") {
            if (actual)
                match(argument, actual, root, path);
            return;
        }
        if (op == "$$exists") {
            // Outside a document's key loop (e.g. a whole result): only "exists" makes sense.
            if (argument.truthy() != actual.has_value())
                fail(path, actual ? "exists, expected it absent" : "is missing");
            return;
        }
        if (!actual) {
            fail(path, "is missing, expected " + std::string(op) + " " + describe(argument));
            return;
        }
        if (op == "$$type") {
            std::vector<std::string_view> names;
            if (argument.type() == BSON_TYPE_ARRAY)
                argument.as_array().for_each([&](const bson::element& e) { names.push_back(e.as_string()); });
            else
                names.push_back(argument.as_string());
            bool any = false;
            for (const auto name : names) {
                if (name == "number") {
                    any = any || is_number(actual->type()) || actual->type() == BSON_TYPE_DECIMAL128;
                    continue;
                }
                const auto type = type_from_alias(name);
                if (!type) {
                    fail(path, "uses unknown $$type " + std::string(name));
                    return;
                }
                any = any || *type == actual->type();
            }
            if (!any)
                fail(path, "is " + describe(*actual) + ", expected $$type " + describe(argument));
            return;
        }
        if (op == "$$matchesEntity") {
            const auto entity = entities_(argument.as_string());
            if (!entity) {
                fail(path, "refers to an undefined entity " + std::string(argument.as_string()));
                return;
            }
            match(*entity, actual, root, path);
            return;
        }
        if (op == "$$matchesHexBytes") {
            const auto want = from_hex(argument.as_string());
            if (!want) {
                fail(path, "has a malformed $$matchesHexBytes string");
                return;
            }
            std::span<const std::uint8_t> got;
            if (actual->type() == BSON_TYPE_BINARY) {
                got = actual->as_binary().bytes;
            } else if (actual->type() == BSON_TYPE_UTF8) {
                const auto s = actual->as_string();
                got = {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
            } else {
                fail(path, "is " + describe(*actual) + ", expected bytes");
                return;
            }
            if (!std::equal(want->begin(), want->end(), got.begin(), got.end()))
                fail(path, "bytes differ (" + std::to_string(got.size()) + " bytes, expected " +
                               std::to_string(want->size()) + ")");
            return;
        }
        if (op == "$$lte") {
            if (!is_number(actual->type()) || !is_number(argument.type()) ||
                !(number_value(*actual) <= number_value(argument)))
                fail(path, "is " + describe(*actual) + ", expected <= " + describe(argument));
            return;
        }
        fail(path, "uses the operator " + std::string(op) + ", which this runner does not support");
    }

    entity_lookup entities_;
    problem_list& problems_;
};

// The `outcome` rule: exact equality except key order; numbers by value.
inline void match_exact(const bson::element& expected, const bson::element& actual, const std::string& path,
                        problem_list& problems) {
    const auto fail = [&](const std::string& what) {
        problems.push_back((path.empty() ? "value" : path) + " " + what);
    };
    if (expected.type() == BSON_TYPE_DOCUMENT && actual.type() == BSON_TYPE_DOCUMENT) {
        const auto want = expected.as_document();
        const auto got = actual.as_document();
        want.for_each([&](const bson::element& field) {
            const std::string key(field.key());
            const auto other = got.find(key);
            if (!other)
                problems.push_back(path + (path.empty() ? "" : ".") + key + " is missing");
            else
                match_exact(field, *other, path + (path.empty() ? "" : ".") + key, problems);
        });
        got.for_each([&](const bson::element& field) {
            if (!want.contains(field.key()))
                problems.push_back(path + (path.empty() ? "" : ".") + std::string(field.key()) +
                                   " is an extra field (" + describe(field) + ")");
        });
        return;
    }
    if (expected.type() == BSON_TYPE_ARRAY && actual.type() == BSON_TYPE_ARRAY) {
        std::vector<bson::element> want;
        std::vector<bson::element> got;
        expected.as_array().for_each([&](const bson::element& e) { want.push_back(e); });
        actual.as_array().for_each([&](const bson::element& e) { got.push_back(e); });
        if (want.size() != got.size()) {
            fail("has " + std::to_string(got.size()) + " elements, expected " + std::to_string(want.size()));
            return;
        }
        for (std::size_t i = 0; i < want.size(); ++i)
            match_exact(want[i], got[i], path + "[" + std::to_string(i) + "]", problems);
        return;
    }
    if (!scalars_equal(expected, actual))
        fail("is " + describe(actual) + ", expected " + describe(expected));
}

}  // namespace gridflow::test::unified
