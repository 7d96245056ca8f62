#include <gridflow/wire/bson.hpp>
#include <gridflow/wire/error.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace gridflow::bson {

namespace {

const char* type_name(bson_type_t t) {
    switch (t) {
        case BSON_TYPE_DOUBLE: return "double";
        case BSON_TYPE_UTF8: return "string";
        case BSON_TYPE_DOCUMENT: return "document";
        case BSON_TYPE_ARRAY: return "array";
        case BSON_TYPE_BINARY: return "binary";
        case BSON_TYPE_OID: return "objectId";
        case BSON_TYPE_BOOL: return "bool";
        case BSON_TYPE_DATE_TIME: return "date";
        case BSON_TYPE_NULL: return "null";
        case BSON_TYPE_INT32: return "int32";
        case BSON_TYPE_INT64: return "int64";
        case BSON_TYPE_EOD: return "missing";
        default: return "other";
    }
}

int key_length(std::string_view key) {
    if (key.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
        throw error(errc::invalid_argument, "BSON key too long");
    }
    return static_cast<int>(key.size());
}

void check_append(bool ok, std::string_view key) {
    if (!ok) {
        throw error(errc::invalid_argument,
                    "BSON document would exceed the maximum size while appending '" + std::string(key) + "'");
    }
}

// Deeper documents are refused: libbson's validator recurses once per level, and the server itself refuses
// nesting beyond 100 (the headroom keeps any legitimate reply well inside).
constexpr std::size_t max_nesting_depth = 400;

// One level of the walk below. A wrapper, because bson_iter_t is declared 128-byte aligned but is 80 bytes long:
// a std::vector<bson_iter_t> could not keep its elements aligned.
struct walk_level {
    bson_iter_t it;
};

// Runs before bson_validate: bounds the nesting depth (so the validator's recursion is bounded too) and checks
// the UTF-8 of string values, which libbson 1.23's bson_validate lets through. Iterative, with an explicit
// stack, because the depth of hostile input is bounded only by the message size.
bool depth_and_strings_are_valid(const bson_t& doc) {
    std::vector<walk_level> stack(1);
    if (!bson_iter_init(&stack.back().it, &doc)) return false;
    while (!stack.empty()) {
        bson_iter_t& it = stack.back().it;
        if (!bson_iter_next(&it)) {
            // bson_iter_next also stops at a corrupt field, and then records where.
            if (it.err_off != 0) return false;
            stack.pop_back();
            continue;
        }
        switch (bson_iter_type(&it)) {
            case BSON_TYPE_UTF8: {
                std::uint32_t len = 0;
                const char* str = bson_iter_utf8(&it, &len);
                if (!bson_utf8_validate(str, len, true)) return false;
                break;
            }
            case BSON_TYPE_CODE: {
                std::uint32_t len = 0;
                const char* str = bson_iter_code(&it, &len);
                if (!bson_utf8_validate(str, len, true)) return false;
                break;
            }
            case BSON_TYPE_DOCUMENT:
            case BSON_TYPE_ARRAY: {
                if (stack.size() >= max_nesting_depth) return false;
                walk_level child;
                if (!bson_iter_recurse(&it, &child.it)) return false;
                stack.push_back(child);
                break;
            }
            default: break;
        }
    }
    return true;
}

}  // namespace

element::element(const bson_iter_t& it) noexcept
    : state_{it.raw, it.len, it.off, it.type, it.key, it.d1, it.d2, it.d3, it.d4, it.next_off, it.err_off, {}} {
    bson_iter_t copy = it;
    state_.value = *bson_iter_value(&copy);
}

void element::restore(bson_iter_t& it) const noexcept {
    it.raw = state_.raw;
    it.len = state_.len;
    it.off = state_.off;
    it.type = state_.type;
    it.key = state_.key;
    it.d1 = state_.d1;
    it.d2 = state_.d2;
    it.d3 = state_.d3;
    it.d4 = state_.d4;
    it.next_off = state_.next_off;
    it.err_off = state_.err_off;
    it.value = state_.value;
}

std::string_view element::key() const noexcept {
    const char* key = reinterpret_cast<const char*>(state_.raw + state_.key);
    // The key runs from its offset to the NUL before the value (d1).
    return {key, state_.d1 - state_.key - 1};
}

void element::type_mismatch(const char* expected) const {
    throw error(errc::bad_reply, "field '" + std::string(key()) + "' is " + type_name(type()) + ", expected " +
                                     expected);
}

