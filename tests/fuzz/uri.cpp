// Puts a password taken from the fuzz input into the user information of a connection string and checks
// that no output shows it or a piece of it, whatever it holds ('/', '?', '#', '=', '@', ':', '%', in any
// order and next to any rest of the URI): not redact_uri, not the parser's error message, not redacted() or
// warnings() of a URI the parser accepts. A piece is the password as written, decoded or encoded, or a run
// of at least min_piece_size unreserved characters in one of these. The input is also parsed as it is: the
// parser must accept it or refuse it with gridflow::error, and show an accepted URI as redact_uri does.
//
// Input layout (the seeds under corpus/uri follow it): byte 0 picks the scheme (bit 0: mongodb+srv://) and
// how the password is written (bits 1-2: 1 percent-encoded throughout, 2 only its delimiters encoded, else
// as it is); bytes 1 and 2 are the sizes of the user name and the password; the user name, the password and
// the rest of the URI (hosts, path, options) follow. The URI is scheme + user + ':' + password + '@' + rest.
//
// A piece of the password may also occur by chance in the user name, the rest of the URI or the fixed text
// of a message ("host"). Pieces found in the first two are not checked. For the third, every URI has a twin
// whose password has each letter and digit rotated within its class (hex digits among hex digits, so that
// %XX escapes stay escapes and both parse alike), and only a piece that each of the two shows in its own
// version is a leak.
#include <gridflow/wire/error.hpp>
#include <gridflow/wire/uri.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using gridflow::wire::uri;

// Shorter pieces occur by chance too often to tell anything.
constexpr std::size_t min_piece_size = 4;

bool is_unreserved(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

char rotated(char c) {
    for (const auto& [first, last] : {std::pair{'0', '9'}, std::pair{'a', 'f'}, std::pair{'g', 'z'},
                                      std::pair{'A', 'F'}, std::pair{'G', 'Z'}}) {
        if (c >= first && c <= last)
            return c == last ? first : static_cast<char>(c + 1);
    }
    return c;
}

std::string twin_of(std::string_view password) {
    std::string twin(password);
    std::transform(twin.begin(), twin.end(), twin.begin(), rotated);
    return twin;
}

// Every byte for which should_encode holds written as %XX.
template <class Predicate>
std::string percent_encode(std::string_view s, Predicate should_encode) {
    constexpr std::string_view hex = "0123456789ABCDEF";
    std::string out;
    for (const char c : s) {
        if (!should_encode(c)) {
            out += c;
            continue;
        }
        const auto byte = static_cast<unsigned char>(c);
        out += '%';
        out += hex[byte >> 4];
        out += hex[byte & 0xF];
    }
    return out;
}

std::string encode_all(std::string_view s) {
    return percent_encode(s, [](char c) { return !is_unreserved(c); });
}

std::optional<std::string> percent_decode(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out += s[i];
            continue;
        }
        if (i + 2 >= s.size())
            return std::nullopt;
        const std::string digits(s.substr(i + 1, 2));
        if (digits.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
            return std::nullopt;
        out += static_cast<char>(std::stoi(digits, nullptr, 16));
        i += 2;
    }
    return out;
}

// How the password is written between ':' and '@'.
std::string password_field(std::string_view password, unsigned mode) {
    switch (mode) {
        case 1:
            return encode_all(password);
        case 2:
            return percent_encode(password, [](char c) {
                return std::string_view("%:/?#[]@").find(c) != std::string_view::npos;
            });
        default:
            return std::string(password);
    }
}

// The forms in which an output could show the password: as written, as the parser decodes it, and
// encoded.
std::vector<std::string> forms_of(std::string_view password, unsigned mode) {
    std::vector<std::string> forms{std::string(password), password_field(password, mode),
                                   encode_all(password)};
    if (auto decoded = percent_decode(password))
        forms.push_back(std::move(*decoded));
    return forms;
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; });
    return s;
}

// Everything the URI library says about text, lower-cased: messages name hosts lower-cased and mechanism
// properties upper-cased.
std::vector<std::string> outputs_of(std::string_view text) {
    std::vector<std::string> outputs{gridflow::wire::redact_uri(text)};
    try {
        const auto parsed = uri::parse(text);
        outputs.push_back(parsed.redacted());
        outputs.insert(outputs.end(), parsed.warnings().begin(), parsed.warnings().end());
    } catch (const gridflow::error& e) {
        outputs.emplace_back(e.what());
    }
    for (auto& output : outputs)
        output = lower(std::move(output));
    return outputs;
}

bool shown(const std::vector<std::string>& outputs, std::string_view piece) {
    return std::any_of(outputs.begin(), outputs.end(),
                       [&](const std::string& output) { return output.find(piece) != std::string::npos; });
}

// Traps when a form of the password, or a run of unreserved characters in it, is shown by both the URI and
// its twin, each its own version. Rotation keeps the class of every byte, so the twin has as many forms, of
// the same sizes, with their runs at the same offsets.
void check_forms(const std::vector<std::string>& forms, const std::vector<std::string>& twin_forms,
                 const std::vector<std::string>& outputs, const std::vector<std::string>& twin_outputs,
                 std::string_view public_text) {
    const auto check = [&](std::string_view piece, std::string_view twin_piece) {
        if (piece.size() < min_piece_size || piece == twin_piece)
            return;
        const auto lowered = lower(std::string(piece));
        const auto twin_lowered = lower(std::string(twin_piece));
        if (public_text.find(lowered) != std::string_view::npos ||
            public_text.find(twin_lowered) != std::string_view::npos)
            return;
        if (shown(outputs, lowered) && shown(twin_outputs, twin_lowered))
            __builtin_trap();
    };
    for (std::size_t f = 0; f < forms.size(); ++f) {
        const std::string_view form = forms[f];
        const std::string_view twin_form = twin_forms.at(f);
        check(form, twin_form);
        for (std::size_t begin = 0; begin < form.size();) {
            auto end = begin;
            while (end < form.size() && is_unreserved(form[end]))
                ++end;
            if (end > begin && end - begin < form.size())
                check(form.substr(begin, end - begin), twin_form.substr(begin, end - begin));
            begin = end + 1;
        }
    }
}

void parse_as_is(std::string_view text) {
    const auto redacted = gridflow::wire::redact_uri(text);
    try {
        if (uri::parse(text).redacted() != redacted)
            __builtin_trap();
    } catch (const gridflow::error&) {
        // Most inputs are no connection string at all.
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    parse_as_is(input);
    if (size < 3)
        return 0;

    const std::string_view scheme = (data[0] & 1) != 0 ? "mongodb+srv://" : "mongodb://";
    const unsigned mode = (data[0] >> 1) & 3;
    auto body = input.substr(3);
    const auto user = body.substr(0, data[1]);
    body.remove_prefix(user.size());
    const auto password = body.substr(0, data[2]);
    const auto rest = body.substr(password.size());
    const auto twin = twin_of(password);

    const auto text = [&](std::string_view secret) {
        return std::string(scheme) + std::string(user) + ":" + password_field(secret, mode) + "@" +
               std::string(rest);
    };
    const auto public_text = lower(std::string(user) + '\n' + std::string(rest));
    check_forms(forms_of(password, mode), forms_of(twin, mode), outputs_of(text(password)),
                outputs_of(text(twin)), public_text);
    return 0;
}
