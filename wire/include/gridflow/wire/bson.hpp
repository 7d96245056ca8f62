// Thin RAII and view types over libbson. gridflow never encodes BSON by hand outside the OP_MSG codec's
// chunk-document header; everything else goes through libbson.
//
//   bson::view      non-owning, read-only bytes of one document (a reply body, a sequence document, a sub-document)
//   bson::element   one field of a view: typed accessors that throw errc::bad_reply on a type mismatch, because
//                   the documents we read come from the server and a wrong type there is a protocol fault
//   bson::document  an owning document (copyable, movable)
//   bson::builder   appends fields; sub-documents and arrays are opened with a callback so they always close
//
// A view never outlives the buffer it points into; the types that hand out views (document, wire::reply)
// document how long their bytes live.
#pragma once

#include <bson/bson.h>

#include <chrono>
#include <cstddef>
#include <concepts>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace gridflow::bson {

using type = bson_type_t;

class view;

// bson_iter_t and bson_t are declared 128-byte aligned (and bson_iter_t is only 80 bytes long). Coroutine frames
// and arrays cannot honour that, so no type here holds one by value: element keeps the iterator's fields in a
// plain struct and rebuilds a bson_iter_t on the stack of ordinary functions, and builder keeps its bson_t on
// the heap. Every type in this header may therefore live in a coroutine frame or a container.
class element {
public:
    // `it` must point at a field (after a successful bson_iter_next).
    explicit element(const bson_iter_t& it) noexcept;

    [[nodiscard]] std::string_view key() const noexcept;
    [[nodiscard]] bson_type_t type() const noexcept { return static_cast<bson_type_t>(state_.raw[state_.type]); }

    [[nodiscard]] bool is_number() const noexcept;
    [[nodiscard]] std::int32_t as_int32() const;
    [[nodiscard]] std::int64_t as_int64() const;
    [[nodiscard]] double as_double() const;
    // int32, int64 or double (integral value) as int64; the server may send any of them for counts and codes.
    [[nodiscard]] std::int64_t as_integer() const;
    [[nodiscard]] bool as_bool() const;
    // Follows the server's notion of truthiness for flags such as ok: numbers compare to zero, bools as is.
    [[nodiscard]] bool truthy() const noexcept;
    [[nodiscard]] std::string_view as_string() const;
    [[nodiscard]] view as_document() const;
    [[nodiscard]] view as_array() const;
    [[nodiscard]] bson_oid_t as_oid() const;
    [[nodiscard]] std::chrono::system_clock::time_point as_date() const;
    struct binary {
        bson_subtype_t subtype;
        std::span<const std::uint8_t> bytes;
    };
    [[nodiscard]] binary as_binary() const;
    // The raw bytes of this element's value (for document and array, the embedded document).
    [[nodiscard]] std::span<const std::uint8_t> raw_value() const noexcept;
    // The value as libbson describes it; strings and binaries point into the document's bytes.
    [[nodiscard]] const bson_value_t* value() const noexcept { return &state_.value; }

private:
    // The fields of bson_iter_t, without its alignment.
    struct iter_state {
        const std::uint8_t* raw;
        std::uint32_t len, off, type, key, d1, d2, d3, d4, next_off, err_off;
        bson_value_t value;
    };
    [[noreturn]] void type_mismatch(const char* expected) const;
    void restore(bson_iter_t& it) const noexcept;
    iter_state state_;
};

class view {
public:
    view() noexcept = default;
    // Trusts that data holds one well-formed document of exactly size bytes (validated by whoever produced it).
    view(const std::uint8_t* data, std::size_t size) noexcept : data_(data), size_(size) {}
    explicit view(const bson_t* b) noexcept : data_(bson_get_data(b)), size_(b->len) {}

    // Checks the length prefix and runs libbson's validator; nullopt when the bytes are not one valid document.
    [[nodiscard]] static std::optional<view> validate(std::span<const std::uint8_t> bytes) noexcept;

    [[nodiscard]] const std::uint8_t* data() const noexcept { return data_; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] std::span<const std::uint8_t> bytes() const noexcept { return {data_, size_}; }
    [[nodiscard]] bool empty() const noexcept { return size_ <= 5; }

    [[nodiscard]] std::optional<element> find(std::string_view key) const noexcept;
    // The field, or errc::bad_reply naming the key when it is absent.
    [[nodiscard]] element at(std::string_view key) const;
    [[nodiscard]] bool contains(std::string_view key) const noexcept { return find(key).has_value(); }

    // Visits every field in order.
    void for_each(const std::function<void(const element&)>& visit) const;
    [[nodiscard]] std::size_t count_keys() const noexcept;

    // Canonical-free, human-readable relaxed Extended JSON (for messages and the CLI).
    [[nodiscard]] std::string to_json() const;

    // A bson_t over these bytes for libbson calls that take one; valid while the bytes are. Call it only in
    // ordinary functions: a bson_t must not live in a coroutine frame (see element).
    [[nodiscard]] bson_t as_bson_t() const noexcept;

    friend bool operator==(const view& a, const view& b) noexcept;

private:
    const std::uint8_t* data_ = nullptr;
    std::size_t size_ = 0;
};

