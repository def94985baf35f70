/* tests/fuzz/replay-main.c - a main() for libFuzzer targets without libFuzzer: runs every file
 * named on the command line (directories: every regular file in them) through
 * LLVMFuzzerTestOneInput, so `make check` replays the corpora in every build. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/fs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REPLAY_MAX_INPUT (64u * 1024u * 1024u)

static int run_file(const char *path, size_t *count)
{
        _cleanup_error_ struct ossb_error *err = NULL;
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        if (ossb_read_file(path, REPLAY_MAX_INPUT, &data, &len, &err) < 0) {
                fprintf(stderr, "%s\n", err && err->msg ? err->msg : path);
                return -1;
        }
        LLVMFuzzerTestOneInput((const uint8_t *) data, len);
        (*count)++;
        return 0;
}

static int run_dir(const char *dir, size_t *count)
{
        DIR *d = opendir(dir);
        struct dirent *de;
        int rc = 0;
        if (!d) {
                fprintf(stderr, "%s: %s\n", dir, strerror(errno));
                return -1;
        }
        while ((de = readdir(d))) {
                _cleanup_free_ char *p = NULL;
                struct stat st;
                if (de->d_name[0] == '.')
                        continue;
                if (asprintf(&p, "%s/%s", dir, de->d_name) < 0) {
                        rc = -1;
                        break;
                }
                if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && run_file(p, count) < 0)
                        rc = -1;
        }
        closedir(d);
        return rc;
}

int main(int argc, char **argv)
{
        size_t count = 0;
        int rc = 0;
        if (argc < 2) {
                fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
                return 2;
        }
        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        rc = 1;
                } else if ((S_ISDIR(st.st_mode) ? run_dir(argv[i], &count) : run_file(argv[i], &count)) < 0) {
                        rc = 1;
                }
        }
        printf("replayed %zu input(s)\n", count);
        return count == 0 ? 1 : rc;
}
