#include <gridflow/wire/error.hpp>
#include <gridflow/wire/sansio/saslprep.hpp>

#include <algorithm>

#ifdef GRIDFLOW_HAVE_ICU
#include <unicode/usprep.h>
#include <unicode/ustring.h>

#include <memory>
#include <vector>
#endif

namespace gridflow::wire::sansio {

namespace {

bool is_ascii(std::string_view s) noexcept {
    return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// RFC 3454 C.2.1: ASCII control characters, U+0000-U+001F and U+007F.
bool is_ascii_control(char c) noexcept {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
}

#ifdef GRIDFLOW_HAVE_ICU

[[noreturn]] void refuse(const char* why) {
    throw error(errc::invalid_argument, std::string("SASLprep: ") + why);
}

std::u16string to_utf16(std::string_view in) {
    UErrorCode status = U_ZERO_ERROR;
    std::int32_t length = 0;
    u_strFromUTF8(nullptr, 0, &length, in.data(), static_cast<std::int32_t>(in.size()), &status);
    if (status != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(status))
        refuse("the string is not valid UTF-8");
    std::u16string out(static_cast<std::size_t>(length), u'\0');
    status = U_ZERO_ERROR;
    u_strFromUTF8(out.data(), length, nullptr, in.data(), static_cast<std::int32_t>(in.size()), &status);
    if (U_FAILURE(status))
        refuse("the string is not valid UTF-8");
    return out;
}

std::string to_utf8(const std::u16string& in) {
    UErrorCode status = U_ZERO_ERROR;
    std::int32_t length = 0;
    u_strToUTF8(nullptr, 0, &length, in.data(), static_cast<std::int32_t>(in.size()), &status);
    if (status != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(status))
        refuse("cannot encode the result as UTF-8");
    std::string out(static_cast<std::size_t>(length), '\0');
    status = U_ZERO_ERROR;
    u_strToUTF8(out.data(), length, nullptr, in.data(), static_cast<std::int32_t>(in.size()), &status);
    if (U_FAILURE(status))
        refuse("cannot encode the result as UTF-8");
    return out;
}

struct profile_closer {
    void operator()(UStringPrepProfile* p) const noexcept { usprep_close(p); }
};

// ICU's RFC 4013 profile carries exactly the RFC 3454 tables and Unicode 3.2 normalization that stringprep
// requires; a newer Unicode's NFKC could differ on code points assigned since.
std::string saslprep_unicode(std::string_view in) {
    // ICU measures strings in int32_t; a quarter of that leaves room for NFKC's growth in UTF-16.
    if (in.size() > INT32_MAX / 4)
        refuse("the string is too long");
    UErrorCode status = U_ZERO_ERROR;
    const std::unique_ptr<UStringPrepProfile, profile_closer> profile(
        usprep_openByType(USPREP_RFC4013_SASLPREP, &status));
    if (U_FAILURE(status))
        refuse("ICU has no RFC 4013 profile");

    const std::u16string source = to_utf16(in);
    const auto source_length = static_cast<std::int32_t>(source.size());
    // NFKC may lengthen a string (one code point can become 18), so the output size is asked for first.
    UParseError parse_error{};
    status = U_ZERO_ERROR;
    const std::int32_t length = usprep_prepare(profile.get(), source.data(), source_length, nullptr, 0,
                                               USPREP_DEFAULT, &parse_error, &status);
    if (status != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(status)) {
        switch (status) {
            case U_STRINGPREP_PROHIBITED_ERROR:
                refuse("the string contains a prohibited character");
            case U_STRINGPREP_UNASSIGNED_ERROR:
                refuse("the string contains an unassigned code point");
            case U_STRINGPREP_CHECK_BIDI_ERROR:
                refuse("the string breaks the bidirectional text rules");
            default:
                refuse("the string cannot be prepared");
        }
    }
    std::u16string prepared(static_cast<std::size_t>(length), u'\0');
    status = U_ZERO_ERROR;
    (void)usprep_prepare(profile.get(), source.data(), source_length, prepared.data(), length, USPREP_DEFAULT,
                         &parse_error, &status);
    if (U_FAILURE(status))
        refuse("the string cannot be prepared");
    return to_utf8(prepared);
}

#endif

}  // namespace

bool saslprep_supports_unicode() noexcept {
#ifdef GRIDFLOW_HAVE_ICU
    return true;
#else
    return false;
#endif
}

std::string saslprep(std::string_view in) {
    if (is_ascii(in)) {
        if (std::any_of(in.begin(), in.end(), is_ascii_control)) {
            throw error(errc::invalid_argument,
                        "SASLprep: the string contains a prohibited control character");
        }
        return std::string(in);
    }
#ifdef GRIDFLOW_HAVE_ICU
    return saslprep_unicode(in);
#else
    throw error(errc::invalid_argument, "password needs Unicode normalization, not supported yet");
#endif
}

}  // namespace gridflow::wire::sansio