class document {
public:
    document();  // {}
    explicit document(bson::view v);
    // Takes ownership of a heap bson_t (from bson_new or bson_copy).
    explicit document(bson_t* owned) noexcept : doc_(owned) {}
    document(const document& other);
    document(document&& other) noexcept : doc_(std::exchange(other.doc_, nullptr)) {}
    document& operator=(document other) noexcept {
        std::swap(doc_, other.doc_);
        return *this;
    }
    ~document();

    // Canonical or relaxed Extended JSON; throws errc::invalid_argument with libbson's message when malformed.
    [[nodiscard]] static document from_json(std::string_view json);

    [[nodiscard]] bson::view view() const noexcept { return bson::view(doc_); }
    operator bson::view() const noexcept { return view(); }
    [[nodiscard]] const bson_t* get() const noexcept { return doc_; }
    [[nodiscard]] std::optional<element> find(std::string_view key) const noexcept { return view().find(key); }
    [[nodiscard]] element at(std::string_view key) const { return view().at(key); }
    [[nodiscard]] std::string to_json() const { return view().to_json(); }

private:
    bson_t* doc_;
};

// An owning BSON value of any type: what GridFS file ids are (ObjectId by default, any type by choice).
class value {
public:
    value() noexcept { value_.value_type = BSON_TYPE_NULL; }
    explicit value(const bson_value_t& v) { bson_value_copy(&v, &value_); }
    explicit value(const element& e) : value(*e.value()) {}
    explicit value(const bson_oid_t& oid) noexcept;
    explicit value(std::string_view s);
    explicit value(std::int32_t v) noexcept;
    explicit value(std::int64_t v) noexcept;
    explicit value(double v) noexcept;
    // Exactly bool: a pointer or an integer converts to bool implicitly, and must not pick this.
    template <std::same_as<bool> Bool>
    explicit value(Bool v) noexcept {
        value_.value_type = BSON_TYPE_BOOL;
        value_.value.v_bool = v;
    }
    value(const value& other) : value(other.value_) {}
    value(value&& other) noexcept : value_(other.value_) { other.value_.value_type = BSON_TYPE_NULL; }
    value& operator=(value other) noexcept {
        std::swap(value_, other.value_);
        return *this;
    }
    ~value() { bson_value_destroy(&value_); }

    [[nodiscard]] const bson_value_t& get() const noexcept { return value_; }
    [[nodiscard]] bson_type_t type() const noexcept { return value_.value_type; }
    // Relaxed Extended JSON of the value alone, e.g. {"$oid": "..."} or "name" or 42.
    [[nodiscard]] std::string to_json() const;

    // Same type and same bytes (no numeric conversion: 1 and 1.0 differ, as _id lookups treat them alike but
    // GridFS ids are compared as the server stored them).
    friend bool operator==(const value& a, const value& b) noexcept;

private:
    bson_value_t value_{};
};

// Appends fields to a document. Keys are taken as string_view and need not be NUL-terminated.
class builder {
public:
    builder() : doc_(bson_new()), owned_(true) {}
    builder(const builder&) = delete;
    builder& operator=(const builder&) = delete;
    ~builder() {
        if (owned_) bson_destroy(doc_);
    }

    builder& append(std::string_view key, std::int32_t v);
    builder& append(std::string_view key, std::int64_t v);
    builder& append(std::string_view key, double v);
    builder& append(std::string_view key, bool v);
    builder& append(std::string_view key, std::string_view v);
    builder& append(std::string_view key, const char* v) { return append(key, std::string_view(v)); }
    builder& append(std::string_view key, const std::string& v) { return append(key, std::string_view(v)); }
    builder& append(std::string_view key, bson::view doc);
    builder& append(std::string_view key, const document& doc) { return append(key, doc.view()); }
    builder& append(std::string_view key, const bson_oid_t& oid);
    builder& append(std::string_view key, std::chrono::system_clock::time_point t);
    builder& append(std::string_view key, const bson_value_t& v);
    builder& append(std::string_view key, const element& e) { return append(key, *e.value()); }
    builder& append(std::string_view key, const bson::value& v) { return append(key, v.get()); }
    builder& append_binary(std::string_view key, bson_subtype_t subtype, std::span<const std::uint8_t> bytes);
    builder& append_null(std::string_view key);
    builder& append_array(std::string_view key, bson::view array);
    // Every field of doc, in order.
    builder& concat(bson::view doc);

    builder& append_document(std::string_view key, const std::function<void(builder&)>& fill);
    // fill receives a builder whose keys must be "0", "1", ...; use array_key(i) to make them.
    builder& append_array(std::string_view key, const std::function<void(builder&)>& fill);

    [[nodiscard]] bson::view view() const noexcept { return bson::view(doc_); }
    [[nodiscard]] document extract();

private:
    // A builder over a sub-document that its parent opened and will close.
    explicit builder(bson_t* child) noexcept : doc_(child), owned_(false) {}
    bson_t* doc_;
    bool owned_;
};

// "0", "1", ... for array keys.
[[nodiscard]] std::string array_key(std::size_t index);

[[nodiscard]] std::string oid_to_hex(const bson_oid_t& oid);
[[nodiscard]] bson_oid_t new_oid();

}  // namespace gridflow::bson
