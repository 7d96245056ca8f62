#define BOOST_TEST_MODULE chunk_layout
#include <boost/test/unit_test.hpp>

#include <gridflow/gridfs/detail/chunk_layout.hpp>
#include <gridflow/wire/error.hpp>

#include <functional>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

// Boost.Test prints values of failed checks; found by argument-dependent lookup.
namespace gridflow::gridfs::detail {
std::ostream& operator<<(std::ostream& os, const chunk_range& r) {
    return os << "{first " << r.first << ", end " << r.end << ", offset " << r.offset_in_first << "}";
}
std::ostream& operator<<(std::ostream& os, const chunk_run& r) {
    return os << "[" << r.first << ", " << r.end << ")";
}
}  // namespace gridflow::gridfs::detail

namespace detail = gridflow::gridfs::detail;
namespace bson = gridflow::bson;
using gridflow::errc;

namespace {

auto fails_with(errc code, std::string fragment = {}) {
    return [code, fragment](const gridflow::error& e) {
        BOOST_TEST_INFO("message: " << e.what());
        return e.code() == code && std::string(e.what()).find(fragment) != std::string::npos;
    };
}

constexpr std::int64_t gib = std::int64_t{1} << 30;
constexpr std::int64_t five_gib_plus_3 = 5 * gib + 3;
constexpr std::int32_t int32_max = std::numeric_limits<std::int32_t>::max();
constexpr std::int64_t int64_max = std::numeric_limits<std::int64_t>::max();

}  // namespace

BOOST_AUTO_TEST_CASE(rejects_invalid_files) {
    BOOST_CHECK_EXCEPTION(detail::chunk_layout(-1, 4), gridflow::error,
                          fails_with(errc::invalid_argument, "-1"));
    BOOST_CHECK_EXCEPTION(detail::chunk_layout(10, 0), gridflow::error,
                          fails_with(errc::invalid_argument, "chunk size"));
    BOOST_CHECK_EXCEPTION(detail::chunk_layout(10, -4), gridflow::error,
                          fails_with(errc::invalid_argument, "chunk size"));
}

