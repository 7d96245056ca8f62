#include "reporter.hpp"

#include "format.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace gridflow::cli {

namespace {

constexpr auto redraw_interval = std::chrono::milliseconds(150);

std::size_t terminal_width() {
    winsize size{};
    if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col >= 20)
        return size.ws_col;
    return 80;
}

// One write(2) per update, so a redraw never shows half-drawn.
void write_stderr(std::string_view text) {
    while (!text.empty()) {
        const ssize_t n = ::write(STDERR_FILENO, text.data(), text.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        text.remove_prefix(static_cast<std::size_t>(n));
    }
}

}  // namespace

void reporter::info(std::string_view line) {
    if (!quiet_)
        print(std::string(line) + "\n");
}

void reporter::detail(int level, std::string_view line) {
    if (verbosity_ >= level)
        print(std::string(line) + "\n");
}

void reporter::failure(std::string_view line) {
    print("gridflow: " + std::string(line) + "\n");
}

void reporter::print(std::string_view text) {
    std::string out = erase_bars();
    out += text;
    out += draw_bars();
    write_stderr(out);
}

std::string reporter::erase_bars() {
    if (drawn_ == 0)
        return {};
    // Up to the first bar's line, then erase to the end of the screen.
    std::string out = "\x1b[" + std::to_string(drawn_) + "A\r\x1b[J";
    drawn_ = 0;
    return out;
}

std::string reporter::draw_bars() {
    if (!bars_)
        return {};
    const std::size_t width = terminal_width();
    std::string out;
    for (const bar* b : active_)
        out += b->render(width - 1) + "\n";
    drawn_ = active_.size();
    return out;
}

void reporter::redraw(bool force) {
    if (!bars_)
        return;
    const auto now = std::chrono::steady_clock::now();
    if (!force && now - last_draw_ < redraw_interval)
        return;
    last_draw_ = now;
    std::string out = erase_bars();
    out += draw_bars();
    write_stderr(out);
}

void reporter::disable_bars() noexcept {
    if (!bars_)
        return;
    write_stderr(erase_bars());
    bars_ = false;
}

std::unique_ptr<reporter::bar> reporter::start(std::string label, std::optional<std::int64_t> total) {
    std::unique_ptr<bar> b(new bar(*this, std::move(label), total));
    active_.push_back(b.get());
    redraw(true);
    return b;
}

reporter::bar::bar(reporter& owner, std::string label, std::optional<std::int64_t> total)
    : owner_(owner), label_(std::move(label)), total_(total) {}

reporter::bar::~bar() {
    auto& active = owner_.active_;
    const auto it = std::find(active.begin(), active.end(), this);
    if (it == active.end())
        return;
    active.erase(it);
    owner_.redraw(true);
}

void reporter::bar::advance(std::int64_t bytes) {
    bytes_ += bytes;
    owner_.redraw(false);
}

void reporter::bar::done(std::string_view line) {
    auto& active = owner_.active_;
    if (const auto it = std::find(active.begin(), active.end(), this); it != active.end())
        active.erase(it);
    if (!owner_.quiet_) {
        owner_.print(std::string(line) + "\n");
    } else {
        owner_.redraw(true);
    }
}

std::string reporter::bar::render(std::size_t width) const {
    const auto elapsed = std::chrono::steady_clock::now() - start_;
    std::string right = "  " + format_bytes(bytes_);
    std::string bar_text;
    if (total_ && *total_ > 0) {
        const double fraction = std::min(1.0, static_cast<double>(bytes_) / static_cast<double>(*total_));
        constexpr std::size_t cells = 20;
        const auto filled = static_cast<std::size_t>(fraction * cells);
        bar_text = " [" + std::string(filled, '#') + std::string(cells - filled, '-') + "] " +
                   std::to_string(static_cast<int>(fraction * 100)) + "%";
        right += '/';
        right += format_bytes(*total_);
    }
    right += "  " + format_rate(bytes_, elapsed);
    const double seconds = std::chrono::duration<double>(elapsed).count();
    if (total_ && bytes_ > 0 && seconds > 0.2) {
        const double left = static_cast<double>(*total_ - bytes_) / (static_cast<double>(bytes_) / seconds);
        right += "  ETA " + format_duration(std::chrono::seconds(static_cast<std::int64_t>(left + 0.5)));
    }
    right = bar_text + right;
    // The label gives way first: keep its end, which is where file names differ.
    std::string label = label_;
    const std::size_t room = width > right.size() + 8 ? width - right.size() : 8;
    if (label.size() > room)
        label = "..." + label.substr(label.size() - (room - 3));
    std::string line = label + right;
    if (line.size() > width)
        line.resize(width);
    return line;
}

}  // namespace gridflow::cli
