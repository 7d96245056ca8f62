// Local files: the source of a put and the target of a get. Every call here blocks; the transfers run them
// on the blocking pool (blocking_pool.hpp), never on the I/O thread (DESIGN.md, invariant 5).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

namespace gridflow::cli {

// A local file could not be opened, read, written or renamed; what() names the file and the OS's reason.
class local_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A file read from start to end: a path, or stdin for "-".
class input_file {
public:
    // Throws local_error when the file cannot be opened or is a directory.
    explicit input_file(const std::string& path);
    input_file(const input_file&) = delete;
    input_file& operator=(const input_file&) = delete;
    ~input_file();

    // The size of a regular file; empty for stdin and pipes.
    [[nodiscard]] std::optional<std::int64_t> size() const noexcept { return size_; }
    [[nodiscard]] const std::string& name() const noexcept { return name_; }

    // Fills out as far as the file allows; fewer bytes only at the end, 0 at the end.
    std::size_t read(std::span<std::uint8_t> out);

private:
    int fd_ = -1;
    bool owned_ = false;
    std::string name_;
    std::optional<std::int64_t> size_;
};

// A file written under a temporary name in its target's folder and renamed onto the target by commit(), so a
// failed download never leaves a partial file under the real name and never destroys an existing one. "-"
// writes stdout directly (nothing to rename; a failure may leave part of the file written).
class output_file {
public:
    // Throws local_error when the folder cannot take the temporary file (permission denied, no such folder)
    // or the target is a directory.
    explicit output_file(const std::filesystem::path& target);
    output_file(const output_file&) = delete;
    output_file& operator=(const output_file&) = delete;
    // Without commit(): closes and removes the temporary file.
    ~output_file();

    void write(std::span<const std::uint8_t> data);
    // Gives the file the mode a newly created file gets (or the replaced file's mode), and renames it onto
    // the target.
    void commit();

    [[nodiscard]] bool is_stdout() const noexcept { return stdout_; }

private:
    int fd_ = -1;
    bool stdout_ = false;
    std::filesystem::path target_;
    std::filesystem::path temporary_;
    std::string name_;
};

// True when a GridFS file name, used as a local path, would leave the current folder: an absolute path, or
// one with a ".." component.
[[nodiscard]] bool escapes_folder(std::string_view name);

}  // namespace gridflow::cli