bool element::is_number() const noexcept {
    const auto t = type();
    return t == BSON_TYPE_INT32 || t == BSON_TYPE_INT64 || t == BSON_TYPE_DOUBLE;
}

std::int32_t element::as_int32() const {
    bson_iter_t it;
    restore(it);
    if (type() != BSON_TYPE_INT32) type_mismatch("int32");
    return bson_iter_int32(&it);
}

std::int64_t element::as_int64() const {
    bson_iter_t it;
    restore(it);
    if (type() != BSON_TYPE_INT64) type_mismatch("int64");
    return bson_iter_int64(&it);
}

double element::as_double() const {
    bson_iter_t it;
    restore(it);
    if (type() != BSON_TYPE_DOUBLE) type_mismatch("double");
    return bson_iter_double(&it);
}

std::int64_t element::as_integer() const {
    bson_iter_t it;
    restore(it);
    switch (type()) {
        case BSON_TYPE_INT32: return bson_iter_int32(&it);
        case BSON_TYPE_INT64: return bson_iter_int64(&it);
        case BSON_TYPE_DOUBLE: {
            const double d = bson_iter_double(&it);
            // 2^63 itself does not fit; the bounds are exact powers of two, so the comparisons are exact.
            if (std::trunc(d) != d || d < -9223372036854775808.0 || d >= 9223372036854775808.0) {
                type_mismatch("integral number");
            }
            return static_cast<std::int64_t>(d);
        }
        default: type_mismatch("number");
    }
}

bool element::as_bool() const {
    bson_iter_t it;
    restore(it);
    if (type() != BSON_TYPE_BOOL) type_mismatch("bool");
    return bson_iter_bool(&it);
}

bool element::truthy() const noexcept {
    bson_iter_t it;
    restore(it);
    return bson_iter_as_bool(&it);
}

std::string_view element::as_string() const {
    bson_iter_t it;
    restore(it);
    if (type() != BSON_TYPE_UTF8) type_mismatch("string");
    std::uint32_t len = 0;
    const char* s = bson_iter_utf8(&it, &len);
    return {s, len};
}

view element::as_document() const {
    bson_iter_t it;
    restore(it);
    if (type() != BSON_TYPE_DOCUMENT) type_mismatch("document");
    std::uint32_t len = 0;
    const std::uint8_t* data = nullptr;
    bson_iter_document(&it, &len, &data);
    return {data, len};
}

view element::as_array() const {
    bson_iter_t it;
    restore(it);
    if (type() != BSON_TYPE_ARRAY) type_mismatch("array");
    std::uint32_t len = 0;
    const std::uint8_t* data = nullptr;
    bson_iter_array(&it, &len, &data);
    return {data, len};
}

bson_oid_t element::as_oid() const {
    if (type() != BSON_TYPE_OID) type_mismatch("objectId");
    return state_.value.value.v_oid;
}

std::chrono::system_clock::time_point element::as_date() const {
    bson_iter_t it;
    restore(it);
    if (type() != BSON_TYPE_DATE_TIME) type_mismatch("date");
    return std::chrono::system_clock::time_point(std::chrono::milliseconds(bson_iter_date_time(&it)));
}

element::binary element::as_binary() const {
    bson_iter_t it;
    restore(it);
    if (type() != BSON_TYPE_BINARY) type_mismatch("binary");
    bson_subtype_t subtype{};
    std::uint32_t len = 0;
    const std::uint8_t* data = nullptr;
    bson_iter_binary(&it, &subtype, &len, &data);
    return {subtype, {data, len}};
}

std::span<const std::uint8_t> element::raw_value() const noexcept {
    // The value starts after type byte, key and its NUL; its length is what remains up to the next element.
    return {state_.raw + state_.d1, state_.next_off - state_.d1};
}

std::optional<view> view::validate(std::span<const std::uint8_t> bytes) noexcept {
    if (bytes.size() < 5) return std::nullopt;
    std::int32_t declared = 0;
    std::memcpy(&declared, bytes.data(), 4);
    declared = BSON_UINT32_FROM_LE(declared);
    if (declared < 5 || static_cast<std::size_t>(declared) != bytes.size()) return std::nullopt;
    bson_t b;
    if (!bson_init_static(&b, bytes.data(), bytes.size())) return std::nullopt;
    std::size_t offset = 0;
    // Structure and UTF-8 checks; "$"/"." keys are legal in replies, so BSON_VALIDATE_DOLLAR_KEYS is not set.
    const auto flags = static_cast<bson_validate_flags_t>(BSON_VALIDATE_UTF8 | BSON_VALIDATE_UTF8_ALLOW_NULL);
    if (!depth_and_strings_are_valid(b) || !bson_validate(&b, flags, &offset)) return std::nullopt;
    return view(bytes.data(), bytes.size());
}

