/* engine/extract.c - see extract.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/sha256.h"
#include "engine/extract.h"

#define MAX_ENTRIES 1000000

static struct archive *open_reader(const char *path)
{
        struct archive *a = archive_read_new();
        if (!a)
                return NULL;
        archive_read_support_format_tar(a);
        archive_read_support_format_gnutar(a);
        archive_read_support_filter_gzip(a);
        archive_read_support_filter_bzip2(a);
        archive_read_support_filter_xz(a);
        archive_read_support_filter_zstd(a);
        if (archive_read_open_filename(a, path, 65536) != ARCHIVE_OK) {
                archive_read_free(a);
                return NULL;
        }
        return a;
}

int ossb_archive_detect(const char *path)
{
        struct stat st;
        /* only regular files: opening a FIFO would block */
        if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
                return 0;
        struct archive *a = open_reader(path);
        struct archive_entry *e;
        if (!a)
                return 0;
        int r = archive_read_next_header(a, &e);
        archive_read_free(a);
        return r == ARCHIVE_OK || r == ARCHIVE_WARN || r == ARCHIVE_EOF ? 1 : 0;
}

static int write_data(struct archive *a, int fd)
{
        const void *buf;
        size_t size;
        la_int64_t off;
        for (;;) {
                int r = archive_read_data_block(a, &buf, &size, &off);
                if (r == ARCHIVE_EOF)
                        return 0;
                if (r != ARCHIVE_OK)
                        return -EIO;
                const char *p = buf;
                while (size > 0) {
                        ssize_t n = pwrite(fd, p, size, off);
                        if (n < 0) {
                                if (errno == EINTR)
                                        continue;
                                return -errno;
                        }
                        p += n;
                        off += n;
                        size -= (size_t) n;
                }
        }
}