BOOST_AUTO_TEST_CASE(small_lengths_for_every_chunk_size) {
    for (const std::int32_t cs : {1, 4, 261120, 1 << 20}) {
        const std::int64_t c = cs;
        for (const std::int64_t length : {std::int64_t{0}, std::int64_t{1}, c - 1, c, c + 1, 3 * c}) {
            BOOST_TEST_CONTEXT("chunk size " << cs << ", length " << length) {
                const detail::chunk_layout layout(length, cs);
                std::int64_t expected_count = 0;
                std::vector<std::size_t> expected_sizes;
                for (std::int64_t left = length; left > 0; left -= c) {
                    ++expected_count;
                    expected_sizes.push_back(static_cast<std::size_t>(std::min(left, c)));
                }
                BOOST_TEST(layout.chunk_count() == expected_count);
                std::int64_t offset = 0;
                for (std::int64_t n = 0; n < layout.chunk_count(); ++n) {
                    BOOST_TEST(layout.expected_size(n) == expected_sizes[static_cast<std::size_t>(n)]);
                    BOOST_TEST(layout.chunk_offset(n) == offset);
                    offset += static_cast<std::int64_t>(layout.expected_size(n));
                }
                BOOST_TEST(offset == length);
                BOOST_TEST(layout.chunk_offset(layout.chunk_count()) == length);
                BOOST_CHECK_EXCEPTION((void)layout.expected_size(layout.chunk_count()), gridflow::error,
                                      fails_with(errc::invalid_argument));
                BOOST_CHECK_EXCEPTION((void)layout.expected_size(-1), gridflow::error,
                                      fails_with(errc::invalid_argument));
                BOOST_CHECK_EXCEPTION((void)layout.chunk_offset(layout.chunk_count() + 1), gridflow::error,
                                      fails_with(errc::invalid_argument));

                const auto whole = layout.range(0, length);
                BOOST_TEST(whole.first == 0);
                BOOST_TEST(whole.end == expected_count);
                BOOST_TEST(whole.offset_in_first == 0);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(zero_length_file_has_no_chunks) {
    const detail::chunk_layout layout(0, 261120);
    BOOST_TEST(layout.chunk_count() == 0);
    BOOST_TEST(layout.range(0, 0).empty());
    BOOST_CHECK_EXCEPTION((void)layout.expected_size(0), gridflow::error, fails_with(errc::invalid_argument));
}

BOOST_AUTO_TEST_CASE(five_gib_plus_three) {
    struct expectation {
        std::int32_t chunk_size;
        std::int64_t count;
        std::size_t last_size;
    };
    // Computed independently: ceil((5 * 2^30 + 3) / cs) and the remainder of the last chunk.
    for (const auto& e : {expectation{1, 5'368'709'123, 1}, expectation{4, 1'342'177'281, 3},
                          expectation{261120, 20'561, 81'923}, expectation{1 << 20, 5'121, 3}}) {
        BOOST_TEST_CONTEXT("chunk size " << e.chunk_size) {
            const detail::chunk_layout layout(five_gib_plus_3, e.chunk_size);
            BOOST_TEST(layout.chunk_count() == e.count);
            BOOST_TEST(layout.expected_size(e.count - 1) == e.last_size);
            BOOST_TEST(layout.expected_size(e.count - 2) == static_cast<std::size_t>(e.chunk_size));
            BOOST_TEST(layout.expected_size(0) == static_cast<std::size_t>(e.chunk_size));
            BOOST_TEST(layout.chunk_offset(e.count - 1) ==
                       five_gib_plus_3 - static_cast<std::int64_t>(e.last_size));
            BOOST_TEST(layout.chunk_offset(e.count) == five_gib_plus_3);

            // The last 3 bytes, past 4 GiB.
            const auto tail = layout.range(5 * gib, five_gib_plus_3);
            BOOST_TEST(tail.end == e.count);
            BOOST_TEST(tail.first == (5 * gib) / e.chunk_size);
            BOOST_TEST(tail.offset_in_first == (5 * gib) % e.chunk_size);

            // A range straddling 4 GiB.
            const auto middle = layout.range(4 * gib - 1, 4 * gib + 1);
            BOOST_TEST(middle.first == (4 * gib - 1) / e.chunk_size);
            BOOST_TEST(middle.offset_in_first == (4 * gib - 1) % e.chunk_size);
            BOOST_TEST(layout.chunk_offset(middle.end) >= 4 * gib + 1);
            BOOST_TEST(layout.chunk_offset(middle.end - 1) < 4 * gib + 1);
        }
    }
}

BOOST_AUTO_TEST_CASE(extreme_lengths_do_not_overflow) {
    const detail::chunk_layout layout(int64_max, int32_max);
    BOOST_TEST(layout.chunk_count() == 4'294'967'299);
    BOOST_TEST(layout.expected_size(layout.chunk_count() - 1) == 1u);
    BOOST_TEST(layout.chunk_offset(layout.chunk_count()) == int64_max);
    const auto all = layout.range(0, int64_max);
    BOOST_TEST(all.end == layout.chunk_count());

    const detail::chunk_layout bytes(int64_max, 1);
    BOOST_TEST(bytes.chunk_count() == int64_max);
    BOOST_TEST(bytes.expected_size(int64_max - 1) == 1u);
    BOOST_TEST(bytes.chunk_offset(int64_max) == int64_max);
}

BOOST_AUTO_TEST_CASE(ranges) {
    const detail::chunk_layout layout(10, 4);  // chunks [0,4) [4,8) [8,10)
    BOOST_TEST(layout.range(0, 10) == (detail::chunk_range{0, 3, 0}));
    BOOST_TEST(layout.range(5, 10) == (detail::chunk_range{1, 3, 1}));
    BOOST_TEST(layout.range(4, 8) == (detail::chunk_range{1, 2, 0}));
    BOOST_TEST(layout.range(3, 5) == (detail::chunk_range{0, 2, 3}));
    BOOST_TEST(layout.range(9, 10) == (detail::chunk_range{2, 3, 1}));
    BOOST_TEST(layout.range(6, 6).empty());
    BOOST_TEST(layout.range(10, 10).empty());
    BOOST_TEST(layout.range(10, 10).count() == 0);

    BOOST_CHECK_EXCEPTION((void)layout.range(-1, 5), gridflow::error,
                          fails_with(errc::invalid_argument, "[-1, 5)"));
    BOOST_CHECK_EXCEPTION((void)layout.range(6, 5), gridflow::error, fails_with(errc::invalid_argument));
    BOOST_CHECK_EXCEPTION((void)layout.range(0, 11), gridflow::error,
                          fails_with(errc::invalid_argument, "length 10"));
    BOOST_CHECK_EXCEPTION((void)layout.range(11, 11), gridflow::error, fails_with(errc::invalid_argument));
}

BOOST_AUTO_TEST_CASE(chunks_per_run) {
    BOOST_TEST(detail::chunks_per_run(261120, 16 * 1024 * 1024) == 64);
    BOOST_TEST(detail::chunks_per_run(1, 16 * 1024 * 1024) == 16 * 1024 * 1024);
    // A chunk larger than the budget still makes runs of one chunk.
    BOOST_TEST(detail::chunks_per_run(1 << 24, 1024) == 1);
    BOOST_CHECK_EXCEPTION((void)detail::chunks_per_run(0, 1024), gridflow::error,
                          fails_with(errc::invalid_argument));
    BOOST_CHECK_EXCEPTION((void)detail::chunks_per_run(4, 0), gridflow::error,
                          fails_with(errc::invalid_argument));
}

namespace {

std::vector<detail::chunk_run> all_runs(detail::run_splitter runs) {
    std::vector<detail::chunk_run> out;
    while (!runs.done())
        out.push_back(runs.next());
    return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(run_splitter_cuts_ranges) {
    detail::run_splitter runs({0, 10, 0}, 3);
    std::vector<detail::chunk_run> out;
    while (!runs.done())
        out.push_back(runs.next());
    const std::vector<detail::chunk_run> expected{{0, 3}, {3, 6}, {6, 9}, {9, 10}};
    BOOST_TEST(out == expected, boost::test_tools::per_element());
    BOOST_CHECK_EXCEPTION((void)runs.next(), gridflow::error, fails_with(errc::invalid_argument));

    const std::vector<detail::chunk_run> exact{{4, 6}, {6, 8}, {8, 10}};
    BOOST_TEST(all_runs(detail::run_splitter({4, 10, 2}, 2)) == exact, boost::test_tools::per_element());

    BOOST_TEST(detail::run_splitter({7, 7, 0}, 5).done());

    BOOST_CHECK_EXCEPTION(detail::run_splitter({0, 10, 0}, 0), gridflow::error,
                          fails_with(errc::invalid_argument));
    BOOST_CHECK_EXCEPTION(detail::run_splitter({0, 10, 0}, 3, 0), gridflow::error,
                          fails_with(errc::invalid_argument));
    BOOST_CHECK_EXCEPTION(detail::run_splitter({5, 4, 0}, 1), gridflow::error,
                          fails_with(errc::invalid_argument));
    BOOST_CHECK_EXCEPTION(detail::run_splitter({-1, 4, 0}, 1), gridflow::error,
                          fails_with(errc::invalid_argument));
}

BOOST_AUTO_TEST_CASE(run_splitter_evens_out_the_last_runs_over_its_connections) {
    // A 32 MiB file after its prefetched first run: chunks 16 to 129 in runs of 16 over 2 connections. Full
    // runs while at least 2 full runs are left, then the remaining 17 chunks as 9 and 8 (not 16 and 1).
    const std::vector<detail::chunk_run> dev32{{16, 32}, {32, 48},  {48, 64},   {64, 80},
                                               {80, 96}, {96, 112}, {112, 121}, {121, 129}};
    BOOST_TEST(all_runs(detail::run_splitter({16, 129, 0}, 16, 2)) == dev32,
               boost::test_tools::per_element());

    // A remainder of exactly 2 full runs stays 2 full runs; one run or less is never cut.
    const std::vector<detail::chunk_run> two_full{{0, 16}, {16, 32}};
    BOOST_TEST(all_runs(detail::run_splitter({0, 32, 0}, 16, 2)) == two_full,
               boost::test_tools::per_element());
    const std::vector<detail::chunk_run> one{{0, 16}};
    BOOST_TEST(all_runs(detail::run_splitter({0, 16, 0}, 16, 2)) == one, boost::test_tools::per_element());

    // Over 3 connections, 40 chunks in runs of 16: 14, 13 and 13 rather than 16, 16 and 8.
    const std::vector<detail::chunk_run> three{{0, 14}, {14, 27}, {27, 40}};
    BOOST_TEST(all_runs(detail::run_splitter({0, 40, 0}, 16, 3)) == three, boost::test_tools::per_element());

    // More connections than chunks left: one chunk per run, never an empty run.
    const std::vector<detail::chunk_run> ones{{0, 1}, {1, 2}, {2, 3}};
    BOOST_TEST(all_runs(detail::run_splitter({0, 3, 0}, 2, 5)) == ones, boost::test_tools::per_element());

    // With one connection, nothing changes: full runs and a short last one.
    const std::vector<detail::chunk_run> alone{{0, 16}, {16, 17}};
    BOOST_TEST(all_runs(detail::run_splitter({0, 17, 0}, 16, 1)) == alone, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(run_splitter_on_huge_files) {
    // 5 GiB + 3 with chunk size 1: billions of chunks, split lazily.
    const detail::chunk_layout layout(five_gib_plus_3, 1);
    detail::run_splitter runs(layout.range(0, five_gib_plus_3), 1 << 20);
    BOOST_TEST(runs.next() == (detail::chunk_run{0, 1 << 20}));

    detail::run_splitter tail(layout.range(5 * gib, five_gib_plus_3), 1 << 20);
    BOOST_TEST(tail.next() == (detail::chunk_run{5 * gib, five_gib_plus_3}));
    BOOST_TEST(tail.done());

    // Near INT64_MAX, next + max_chunks (and ways * max_chunks) would overflow; the split must compute
    // neither.
    detail::run_splitter edge({int64_max - 5, int64_max, 0}, int64_max, 2);
    BOOST_TEST(edge.next() == (detail::chunk_run{int64_max - 5, int64_max}));
    BOOST_TEST(edge.done());
    const std::vector<detail::chunk_run> wide{{int64_max - 10, int64_max - 5}, {int64_max - 5, int64_max}};
    const std::vector<detail::chunk_run> whole{{int64_max - 10, int64_max}};
    BOOST_TEST(all_runs(detail::run_splitter({int64_max - 10, int64_max, 0}, int64_max / 2 + 3, 3)) == whole,
               boost::test_tools::per_element());
    BOOST_TEST(all_runs(detail::run_splitter({int64_max - 10, int64_max, 0}, 6, 2)) == wide,
               boost::test_tools::per_element());
}

namespace {

bson::document files_doc(const std::function<void(bson::builder&)>& fill) {
    bson::builder b;
    b.append("_id", bson::new_oid());
    fill(b);
    b.append("filename", std::string_view("f"));
    return b.extract();
}

}  // namespace

BOOST_AUTO_TEST_CASE(layout_from_files_document_accepts_any_integral_number) {
    const auto int64_doc = files_doc([](bson::builder& b) {
        b.append("length", five_gib_plus_3);
        b.append("chunkSize", std::int32_t{261120});
    });
    const auto a = detail::chunk_layout::from_files_document(int64_doc);
    BOOST_TEST(a.length() == five_gib_plus_3);
    BOOST_TEST(a.chunk_size() == 261120);
    BOOST_TEST(a.chunk_count() == 20'561);

    // Legacy files: int32 length, double chunkSize.
    const auto legacy = files_doc([](bson::builder& b) {
        b.append("length", std::int32_t{10});
        b.append("chunkSize", 4.0);
    });
    const auto b = detail::chunk_layout::from_files_document(legacy);
    BOOST_TEST(b.length() == 10);
    BOOST_TEST(b.chunk_size() == 4);

    const auto double_length = files_doc([](bson::builder& d) {
        d.append("length", 8.0);
        d.append("chunkSize", std::int64_t{4});
    });
    BOOST_TEST(detail::chunk_layout::from_files_document(double_length).chunk_count() == 2);
}

BOOST_AUTO_TEST_CASE(layout_from_files_document_rejects_corrupt_fields) {
    const auto check = [](const std::function<void(bson::builder&)>& fill, const std::string& fragment) {
        const auto doc = files_doc(fill);
        BOOST_CHECK_EXCEPTION((void)detail::chunk_layout::from_files_document(doc), gridflow::error,
                              fails_with(errc::corrupt_file, fragment));
    };
    check([](bson::builder& b) { b.append("chunkSize", std::int32_t{4}); }, "'length' is missing");
    check([](bson::builder& b) { b.append("length", std::int64_t{4}); }, "'chunkSize' is missing");
    check(
        [](bson::builder& b) {
            b.append("length", std::string_view("10"));
            b.append("chunkSize", std::int32_t{4});
        },
        "'length' is not an integer");
    check(
        [](bson::builder& b) {
            b.append("length", 10.5);
            b.append("chunkSize", std::int32_t{4});
        },
        "'length' is not an integer");
    check(
        [](bson::builder& b) {
            b.append("length", std::int64_t{-1});
            b.append("chunkSize", std::int32_t{4});
        },
        "negative");
    check(
        [](bson::builder& b) {
            b.append("length", std::int64_t{1});
            b.append("chunkSize", std::int32_t{0});
        },
        "chunkSize");
    check(
        [](bson::builder& b) {
            b.append("length", std::int64_t{1});
            b.append("chunkSize", std::int64_t{int32_max} + 1);
        },
        "chunkSize");
}
