/*
 * iotool: a small block-device load generator for bench/transport.py, run inside the built-in
 * guest (busybox: it has dd but no fio). Built on the host with `gcc -static` at run time and
 * copied into the guest over SSH, so it needs nothing the guest lacks.
 *
 * Queue depth N is N threads, each doing one pread/pwrite at a time on an O_DIRECT descriptor:
 * the guest's block layer then has up to N requests in flight on the virtio queue, as an
 * asynchronous engine at depth N would (the guest has no libaio/io_uring tooling to rely on).
 *
 *   iotool MODE DEVICE BLOCK_BYTES QD SECONDS SPAN_BYTES [tick] [verify]
 *
 * MODE: randread | randwrite | read | write. Random modes pick block-aligned offsets uniformly
 * in [0, SPAN); sequential modes hand out consecutive blocks from one shared cursor (wrapping
 * at SPAN), so the N threads together stream through the span in order. Write modes end with
 * one fsync (a FLUSH to the device), inside the timed window. With `tick`, the number of
 * operations completed in each second is printed as it happens (the reconnect experiment reads
 * it to see a stall and a resumption). With `verify` (write modes), each write of block b carries
 * a pattern derived from b, and after the final fsync every block whose write was acknowledged
 * is read back and compared: a transport that lost or garbled an acknowledged write (for
 * example across a server restart) shows up as a mismatch.
 *
 * Output, one line: `ops=… bytes=… io_s=… total_s=… errors=… first_error=…` and, with verify,
 * ` verified=… mismatches=…`. io_s is the timed I/O phase, total_s includes the final fsync.
 * Exit status 0 only when no operation (nor the fsync) failed and nothing mismatched.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_QD 256

enum mode { RANDREAD, RANDWRITE, SEQREAD, SEQWRITE };

static enum mode mode;
static int fd;
static size_t block;
static uint64_t span_blocks;
static double seconds;
static volatile int stop;
static uint64_t seq_cursor; /* next block for the sequential modes (atomic) */
static uint64_t total_ops;  /* completed operations (atomic), read by the ticker */
static uint64_t total_errors;
static int first_error;
static int verify;
static uint8_t *acked; /* with verify: one bit per block whose patterned write completed */