bson_t view::as_bson_t() const noexcept {
    bson_t b;
    if (data_ == nullptr || !bson_init_static(&b, data_, size_)) bson_init(&b);
    return b;
}

std::optional<element> view::find(std::string_view key) const noexcept {
    if (data_ == nullptr) return std::nullopt;
    bson_t b = as_bson_t();
    bson_iter_t it;
    if (!bson_iter_init(&it, &b)) return std::nullopt;
    while (bson_iter_next(&it)) {
        if (key == std::string_view(bson_iter_key(&it), bson_iter_key_len(&it))) return element(it);
    }
    return std::nullopt;
}

element view::at(std::string_view key) const {
    if (auto e = find(key)) return *e;
    throw error(errc::bad_reply, "field '" + std::string(key) + "' is missing");
}

void view::for_each(const std::function<void(const element&)>& visit) const {
    if (data_ == nullptr) return;
    bson_t b = as_bson_t();
    bson_iter_t it;
    if (!bson_iter_init(&it, &b)) return;
    while (bson_iter_next(&it)) visit(element(it));
}

std::size_t view::count_keys() const noexcept {
    if (data_ == nullptr) return 0;
    bson_t b = as_bson_t();
    return bson_count_keys(&b);
}

std::string view::to_json() const {
    if (data_ == nullptr) return "{}";
    bson_t b = as_bson_t();
    std::size_t len = 0;
    char* json = bson_as_relaxed_extended_json(&b, &len);
    if (json == nullptr) return "<invalid BSON>";
    std::string out(json, len);
    bson_free(json);
    return out;
}

bool operator==(const view& a, const view& b) noexcept {
    return a.size_ == b.size_ && (a.size_ == 0 || std::memcmp(a.data_, b.data_, a.size_) == 0);
}

document::document() : doc_(bson_new()) {}

document::document(bson::view v) : doc_(bson_new_from_data(v.data(), v.size())) {
    if (doc_ == nullptr) throw error(errc::invalid_argument, "not a BSON document");
}

document::document(const document& other) : doc_(bson_copy(other.doc_)) {}

document::~document() {
    if (doc_ != nullptr) bson_destroy(doc_);
}

document document::from_json(std::string_view json) {
    bson_error_t err;
    bson_t* b = bson_new_from_json(reinterpret_cast<const std::uint8_t*>(json.data()),
                                   static_cast<ssize_t>(json.size()), &err);
    if (b == nullptr) throw error(errc::invalid_argument, std::string("invalid JSON: ") + err.message);
    return document(b);
}

builder& builder::append(std::string_view key, std::int32_t v) {
    check_append(bson_append_int32(doc_, key.data(), key_length(key), v), key);
    return *this;
}

builder& builder::append(std::string_view key, std::int64_t v) {
    check_append(bson_append_int64(doc_, key.data(), key_length(key), v), key);
    return *this;
}

builder& builder::append(std::string_view key, double v) {
    check_append(bson_append_double(doc_, key.data(), key_length(key), v), key);
    return *this;
}

builder& builder::append(std::string_view key, bool v) {
    check_append(bson_append_bool(doc_, key.data(), key_length(key), v), key);
    return *this;
}

builder& builder::append(std::string_view key, std::string_view v) {
    if (v.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
        throw error(errc::invalid_argument, "string too long for BSON");
    }
    check_append(bson_append_utf8(doc_, key.data(), key_length(key), v.data(), static_cast<int>(v.size())), key);
    return *this;
}

builder& builder::append(std::string_view key, bson::view doc) {
    bson_t b = doc.as_bson_t();
    check_append(bson_append_document(doc_, key.data(), key_length(key), &b), key);
    return *this;
}

builder& builder::append_array(std::string_view key, bson::view array) {
    bson_t b = array.as_bson_t();
    check_append(bson_append_array(doc_, key.data(), key_length(key), &b), key);
    return *this;
}

