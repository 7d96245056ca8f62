// SASLprep (RFC 4013): the stringprep (RFC 3454) profile that SCRAM-SHA-256 applies to passwords.
//
// Strings are treated as stored strings: unassigned code points (Unicode 3.2, table A.1) are refused, as the
// MongoDB drivers do for passwords.
//
// ASCII input is prepared here without any Unicode data: no ASCII character is mapped, NFKC leaves ASCII
// unchanged and the bidi rules cannot trigger, so only the control characters (C.2.1) need refusing. Other
// input needs the tables and NFKC normalization of Unicode 3.2, which ICU's stringprep carries; that path is
// compiled when GRIDFLOW_HAVE_ICU is defined and the library links ICU's common library (icu-uc).
#pragma once

#include <string>
#include <string_view>

namespace gridflow::wire::sansio {

// True when this build can prepare non-ASCII strings (built with ICU).
[[nodiscard]] bool saslprep_supports_unicode() noexcept;

// Maps (B.1 to nothing, C.1.2 to U+0020), normalizes (NFKC), refuses prohibited output (C.1.2, C.2.1, C.2.2,
// C.3-C.9, unassigned) and checks the bidi rules (RFC 3454 §6) of the UTF-8 string `in`. Throws
// gridflow::error with errc::invalid_argument when the string is not valid UTF-8 or is refused, and when it
// is not ASCII and saslprep_supports_unicode() is false. Messages never quote the input: it is a password.
[[nodiscard]] std::string saslprep(std::string_view in);

}  // namespace gridflow::wire::sansio