/* Write one entry at canonical relative path `rel`. */
static int extract_entry(const struct ossb_tree *t, struct archive *a, struct archive_entry *e, const char *rel,
                         const char *into_rel, int64_t uid, int64_t gid, struct ossb_error **err)
{
        _cleanup_free_ char *abs = ossb_tree_abs(t, rel);
        mode_t type = archive_entry_filetype(e);
        mode_t mode = archive_entry_perm(e) & 07777;
        struct stat st;
        int r = 0;

        if (!abs)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (lstat(abs, &st) == 0 && !(S_ISDIR(st.st_mode) && type == AE_IFDIR)) {
                if (S_ISDIR(st.st_mode))
                        r = ossb_rm_rf(abs);
                else if (unlink(abs) < 0)
                        r = -errno;
                if (r < 0)
                        return ossb_error_set(err, r, "ADD: cannot replace `%s`: %s", abs, strerror(-r));
        }
        const char *hl = archive_entry_hardlink(e);
        if (hl) {
                _cleanup_free_ char *joined = ossb_path_join(into_rel, hl), *canon = NULL, *target = NULL;
                if (!joined)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                r = ossb_tree_resolve(t, joined, false, &canon, err);
                if (r < 0)
                        return r;
                target = ossb_tree_abs(t, canon);
                if (!target)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                if (link(target, abs) < 0)
                        return ossb_error_setx(err, OSSB_EXIT_BUILD, -errno, "ADD: cannot link `%s` to `%s`: %m", rel, hl);
                return 0;
        }
        switch (type) {
        case AE_IFDIR:
                if (mkdir(abs, 0700) < 0 && errno != EEXIST)
                        r = -errno;
                break;
        case AE_IFREG: {
                _cleanup_close_ int fd = open(abs, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                r = fd < 0 ? -errno : write_data(a, fd);
                break;
        }
        case AE_IFLNK:
                r = symlink(archive_entry_symlink(e) ? archive_entry_symlink(e) : "", abs) < 0 ? -errno : 0;
                break;
        case AE_IFCHR:
        case AE_IFBLK:
        case AE_IFIFO:
                r = mknod(abs, type | mode, archive_entry_rdev(e)) < 0 ? -errno : 0;
                break;
        default:
                return ossb_error_setx(err, OSSB_EXIT_BUILD, -EINVAL, "ADD: unsupported entry type for `%s`",
                                       archive_entry_pathname(e));
        }
        if (r < 0)
                return ossb_error_setx(err, OSSB_EXIT_BUILD, r, "ADD: cannot extract `%s`: %s", archive_entry_pathname(e),
                                       strerror(-r));
        uid_t u = uid >= 0 ? (uid_t) uid : (uid_t) archive_entry_uid(e);
        gid_t g = gid >= 0 ? (gid_t) gid : (gid_t) archive_entry_gid(e);
        if (lchown(abs, u, g) < 0 && errno != EPERM && errno != EINVAL)
                return ossb_error_set(err, -errno, "ADD: cannot chown `%s`: %m", abs);
        if (type != AE_IFLNK && chmod(abs, mode) < 0)
                return ossb_error_set(err, -errno, "ADD: cannot chmod `%s`: %m", abs);
        struct timespec ts[2] = {
                { .tv_sec = archive_entry_mtime(e), .tv_nsec = archive_entry_mtime_nsec(e) },
                { .tv_sec = archive_entry_mtime(e), .tv_nsec = archive_entry_mtime_nsec(e) },
        };
        (void) utimensat(AT_FDCWD, abs, ts, AT_SYMLINK_NOFOLLOW);
        return type == AE_IFDIR ? 1 : 0;
}

struct dir_time {
        char *rel;
        struct timespec ts;
};

/* Directories get their archive times back once everything below them is written. */
static void restore_dir_times(const struct ossb_tree *t, struct dir_time *dirs, size_t n)
{
        for (size_t i = n; i > 0; i--) {
                _cleanup_free_ char *abs = ossb_tree_abs(t, dirs[i - 1].rel);
                struct timespec ts[2] = { dirs[i - 1].ts, dirs[i - 1].ts };
                if (abs)
                        (void) utimensat(AT_FDCWD, abs, ts, AT_SYMLINK_NOFOLLOW);
                free(dirs[i - 1].rel);
        }
        free(dirs);
}

int ossb_archive_extract(const struct ossb_tree *t, const char *into_rel, const char *archive, int64_t uid,
                         int64_t gid, struct ossb_changes *c, struct ossb_error **err)
{
        struct archive *a = open_reader(archive);
        struct archive_entry *e;
        struct dir_time *dirs = NULL;
        size_t count = 0, n_dirs = 0;
        int r = 0;

        if (!a)
                return ossb_error_setx(err, OSSB_EXIT_BUILD, -EINVAL, "ADD: cannot open archive `%s`", archive);
        for (;;) {
                int ar = archive_read_next_header(a, &e);
                if (ar == ARCHIVE_EOF)
                        break;
                if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN) {
                        r = ossb_error_setx(err, OSSB_EXIT_BUILD, -EINVAL, "ADD: corrupt archive `%s`: %s", archive,
                                            archive_error_string(a) ? archive_error_string(a) : "read error");
                        break;
                }
                if (++count > MAX_ENTRIES) {
                        r = ossb_error_setx(err, OSSB_EXIT_BUILD, -E2BIG, "ADD: archive `%s` has too many entries", archive);
                        break;
                }
                const char *name = archive_entry_pathname(e);
                if (!name)
                        continue;
                /* entries are confined to the destination: "/x", "../x" land inside it */
                _cleanup_free_ char *inside = NULL, *joined = NULL, *parent_canon = NULL;
                if (asprintf(&inside, "/%s", name) < 0) {
                        r = ossb_error_set(err, -ENOMEM, "out of memory");
                        break;
                }
                char *clean = ossb_path_clean(inside);
                if (!clean) {
                        r = ossb_error_set(err, -ENOMEM, "out of memory");
                        break;
                }
                if (streq(clean, "/")) {
                        free(clean);
                        continue;
                }
                joined = ossb_path_join(into_rel, clean);
                free(clean);
                if (!joined) {
                        r = ossb_error_set(err, -ENOMEM, "out of memory");
                        break;
                }
                /* resolve parents inside the tree, then place the last component there */
                char *slash = strrchr(joined, '/');
                const char *base = slash ? slash + 1 : joined;
                if (slash)
                        *slash = '\0';
                r = ossb_tree_mkdir_p(t, slash ? joined : "", uid >= 0 ? (uid_t) uid : 0, gid >= 0 ? (gid_t) gid : 0, -1,
                                      c, err);
                if (r >= 0)
                        r = ossb_tree_resolve(t, slash ? joined : "", true, &parent_canon, err);
                if (r < 0)
                        break;
                _cleanup_free_ char *rel = NULL;
                if (asprintf(&rel, "%s%s%s", parent_canon, *parent_canon ? "/" : "", base) < 0) {
                        r = ossb_error_set(err, -ENOMEM, "out of memory");
                        break;
                }
                r = extract_entry(t, a, e, rel, into_rel, uid, gid, err);
                if (r == 1) {
                        struct dir_time *nd = realloc(dirs, (n_dirs + 1) * sizeof(*nd));
                        r = nd ? 0 : ossb_error_set(err, -ENOMEM, "out of memory");
                        if (nd) {
                                dirs = nd;
                                dirs[n_dirs].rel = strdup(rel);
                                dirs[n_dirs].ts = (struct timespec) { .tv_sec = archive_entry_mtime(e),
                                                                      .tv_nsec = archive_entry_mtime_nsec(e) };
                                r = dirs[n_dirs++].rel ? 0 : ossb_error_set(err, -ENOMEM, "out of memory");
                        }
                }
                if (r >= 0 && ossb_changes_add(c, rel) < 0)
                        r = ossb_error_set(err, -ENOMEM, "out of memory");
                if (r < 0)
                        break;
        }
        archive_read_free(a);
        restore_dir_times(t, dirs, n_dirs);
        return r;
}