builder& builder::append(std::string_view key, const bson_oid_t& oid) {
    check_append(bson_append_oid(doc_, key.data(), key_length(key), &oid), key);
    return *this;
}

builder& builder::append(std::string_view key, std::chrono::system_clock::time_point t) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
    check_append(bson_append_date_time(doc_, key.data(), key_length(key), ms), key);
    return *this;
}

builder& builder::append(std::string_view key, const bson_value_t& v) {
    check_append(bson_append_value(doc_, key.data(), key_length(key), &v), key);
    return *this;
}

builder& builder::append_binary(std::string_view key, bson_subtype_t subtype, std::span<const std::uint8_t> bytes) {
    if (bytes.size() > std::numeric_limits<std::uint32_t>::max()) {
        throw error(errc::invalid_argument, "binary too long for BSON");
    }
    check_append(bson_append_binary(doc_, key.data(), key_length(key), subtype, bytes.data(),
                                    static_cast<std::uint32_t>(bytes.size())),
                 key);
    return *this;
}

builder& builder::append_null(std::string_view key) {
    check_append(bson_append_null(doc_, key.data(), key_length(key)), key);
    return *this;
}

builder& builder::concat(bson::view doc) {
    bson_t b = doc.as_bson_t();
    check_append(bson_concat(doc_, &b), "<concat>");
    return *this;
}

builder& builder::append_document(std::string_view key, const std::function<void(builder&)>& fill) {
    bson_t child;
    check_append(bson_append_document_begin(doc_, key.data(), key_length(key), &child), key);
    builder sub(&child);
    fill(sub);
    check_append(bson_append_document_end(doc_, &child), key);
    return *this;
}

builder& builder::append_array(std::string_view key, const std::function<void(builder&)>& fill) {
    bson_t child;
    check_append(bson_append_array_begin(doc_, key.data(), key_length(key), &child), key);
    builder sub(&child);
    fill(sub);
    check_append(bson_append_array_end(doc_, &child), key);
    return *this;
}

document builder::extract() {
    return document(bson_copy(doc_));
}

value::value(const bson_oid_t& oid) noexcept {
    value_.value_type = BSON_TYPE_OID;
    bson_oid_copy(&oid, &value_.value.v_oid);
}

value::value(std::string_view s) {
    if (s.size() >= std::numeric_limits<std::uint32_t>::max()) throw error(errc::invalid_argument, "string too long");
    value_.value_type = BSON_TYPE_UTF8;
    value_.value.v_utf8.len = static_cast<std::uint32_t>(s.size());
    value_.value.v_utf8.str = static_cast<char*>(bson_malloc(s.size() + 1));
    std::memcpy(value_.value.v_utf8.str, s.data(), s.size());
    value_.value.v_utf8.str[s.size()] = '\0';
}

value::value(std::int32_t v) noexcept {
    value_.value_type = BSON_TYPE_INT32;
    value_.value.v_int32 = v;
}

value::value(std::int64_t v) noexcept {
    value_.value_type = BSON_TYPE_INT64;
    value_.value.v_int64 = v;
}

value::value(double v) noexcept {
    value_.value_type = BSON_TYPE_DOUBLE;
    value_.value.v_double = v;
}

std::string value::to_json() const {
    // libbson prints values only as part of a document: wrap it as {"v": value} and cut the wrapper off.
    builder b;
    b.append("v", value_);
    const std::string json = b.view().to_json();
    const auto start = json.find(':');
    const auto end = json.rfind('}');
    if (start == std::string::npos || end == std::string::npos || end <= start + 1) return json;
    std::string inner = json.substr(start + 1, end - start - 1);
    const auto first = inner.find_first_not_of(' ');
    const auto last = inner.find_last_not_of(' ');
    return first == std::string::npos ? inner : inner.substr(first, last - first + 1);
}

bool operator==(const value& a, const value& b) noexcept {
    if (a.type() != b.type()) return false;
    builder left;
    builder right;
    left.append("v", a.value_);
    right.append("v", b.value_);
    return left.view() == right.view();
}

std::string array_key(std::size_t index) {
    return std::to_string(index);
}

std::string oid_to_hex(const bson_oid_t& oid) {
    char hex[25];
    bson_oid_to_string(&oid, hex);
    return std::string(hex, 24);
}

bson_oid_t new_oid() {
    bson_oid_t oid;
    bson_oid_init(&oid, nullptr);
    return oid;
}

}  // namespace gridflow::bson
