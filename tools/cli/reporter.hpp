// Everything the tool says on stderr: one line per failure, informational lines (unless --quiet), detail
// (with --verbose), and on a terminal one progress bar per running transfer.
//
// Bars are redrawn in place below the other output: every line printed while bars are shown first erases
// them, prints, and draws them again, so messages and bars never overwrite each other. Redraws are throttled
// to a few per second.
//
// Thread safety: none; used from the one I/O thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gridflow::cli {

class reporter {
public:
    // bars: draw progress bars (stderr is a terminal and --quiet was not given).
    reporter(bool quiet, int verbosity, bool bars) noexcept
        : quiet_(quiet), verbosity_(verbosity), bars_(bars) {}
    reporter(const reporter&) = delete;
    reporter& operator=(const reporter&) = delete;

    void info(std::string_view line);
    void detail(int level, std::string_view line);
    // "gridflow: <line>", whatever --quiet says.
    void failure(std::string_view line);

    [[nodiscard]] int verbosity() const noexcept { return verbosity_; }
    [[nodiscard]] bool bars() const noexcept { return bars_; }

    // One transfer's bar. Destroyed without done(), it just disappears (the failure line says why).
    class bar {
    public:
        bar(const bar&) = delete;
        bar& operator=(const bar&) = delete;
        ~bar();
        void advance(std::int64_t bytes);
        // Replaces the bar by a line saying what was done (printed unless --quiet).
        void done(std::string_view line);
        [[nodiscard]] std::int64_t bytes() const noexcept { return bytes_; }
        [[nodiscard]] std::chrono::steady_clock::duration elapsed() const noexcept {
            return std::chrono::steady_clock::now() - start_;
        }

    private:
        friend class reporter;
        bar(reporter& owner, std::string label, std::optional<std::int64_t> total);
        [[nodiscard]] std::string render(std::size_t width) const;
        reporter& owner_;
        std::string label_;
        std::optional<std::int64_t> total_;
        std::int64_t bytes_ = 0;
        std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
    };

    // total: the transfer's size when known (no ETA without it).
    [[nodiscard]] std::unique_ptr<bar> start(std::string label, std::optional<std::int64_t> total);

    // Bars of transfers writing to stdout on a terminal would garble that output: off from then on.
    void disable_bars() noexcept;

private:
    void print(std::string_view text);
    void redraw(bool force);
    [[nodiscard]] std::string erase_bars();
    [[nodiscard]] std::string draw_bars();

    bool quiet_;
    int verbosity_;
    bool bars_;
    std::vector<bar*> active_;
    std::size_t drawn_ = 0;
    std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace gridflow::cli
