/* oci/pgzip.c - parallel gzip compression: fixed-size deflate blocks compressed by a small
 * thread pool and written out in order (the format is described in oci/pgzip.h).
 *
 * Owns: the block ring, the worker threads and their zlib streams.
 * Lock: p->lock protects seq_queued, seq_taken, stop and every job's `done` and `fail`.  A job
 * changes hands under that lock: the caller fills its input, queues it (seq_queued), a worker
 * takes it (seq_taken), reads the input, writes the output and sets `done`, and the caller
 * writes it out; the input stays read-only from queueing until then.  Only the caller's thread
 * calls the sink.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "common/cleanup.h"
#include "oci/pgzip.h"

#define DICT (32 * 1024)          /* deflate's window: the dictionary each block gets */
#define JOBS_PER_THREAD 2
#define MAX_THREADS_ENV 64

struct job {
        unsigned char *buf; /* DICT bytes of dictionary, then OSSB_PGZIP_BLOCK of input */
        size_t dict_len;
        size_t in_len;
        bool last;
        unsigned char *out; /* owned; grown by the worker if ever too small */
        size_t out_cap;
        size_t out_len;
        uLong crc;      /* CRC-32 of the input (without the dictionary) */
        bool done;      /* protected by lock */
        bool fail;      /* inject a failure (tests); protected by lock */
        int err;        /* 0 or -errno, valid once done */
        char msg[96];   /* message for err */
};

struct worker {
        struct ossb_pgzip *p;
        z_stream z;
        bool z_init;
        int z_level; /* the level z is set to (blocks that look random are stored: level 0) */
};

struct ossb_pgzip {
        int level;
        ossb_sink_fn sink;
        void *userdata;
        unsigned nthreads;     /* workers; 0 = compress in the caller */
        struct job *jobs;
        size_t njobs;
        struct worker *workers; /* max(nthreads, 1) entries; [0] is the caller's when nthreads 0 */
        pthread_t *tids;
        unsigned started;
        uint64_t seq_fill;     /* the job the caller fills */
        uint64_t seq_write;    /* the oldest job not yet written out */
        uint64_t seq_queued;   /* jobs before this one are queued; protected by lock */
        uint64_t seq_taken;    /* jobs before this one were taken by a worker; protected by lock */
        uint64_t fail_seq;     /* UINT64_MAX: no injected failure */
        bool stop;             /* protected by lock */
        bool lock_init;
        pthread_mutex_t lock;
        pthread_cond_t work_cv; /* a job was queued, or stop */
        pthread_cond_t done_cv; /* a job is done */
        bool header_done;
        bool finished;
        int failed;            /* sticky error code */
        uLong crc;
        uint64_t total;
};

static unsigned cpu_count(void)
{
        cpu_set_t set;
        long n = 0;

        if (sched_getaffinity(0, sizeof(set), &set) == 0)
                n = CPU_COUNT(&set);
        if (n <= 0)
                n = sysconf(_SC_NPROCESSORS_ONLN);
        return n <= 0 ? 1 : (unsigned) n;
}

unsigned ossb_pgzip_default_threads(void)
{
        const char *e = secure_getenv("OSSB_COMPRESS_THREADS");
        unsigned n;

        if (e && *e) {
                char *end = NULL;
                errno = 0;
                unsigned long v = strtoul(e, &end, 10);
                if (errno == 0 && end && *end == '\0' && v >= 1 && v <= MAX_THREADS_ENV)
                        return (unsigned) v;
        }
        n = cpu_count();
        return n > OSSB_PGZIP_MAX_THREADS ? OSSB_PGZIP_MAX_THREADS : n;
}

unsigned ossb_pgzip_threads(const struct ossb_pgzip *p)
{
        return p->nthreads;
}

/* ---- compressing one block (any thread) ---- */

static int job_fail(struct job *j, int code, const char *what, const z_stream *z)
{
        snprintf(j->msg, sizeof(j->msg), "%s%s%s", what, z && z->msg ? ": " : "", z && z->msg ? z->msg : "");
        j->err = code;
        return code;
}

/* Make sure at least 64 bytes of output space are free. */
static int job_out_reserve(struct job *j)
{
        if (j->out_cap - j->out_len >= 64)
                return 0;
        size_t cap = j->out_cap * 2;
        unsigned char *o = realloc(j->out, cap);
        if (!o)
                return job_fail(j, -ENOMEM, "out of memory", NULL);
        j->out = o;
        j->out_cap = cap;
        return 0;
}

