/* libmongoc-bench: the libmongoc peer client of bench/run (issue 6), on Debian's libmongoc-dev and its
 * mongoc_gridfs_bucket_* API, used as its documentation shows.
 *
 *   libmongoc-bench URI OP SCENARIO SERVER DELAY_MS SIZE COUNT FILE
 *
 * OP upload: COUNT files of SIZE bytes named "<SCENARIO>-<i>" (files under 1 MiB are read from FILE into memory
 * before the clock starts and written through an upload stream; larger ones are streamed from FILE with
 * mongoc_gridfs_bucket_upload_from_stream). OP download: the files with string _id "<SCENARIO>-<i>", read
 * through a 1 MiB buffer and dropped. One file at a time, as the API is synchronous. Prints one JSON line like
 * every client of bench/run; exit status 1 on failure (message on stderr).
 *
 * Warm-up, outside the clock and the same in every client of bench/run, for both operations: after the client
 * and bucket exist, one 1-byte file named "warmup" is uploaded through the same bucket (as the MongoDB driver
 * benchmarking spec does before its GridFS tasks), so that connecting, the handshake and the bucket's index
 * check are done before the clock starts. */
#include <mongoc/mongoc.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what, const bson_error_t *error) {
    fprintf(stderr, "libmongoc-bench: %s: %s\n", what, error ? error->message : "failed");
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 9) {
        fprintf(stderr, "usage: libmongoc-bench URI OP SCENARIO SERVER DELAY_MS SIZE COUNT FILE\n");
        return 2;
    }
    const char *uri_text = argv[1], *op = argv[2], *scenario = argv[3], *server = argv[4], *delay = argv[5];
    const long long size = atoll(argv[6]), count = atoll(argv[7]);
    const char *path = argv[8];
    const int upload = strcmp(op, "upload") == 0;
    if (!upload && strcmp(op, "download") != 0) {
        fprintf(stderr, "libmongoc-bench: unknown operation '%s'\n", op);
        return 2;
    }

    mongoc_init();
    bson_error_t error;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_text, &error);
    if (!uri)
        return fail("bad URI", &error);
    mongoc_client_t *client = mongoc_client_new_from_uri(uri);
    mongoc_database_t *db = mongoc_client_get_database(client, "bench");
    mongoc_gridfs_bucket_t *bucket = mongoc_gridfs_bucket_new(db, NULL, NULL, &error);
    if (!bucket)
        return fail("bucket", &error);

    const int in_memory = size < 1024 * 1024;
    uint8_t *data = NULL;
    if (upload && in_memory) {
        data = malloc((size_t)size + 1);
        FILE *f = fopen(path, "rb");
        if (!f || fread(data, 1, (size_t)size, f) != (size_t)size)
            return fail("reading the data file", NULL);
        fclose(f);
    }
    const size_t buffer_size = 1024 * 1024;
    uint8_t *buffer = upload ? NULL : malloc(buffer_size);

    {
        /* The warm-up (see the header): one 1-byte file through the bucket that is timed below. */
        uint8_t one_byte[1] = {0};
        bson_value_t id;
        mongoc_stream_t *up = mongoc_gridfs_bucket_open_upload_stream(bucket, "warmup", NULL, &id, &error);
        if (!up)
            return fail("warm-up open_upload_stream", &error);
        if (mongoc_stream_write(up, one_byte, 1, 0) != 1 || mongoc_stream_close(up) != 0) {
            mongoc_gridfs_bucket_stream_error(up, &error);
            return fail("warm-up upload", &error);
        }
        mongoc_stream_destroy(up);
        bson_value_destroy(&id);
    }

    long long total = 0;
    const double started = now_s();
    for (long long i = 0; i < count; ++i) {
        char name[256];
        snprintf(name, sizeof name, "%s-%lld", scenario, i);
        if (upload) {
            bson_value_t id;
            if (in_memory) {
                mongoc_stream_t *up = mongoc_gridfs_bucket_open_upload_stream(bucket, name, NULL, &id, &error);
                if (!up)
                    return fail("open_upload_stream", &error);
                if (mongoc_stream_write(up, data, (size_t)size, 0) != (ssize_t)size) {
                    mongoc_gridfs_bucket_stream_error(up, &error);
                    return fail("upload write", &error);
                }
                if (mongoc_stream_close(up) != 0) {
                    mongoc_gridfs_bucket_stream_error(up, &error);
                    return fail("upload close", &error);
                }
                mongoc_stream_destroy(up);
            } else {
                mongoc_stream_t *source = mongoc_stream_file_new_for_path(path, O_RDONLY, 0);
                if (!source)
                    return fail("opening the data file", NULL);
                if (!mongoc_gridfs_bucket_upload_from_stream(bucket, name, source, NULL, &id, &error))
                    return fail("upload_from_stream", &error);
                mongoc_stream_destroy(source);
            }
            bson_value_destroy(&id);
            total += size;
        } else {
            bson_value_t id;
            id.value_type = BSON_TYPE_UTF8;
            id.value.v_utf8.str = name;
            id.value.v_utf8.len = (uint32_t)strlen(name);
            mongoc_stream_t *down = mongoc_gridfs_bucket_open_download_stream(bucket, &id, &error);
            if (!down)
                return fail("open_download_stream", &error);
            long long got = 0;
            for (;;) {
                const ssize_t n = mongoc_stream_read(down, buffer, buffer_size, 1, 0);
                if (n < 0) {
                    mongoc_gridfs_bucket_stream_error(down, &error);
                    return fail("download read", &error);
                }
                if (n == 0)
                    break;
                got += n;
            }
            if (mongoc_gridfs_bucket_stream_error(down, &error))
                return fail("download", &error);
            mongoc_stream_destroy(down);
            if (got != size) {
                fprintf(stderr, "libmongoc-bench: %s: read %lld bytes, expected %lld\n", name, got, size);
                return 1;
            }
            total += got;
        }
    }
    const double seconds = now_s() - started;
    printf("{\"client\": \"libmongoc\", \"server\": \"%s\", \"scenario\": \"%s\", \"op\": \"%s\", \"bytes\": %lld, "
           "\"files\": %lld, \"delay_ms\": %s, \"seconds\": %.6f, \"mb_per_s\": %.3f, \"files_per_s\": %.3f}\n",
           server, scenario, op, total, count, delay, seconds, seconds > 0 ? (double)total / 1e6 / seconds : 0.0,
           seconds > 0 ? (double)count / seconds : 0.0);

    free(data);
    free(buffer);
    mongoc_gridfs_bucket_destroy(bucket);
    mongoc_database_destroy(db);
    mongoc_client_destroy(client);
    mongoc_uri_destroy(uri);
    mongoc_cleanup();
    return 0;
}