/* --- URL download ------------------------------------------------------------------------ */

struct dl {
        int fd;
        struct ossb_sha256 *h;
        int error;
};

static size_t dl_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
        struct dl *d = userdata;
        size_t len = size * nmemb, done = 0;
        while (done < len) {
                ssize_t n = write(d->fd, ptr + done, len - done);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        d->error = -errno;
                        return 0;
                }
                done += (size_t) n;
        }
        if (ossb_sha256_update(d->h, ptr, len) < 0) {
                d->error = -EIO;
                return 0;
        }
        return len;
}

int ossb_url_download(const char *url, const char *dest_path, int64_t *ret_mtime, char ret_digest[72],
                      struct ossb_error **err)
{
        struct dl d = { .fd = -1 };
        CURL *c = NULL;
        int r = 0;

        d.fd = open(dest_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (d.fd < 0)
                return ossb_error_set(err, -errno, "cannot create `%s`: %m", dest_path);
        if (ossb_sha256_new(&d.h) < 0) {
                close(d.fd);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        c = curl_easy_init();
        if (!c) {
                r = ossb_error_set(err, -ENOMEM, "cannot initialise libcurl");
                goto out;
        }
        char errbuf[CURL_ERROR_SIZE] = "";
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, dl_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
        curl_easy_setopt(c, CURLOPT_FILETIME, 1L);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(c, CURLOPT_USERAGENT, "ossb/" OSSB_VERSION);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        CURLcode cr = curl_easy_perform(c);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (cr != CURLE_OK) {
                r = ossb_error_setx(err, OSSB_EXIT_BUILD, d.error ? d.error : -EIO, "ADD %s: %s", url,
                                    errbuf[0] ? errbuf : curl_easy_strerror(cr));
                goto out;
        }
        if (status < 200 || status >= 300) {
                r = ossb_error_setx(err, OSSB_EXIT_BUILD, -EIO, "ADD %s: the server answered HTTP %ld", url, status);
                goto out;
        }
        long ft = -1;
        curl_easy_getinfo(c, CURLINFO_FILETIME, &ft);
        *ret_mtime = ft;
        if (fsync(d.fd) < 0) {
                r = ossb_error_set(err, -errno, "cannot write `%s`: %m", dest_path);
                goto out;
        }
        ossb_sha256_final(d.h, ret_digest);
out:
        if (c)
                curl_easy_cleanup(c);
        ossb_sha256_free(d.h);
        close(d.fd);
        if (r < 0)
                unlink(dest_path);
        return r;
}