/* Whether a block's bytes are spread as evenly as random data's (compressed files, random
 * test data): deflate cannot shrink those, so they are stored rather than searched for
 * matches, several times faster.  A chi-square test of the byte histogram against the
 * uniform one: random data scores about 255, anything deflate can compress far more.  The
 * answer depends on the block's bytes only, so the output stays deterministic. */
#define RANDOM_MIN_LEN 4096
#define RANDOM_MAX_CHI2 600

static bool looks_random(const unsigned char *b, size_t n)
{
        uint32_t count[256] = { 0 };
        uint64_t sq = 0;
        if (n < RANDOM_MIN_LEN)
                return false;
        for (size_t i = 0; i < n; i++)
                count[b[i]]++;
        for (size_t i = 0; i < 256; i++)
                sq += (uint64_t) count[i] * count[i];
        /* chi2 = sum (c - n/256)^2 / (n/256) = 256 * sum(c^2) / n - n */
        return 256 * sq < (uint64_t) (RANDOM_MAX_CHI2 + n) * n;
}

static int compress_block(struct worker *w, struct job *j, bool inject)
{
        z_stream *z = &w->z;
        int flush = j->last ? Z_FINISH : Z_SYNC_FLUSH;

        j->err = 0;
        j->out_len = 0;
        j->crc = crc32(crc32(0L, Z_NULL, 0), j->buf + DICT, (uInt) j->in_len);
        if (deflateReset(z) != Z_OK)
                return job_fail(j, -EIO, "cannot reset zlib", z);
        int level = looks_random(j->buf + DICT, j->in_len) ? 0 : w->p->level;
        if (level != w->z_level) {
                if (deflateParams(z, level, Z_DEFAULT_STRATEGY) != Z_OK)
                        return job_fail(j, -EIO, "cannot set the deflate level", z);
                w->z_level = level;
        }
        if (j->dict_len > 0 && deflateSetDictionary(z, j->buf + DICT - j->dict_len, (uInt) j->dict_len) != Z_OK)
                return job_fail(j, -EIO, "cannot set the deflate dictionary", z);
        z->next_in = j->buf + DICT;
        z->avail_in = (uInt) j->in_len;
        for (;;) {
                if (job_out_reserve(j) < 0)
                        return j->err;
                z->next_out = j->out + j->out_len;
                z->avail_out = (uInt) (j->out_cap - j->out_len);
                int zr = inject ? Z_STREAM_ERROR : deflate(z, flush);
                j->out_len = j->out_cap - z->avail_out;
                if (zr == Z_STREAM_ERROR || (zr == Z_BUF_ERROR && z->avail_out > 0))
                        return job_fail(j, -EIO, "deflate failed", inject ? NULL : z);
                if (j->last ? zr == Z_STREAM_END : z->avail_out > 0)
                        return 0;
        }
}

/* ---- workers ---- */

