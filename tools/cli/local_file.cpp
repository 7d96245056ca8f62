#include "local_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

namespace gridflow::cli {

namespace {

std::string reason(int code) {
    return std::strerror(code);
}

// The mode open(2) would give a new file: 0666 less the umask, which can only be read by setting it. The
// first call happens before any transfer starts (output_file's constructor), so no file is created while the
// umask is briefly 0.
mode_t new_file_mode() {
    static const mode_t mode = [] {
        const mode_t mask = ::umask(0);
        ::umask(mask);
        return static_cast<mode_t>(0666 & ~mask);
    }();
    return mode;
}

}  // namespace

input_file::input_file(const std::string& path) : name_(path) {
    if (path == "-") {
        fd_ = STDIN_FILENO;
        name_ = "stdin";
    } else {
        fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0)
            throw local_error("cannot read local file '" + path + "': " + reason(errno));
        owned_ = true;
    }
    struct stat st {};
    if (::fstat(fd_, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            const int fd = std::exchange(fd_, -1);
            if (owned_)
                ::close(fd);
            throw local_error("cannot read local file '" + path + "': " + reason(EISDIR));
        }
        if (S_ISREG(st.st_mode)) {
            // stdin redirected from a file may already be past its start.
            const off_t at = ::lseek(fd_, 0, SEEK_CUR);
            size_ = static_cast<std::int64_t>(st.st_size) - (at > 0 ? at : 0);
        }
    }
}

input_file::~input_file() {
    if (owned_ && fd_ >= 0)
        ::close(fd_);
}

std::size_t input_file::read(std::span<std::uint8_t> out) {
    std::size_t done = 0;
    while (done < out.size()) {
        const ssize_t n = ::read(fd_, out.data() + done, out.size() - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw local_error("cannot read local file '" + name_ + "': " + reason(errno));
        }
        if (n == 0)
            break;
        done += static_cast<std::size_t>(n);
    }
    return done;
}

output_file::output_file(const std::filesystem::path& target) : target_(target), name_(target.string()) {
    if (target == "-") {
        fd_ = STDOUT_FILENO;
        stdout_ = true;
        name_ = "stdout";
        return;
    }
    const auto fail = [&](int code) {
        return local_error("cannot write local file '" + name_ + "': " + reason(code));
    };
    struct stat st {};
    if (::stat(target.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        throw fail(EISDIR);
    (void)new_file_mode();
    // Hidden, next to the target (so the rename stays within one file system), and short enough for NAME_MAX
    // whatever the target's name.
    const std::filesystem::path folder = target.has_parent_path() ? target.parent_path() : ".";
    const std::string base = target.filename().string().substr(0, 200);
    std::string pattern = (folder / ("." + base + ".gridflow-XXXXXX")).string();
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    fd_ = ::mkostemp(buffer.data(), O_CLOEXEC);
    if (fd_ < 0)
        throw fail(errno);
    temporary_ = buffer.data();
}

output_file::~output_file() {
    if (is_stdout())
        return;
    if (fd_ >= 0)
        ::close(fd_);
    if (!temporary_.empty())
        ::unlink(temporary_.c_str());
}

void output_file::write(std::span<const std::uint8_t> data) {
    std::size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw local_error("cannot write local file '" + name_ + "': " + reason(errno));
        }
        done += static_cast<std::size_t>(n);
    }
}

void output_file::commit() {
    if (is_stdout())
        return;
    const auto fail = [&](int code) {
        return local_error("cannot write local file '" + name_ + "': " + reason(code));
    };
    mode_t mode = new_file_mode();
    struct stat st {};
    if (::stat(target_.c_str(), &st) == 0 && S_ISREG(st.st_mode))
        mode = st.st_mode & 07777;
    if (::fchmod(fd_, mode) != 0)
        throw fail(errno);
    // close() is where some file systems (NFS) report a failed write: check it before the rename.
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0)
        throw fail(errno);
    if (::rename(temporary_.c_str(), target_.c_str()) != 0)
        throw fail(errno);
    temporary_.clear();
}

bool escapes_folder(std::string_view name) {
    if (name.empty() || name.front() == '/')
        return true;
    std::size_t start = 0;
    while (start <= name.size()) {
        auto end = name.find('/', start);
        if (end == std::string_view::npos)
            end = name.size();
        if (name.substr(start, end - start) == "..")
            return true;
        start = end + 1;
    }
    return false;
}

}  // namespace gridflow::cli