struct worker {
    pthread_t thread;
    unsigned id;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* xorshift64*: a per-thread generator, enough for spreading offsets uniformly. */
static uint64_t next_random(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

/* The content a verified write puts in block b: distinct for every block and every word. */
static void pattern(void *buf, uint64_t b)
{
    for (size_t i = 0; i < block / 8; i++) {
        uint64_t w = (b << 20) ^ i ^ 0x5a5aa5a5f00f0ff0ULL;
        memcpy((char *)buf + i * 8, &w, 8);
    }
}

static void *run(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = 0x9e3779b97f4a7c15ULL * (w->id + 1);
    void *buf;
    int writing = mode == RANDWRITE || mode == SEQWRITE;
    if (posix_memalign(&buf, 4096, block) != 0) {
        __atomic_add_fetch(&total_errors, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    /* Random, non-zero content: no layer may shortcut the writes as zeroes. */
    for (size_t i = 0; i < block; i += 8) {
        uint64_t r = next_random(&rng) | 1;
        memcpy((char *)buf + i, &r, 8);
    }
    while (!stop) {
        uint64_t b;
        if (mode == RANDREAD || mode == RANDWRITE)
            b = next_random(&rng) % span_blocks;
        else
            b = __atomic_fetch_add(&seq_cursor, 1, __ATOMIC_RELAXED) % span_blocks;
        off_t off = (off_t)(b * block);
        if (verify)
            pattern(buf, b);
        ssize_t n = writing ? pwrite(fd, buf, block, off) : pread(fd, buf, block, off);
        if (n != (ssize_t)block) {
            int e = n < 0 ? errno : EIO;
            if (__atomic_add_fetch(&total_errors, 1, __ATOMIC_RELAXED) == 1)
                first_error = e;
            usleep(10000); /* a failing device: do not spin */
            continue;
        }
        if (verify)
            __atomic_or_fetch(&acked[b / 8], (uint8_t)(1u << (b % 8)), __ATOMIC_RELAXED);
        __atomic_add_fetch(&total_ops, 1, __ATOMIC_RELAXED);
    }
    free(buf);
    return NULL;
}

static int parse_mode(const char *s, enum mode *m)
{
    static const struct { const char *name; enum mode m; } modes[] = {
        {"randread", RANDREAD}, {"randwrite", RANDWRITE}, {"read", SEQREAD}, {"write", SEQWRITE},
    };
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        if (strcmp(s, modes[i].name) == 0) {
            *m = modes[i].m;
            return 0;
        }
    return -1;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t bs, qd, secs, span;
    int tick = 0, bad_flag = 0;
    for (int i = 7; i < argc; i++) {
        if (strcmp(argv[i], "tick") == 0)
            tick = 1;
        else if (strcmp(argv[i], "verify") == 0)
            verify = 1;
        else
            bad_flag = 1;
    }
    if (argc < 7 || bad_flag || parse_mode(argv[1], &mode) != 0 || parse_u64(argv[3], &bs) != 0 ||
        parse_u64(argv[4], &qd) != 0 || parse_u64(argv[5], &secs) != 0 || parse_u64(argv[6], &span) != 0 ||
        bs == 0 || bs % 512 != 0 || qd == 0 || qd > MAX_QD || secs == 0 || span < bs) {
        fprintf(stderr, "usage: iotool randread|randwrite|read|write DEVICE BLOCK_BYTES QD(1-%d) "
                        "SECONDS SPAN_BYTES [tick] [verify]\n", MAX_QD);
        return 2;
    }
    block = bs;
    span_blocks = span / bs;
    seconds = (double)secs;
    int writing = mode == RANDWRITE || mode == SEQWRITE;
    if (verify && (!writing || (acked = calloc(span_blocks / 8 + 1, 1)) == NULL)) {
        fprintf(stderr, "iotool: verify needs a write mode (and memory for its bitmap)\n");
        return 2;
    }
    fd = open(argv[2], (writing ? O_RDWR : O_RDONLY) | O_DIRECT);
    if (fd < 0) {
        fprintf(stderr, "iotool: open %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    struct worker workers[MAX_QD];
    double t0 = now();
    for (unsigned i = 0; i < qd; i++) {
        workers[i].id = i;
        if (pthread_create(&workers[i].thread, NULL, run, &workers[i]) != 0) {
            fprintf(stderr, "iotool: cannot start thread %u\n", i);
            stop = 1;
            qd = i;
            break;
        }
    }
    uint64_t last = 0;
    double end = t0 + seconds;
    for (double t = now(); t < end; t = now()) {
        double nap = end - t < 1.0 ? end - t : 1.0;
        usleep((useconds_t)(nap * 1e6));
        if (tick) {
            uint64_t ops = __atomic_load_n(&total_ops, __ATOMIC_RELAXED);
            printf("tick t=%.1f ops=%llu\n", now() - t0, (unsigned long long)(ops - last));
            fflush(stdout);
            last = ops;
        }
    }
    stop = 1;
    for (unsigned i = 0; i < qd; i++)
        pthread_join(workers[i].thread, NULL);
    double io_end = now();
    if (writing && fsync(fd) != 0) {
        if (__atomic_add_fetch(&total_errors, 1, __ATOMIC_RELAXED) == 1)
            first_error = errno;
    }
    double t_end = now();
    unsigned long long ops = __atomic_load_n(&total_ops, __ATOMIC_RELAXED);
    printf("ops=%llu bytes=%llu io_s=%.3f total_s=%.3f errors=%llu first_error=%s", ops,
           ops * (unsigned long long)block, io_end - t0, t_end - t0,
           (unsigned long long)total_errors, first_error ? strerror(first_error) : "none");
    unsigned long long verified = 0, mismatches = 0;
    if (verify) {
        void *want, *got;
        if (posix_memalign(&want, 4096, block) != 0 || posix_memalign(&got, 4096, block) != 0) {
            fprintf(stderr, "\niotool: no memory to verify\n");
            return 1;
        }
        for (uint64_t b = 0; b < span_blocks; b++) {
            if (!(acked[b / 8] & (1u << (b % 8))))
                continue;
            pattern(want, b);
            verified++;
            if (pread(fd, got, block, (off_t)(b * block)) != (ssize_t)block || memcmp(want, got, block) != 0)
                mismatches++;
        }
        printf(" verified=%llu mismatches=%llu", verified, mismatches);
    }
    printf("\n");
    close(fd);
    return total_errors == 0 && mismatches == 0 ? 0 : 1;
}