static void *worker_main(void *arg)
{
        struct worker *w = arg;
        struct ossb_pgzip *p = w->p;

        pthread_mutex_lock(&p->lock);
        for (;;) {
                while (!p->stop && p->seq_taken == p->seq_queued)
                        pthread_cond_wait(&p->work_cv, &p->lock);
                if (p->stop)
                        break;
                struct job *j = &p->jobs[p->seq_taken % p->njobs];
                bool inject = j->fail;
                p->seq_taken++;
                pthread_mutex_unlock(&p->lock);
                (void) compress_block(w, j, inject);
                pthread_mutex_lock(&p->lock);
                j->done = true;
                pthread_cond_broadcast(&p->done_cv);
        }
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

static int start_workers(struct ossb_pgzip *p, struct ossb_error **err)
{
        sigset_t all, old;

        p->tids = calloc(p->nthreads, sizeof(*p->tids));
        if (!p->tids)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        /* workers never handle signals: start them with every signal blocked */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int r = 0;
        for (; p->started < p->nthreads; p->started++) {
                r = pthread_create(&p->tids[p->started], NULL, worker_main, &p->workers[p->started]);
                if (r != 0)
                        break;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r != 0)
                return ossb_error_set(err, -r, "cannot start a compression thread: %s", strerror(r));
        return 0;
}

/* ---- the caller's side ---- */

static int alloc_parts(struct ossb_pgzip *p, struct ossb_error **err)
{
        unsigned nz = p->nthreads ? p->nthreads : 1;

        p->njobs = p->nthreads ? (size_t) p->nthreads * JOBS_PER_THREAD + 1 : 1;
        p->jobs = calloc(p->njobs, sizeof(*p->jobs));
        p->workers = calloc(nz, sizeof(*p->workers));
        if (!p->jobs || !p->workers)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (unsigned i = 0; i < nz; i++) {
                struct worker *w = &p->workers[i];
                w->p = p;
                /* raw deflate (-15): the gzip wrapper is written here; memLevel 8 as gzip(1) */
                if (deflateInit2(&w->z, p->level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
                        return ossb_error_set(err, -ENOMEM, "cannot initialise zlib");
                w->z_init = true;
                w->z_level = p->level;
        }
        size_t bound = deflateBound(&p->workers[0].z, OSSB_PGZIP_BLOCK) + 64;
        for (size_t i = 0; i < p->njobs; i++) {
                p->jobs[i].buf = malloc(DICT + OSSB_PGZIP_BLOCK);
                p->jobs[i].out = malloc(bound);
                if (!p->jobs[i].buf || !p->jobs[i].out)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                p->jobs[i].out_cap = bound;
        }
        return 0;
}

int ossb_pgzip_new(int level, unsigned threads, ossb_sink_fn sink, void *userdata, struct ossb_pgzip **ret,
                   struct ossb_error **err)
{
        struct ossb_pgzip *p;
        int r;

        if (level == -1)
                level = 6;
        else if (level < 0 || level > 9)
                return ossb_error_set(err, -EINVAL, "gzip level %d is out of range (0-9)", level);
        if (threads == 0)
                threads = ossb_pgzip_default_threads();
        if (threads > MAX_THREADS_ENV)
                return ossb_error_set(err, -EINVAL, "%u compression threads is too many (1-%d)", threads,
                                      MAX_THREADS_ENV);
        p = calloc(1, sizeof(*p));
        if (!p)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        p->level = level;
        p->sink = sink;
        p->userdata = userdata;
        p->nthreads = threads == 1 ? 0 : threads;
        p->fail_seq = UINT64_MAX;
        p->crc = crc32(0L, Z_NULL, 0);
        r = alloc_parts(p, err);
        if (r >= 0 && p->nthreads > 0) {
                pthread_mutex_init(&p->lock, NULL);
                pthread_cond_init(&p->work_cv, NULL);
                pthread_cond_init(&p->done_cv, NULL);
                p->lock_init = true;
                r = start_workers(p, err);
        }
        if (r < 0) {
                ossb_pgzip_free(p);
                return r;
        }
        *ret = p;
        return 0;
}

void ossb_pgzip_inject_failure(struct ossb_pgzip *p, uint64_t seq)
{
        p->fail_seq = seq;
}

static void put_le32(unsigned char *b, uint32_t v)
{
        b[0] = v & 0xff;
        b[1] = (v >> 8) & 0xff;
        b[2] = (v >> 16) & 0xff;
        b[3] = (v >> 24) & 0xff;
}

/* The 10-byte header zlib writes for our gz_header: no flags, mtime 0, XFL from the level, OS 255. */
static int write_header(struct ossb_pgzip *p, struct ossb_error **err)
{
        unsigned char h[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255 };

        h[8] = p->level == 9 ? 2 : p->level < 2 ? 4 : 0;
        p->header_done = true;
        return p->sink(p->userdata, h, sizeof(h), err);
}

/* Write out the oldest job; wait for it when `wait`.  Returns 1 if written, 0 if not ready. */
static int write_oldest(struct ossb_pgzip *p, bool wait, struct ossb_error **err)
{
        struct job *j = &p->jobs[p->seq_write % p->njobs];
        int r;

        if (p->nthreads > 0) {
                pthread_mutex_lock(&p->lock);
                while (wait && !j->done)
                        pthread_cond_wait(&p->done_cv, &p->lock);
                bool done = j->done;
                j->done = false;
                pthread_mutex_unlock(&p->lock);
                if (!done)
                        return 0;
        }
        if (j->err < 0)
                return ossb_error_set(err, j->err, "gzip compression failed: %s", j->msg);
        if (!p->header_done) {
                r = write_header(p, err);
                if (r < 0)
                        return r;
        }
        if (j->out_len > 0) {
                r = p->sink(p->userdata, j->out, j->out_len, err);
                if (r < 0)
                        return r;
        }
        p->crc = crc32_combine(p->crc, j->crc, (z_off_t) j->in_len);
        p->total += j->in_len;
        p->seq_write++;
        return 1;
}

/* Hand the filled job to a worker (or compress it here), then write out what is ready. */
static int submit(struct ossb_pgzip *p, bool last, struct ossb_error **err)
{
        struct job *j = &p->jobs[p->seq_fill % p->njobs];
        bool inject = p->seq_fill == p->fail_seq;

        j->last = last;
        if (p->nthreads == 0) {
                (void) compress_block(&p->workers[0], j, inject);
                return write_oldest(p, true, err);
        }
        pthread_mutex_lock(&p->lock);
        j->fail = inject;
        j->done = false;
        p->seq_queued = p->seq_fill + 1;
        pthread_cond_signal(&p->work_cv);
        pthread_mutex_unlock(&p->lock);
        for (;;) {
                int r = write_oldest(p, false, err);
                if (r <= 0)
                        return r;
                if (p->seq_write == p->seq_queued)
                        return 0;
        }
}

/* Move on to the next job: wait for its slot, give it the last DICT bytes of the full one. */
static int next_job(struct ossb_pgzip *p, struct ossb_error **err)
{
        const struct job *prev = &p->jobs[p->seq_fill % p->njobs];

        while (p->seq_fill + 1 - p->seq_write >= p->njobs) {
                int r = write_oldest(p, true, err);
                if (r < 0)
                        return r;
        }
        struct job *j = &p->jobs[(p->seq_fill + 1) % p->njobs];
        /* with one job the source is the same buffer, but the regions never overlap */
        memcpy(j->buf, prev->buf + DICT + OSSB_PGZIP_BLOCK - DICT, DICT);
        j->dict_len = DICT;
        j->in_len = 0;
        p->seq_fill++;
        return 0;
}

static int check_usable(struct ossb_pgzip *p, struct ossb_error **err)
{
        if (p->failed < 0)
                return ossb_error_set(err, p->failed, "the gzip stream failed earlier");
        if (p->finished)
                return ossb_error_set(err, -EINVAL, "write after the end of a compressed stream");
        return 0;
}

int ossb_pgzip_write(struct ossb_pgzip *p, const void *data, size_t len, struct ossb_error **err)
{
        const unsigned char *d = data;
        int r = check_usable(p, err);

        while (r >= 0 && len > 0) {
                struct job *j = &p->jobs[p->seq_fill % p->njobs];
                if (j->in_len == OSSB_PGZIP_BLOCK) {
                        /* more input follows a full block: only now is it known not to be the last */
                        r = submit(p, false, err);
                        if (r >= 0)
                                r = next_job(p, err);
                        continue;
                }
                size_t n = OSSB_PGZIP_BLOCK - j->in_len;
                if (n > len)
                        n = len;
                memcpy(j->buf + DICT + j->in_len, d, n);
                j->in_len += n;
                d += n;
                len -= n;
        }
        if (r < 0 && p->failed == 0)
                p->failed = r;
        return r < 0 ? r : 0;
}

int ossb_pgzip_finish(struct ossb_pgzip *p, struct ossb_error **err)
{
        unsigned char trailer[8];
        int r = check_usable(p, err);

        if (r < 0)
                return r;
        p->finished = true;
        r = submit(p, true, err);
        while (r >= 0 && p->seq_write <= p->seq_fill)
                r = write_oldest(p, true, err);
        if (r >= 0) {
                put_le32(trailer, (uint32_t) p->crc);
                put_le32(trailer + 4, (uint32_t) p->total);
                r = p->sink(p->userdata, trailer, sizeof(trailer), err);
        }
        if (r < 0) {
                p->failed = r;
                return r;
        }
        return 0;
}

void ossb_pgzip_free(struct ossb_pgzip *p)
{
        if (!p)
                return;
        if (p->lock_init) {
                pthread_mutex_lock(&p->lock);
                p->stop = true;
                pthread_cond_broadcast(&p->work_cv);
                pthread_mutex_unlock(&p->lock);
        }
        for (unsigned i = 0; i < p->started; i++)
                pthread_join(p->tids[i], NULL);
        if (p->lock_init) {
                pthread_mutex_destroy(&p->lock);
                pthread_cond_destroy(&p->work_cv);
                pthread_cond_destroy(&p->done_cv);
        }
        for (unsigned i = 0; p->workers && i < (p->nthreads ? p->nthreads : 1); i++)
                if (p->workers[i].z_init)
                        deflateEnd(&p->workers[i].z);
        for (size_t i = 0; p->jobs && i < p->njobs; i++) {
                free(p->jobs[i].buf);
                free(p->jobs[i].out);
        }
        free(p->jobs);
        free(p->workers);
        free(p->tids);
        free(p);
}
