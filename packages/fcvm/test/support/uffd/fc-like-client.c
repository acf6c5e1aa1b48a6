/*
 * A stand-in for Firecracker's side of the UFFD memory backend, for tests and the benchmark.
 * It does what Firecracker does on /snapshot/load (reference firecracker-protocols §4.1): maps
 * private anonymous memory per region (MAP_HUGETLB for 2 MiB pages), creates a userfaultfd
 * (O_CLOEXEC|O_NONBLOCK), UFFDIO_API with EVENT_REMOVE, registers every region in MISSING mode,
 * connects, sends ONE message (compact JSON array + the uffd via SCM_RIGHTS) and keeps the socket
 * open. Then it touches the pages and checks every byte against the memory file (zeros past its end).
 *
 * usage: fc-like-client --socket PATH --memory FILE --regions SIZE[,SIZE...] [--page-size N]
 *          [--touch seq|random|threads] [--threads N] [--die-after PAGES] [--remove-check]
 *          [--hold] [--latency] [--close-socket] [--timeout SECONDS]
 * Prints one JSON line on success; exits 1 with a message on stderr on any mismatch or error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26)
#endif

#define MAX_REGIONS 8

struct region { char *base; size_t size; size_t offset; };

static struct region regions[MAX_REGIONS];
static int region_count;
static size_t page_size = 4096;
static int memory_fd;
static size_t memory_size;
static long die_after = -1;
static long touched;
static pthread_mutex_t touched_lock = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *what) {
  fprintf(stderr, "fc-like-client: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void failx(const char *what) {
  fprintf(stderr, "fc-like-client: %s\n", what);
  exit(1);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static size_t total_pages(void) {
  size_t n = 0;
  for (int r = 0; r < region_count; r++) n += regions[r].size / page_size;
  return n;
}

static char *page_address(size_t index) {
  for (int r = 0; r < region_count; r++) {
    size_t pages = regions[r].size / page_size;
    if (index < pages) return regions[r].base + index * page_size;
    index -= pages;
  }
  return NULL;
}

static void count_touch(void) {
  if (die_after < 0) return;
  pthread_mutex_lock(&touched_lock);
  long n = ++touched;
  pthread_mutex_unlock(&touched_lock);
  if (n >= die_after) kill(getpid(), SIGKILL);
}

/* A read of one byte is enough to raise a MISSING fault for the whole page. */
static void touch(size_t index) {
  volatile char *p = page_address(index);
  (void)*p;
  count_touch();
}

static void shuffle(size_t *order, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) order[i] = i;
  for (size_t i = n; i > 1; i--) {
    seed = seed * 1103515245u + 12345u;
    size_t j = ((size_t)seed << 16 ^ (size_t)rand_r(&seed)) % i;
    size_t t = order[i - 1]; order[i - 1] = order[j]; order[j] = t;
  }
}

struct thread_arg { unsigned seed; };

static void *touch_thread(void *arg) {
  size_t n = total_pages();
  size_t *order = malloc(n * sizeof *order);
  if (!order) failx("out of memory");
  shuffle(order, n, ((struct thread_arg *)arg)->seed);
  for (size_t i = 0; i < n; i++) touch(order[i]);
  free(order);
  return NULL;
}

/* Every byte of every region equals the file at region.offset (zeros past the end of the file). */
static void verify(void) {
  char *expected = malloc(page_size);
  if (!expected) failx("out of memory");
  for (int r = 0; r < region_count; r++) {
    for (size_t off = 0; off < regions[r].size; off += page_size) {
      memset(expected, 0, page_size);
      size_t file_off = regions[r].offset + off;
      if (file_off < memory_size) {
        size_t want = memory_size - file_off < page_size ? memory_size - file_off : page_size;
        if (pread(memory_fd, expected, want, (off_t)file_off) != (ssize_t)want) fail("pread");
      }
      if (memcmp(expected, regions[r].base + off, page_size) != 0) {
        fprintf(stderr, "fc-like-client: content mismatch in region %d at offset %zu\n", r, off);
        exit(1);
      }
    }
  }
  free(expected);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  const char *socket_path = NULL, *memory_path = NULL, *region_list = NULL, *mode = "seq";
  int threads = 4, remove_check = 0, hold = 0, latency = 0, close_socket = 0;
  unsigned timeout = 120;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--socket") && v) socket_path = argv[++i];
    else if (!strcmp(a, "--memory") && v) memory_path = argv[++i];
    else if (!strcmp(a, "--regions") && v) region_list = argv[++i];
    else if (!strcmp(a, "--page-size") && v) page_size = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(a, "--touch") && v) mode = argv[++i];
    else if (!strcmp(a, "--threads") && v) threads = atoi(argv[++i]);
    else if (!strcmp(a, "--die-after") && v) die_after = atol(argv[++i]);
    else if (!strcmp(a, "--remove-check")) remove_check = 1;
    else if (!strcmp(a, "--hold")) hold = 1;
    else if (!strcmp(a, "--latency")) latency = 1;
    else if (!strcmp(a, "--close-socket")) close_socket = 1;
    else if (!strcmp(a, "--timeout") && v) timeout = (unsigned)atoi(argv[++i]);
    else { fprintf(stderr, "fc-like-client: unknown argument %s\n", a); return 2; }
  }
  if (!socket_path || !memory_path || !region_list) failx("--socket, --memory and --regions are required");
  /* If the server dies, a fault is never answered and this process would hang forever (exactly what a
   * real clone does): SIGALRM ends it even when whoever started it is gone too. */
  /* Never outlive the test or benchmark that started us. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  alarm(timeout);

  memory_fd = open(memory_path, O_RDONLY | O_CLOEXEC);
  if (memory_fd < 0) fail("open memory file");
  struct stat st;
  if (fstat(memory_fd, &st) != 0) fail("fstat");
  memory_size = (size_t)st.st_size;

  /* 1. guest memory: private anonymous, never file-backed. */
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  if (page_size == 2u << 20) flags |= MAP_HUGETLB | MAP_HUGE_2MB;
  size_t offset = 0;
  for (char *list = strdup(region_list), *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
    if (region_count == MAX_REGIONS) failx("too many regions");
    size_t size = strtoull(tok, NULL, 10);
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (base == MAP_FAILED) fail("mmap guest region");
    regions[region_count++] = (struct region){ base, size, offset };
    offset += size;
  }

  /* 2-4. userfaultfd, API handshake (EVENT_REMOVE only), MISSING registration. */
  int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (uffd < 0) fail("userfaultfd");
  struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE };
  if (ioctl(uffd, UFFDIO_API, &api) != 0) fail("UFFDIO_API");
  for (int r = 0; r < region_count; r++) {
    struct uffdio_register reg = {
      .range = { .start = (uintptr_t)regions[r].base, .len = regions[r].size },
      .mode = UFFDIO_REGISTER_MODE_MISSING,
    };
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) fail("UFFDIO_REGISTER");
  }

  /* 5. connect and send ONE message: compact JSON + SCM_RIGHTS. */
  char json[4096];
  size_t len = 0;
  json[len++] = '[';
  for (int r = 0; r < region_count; r++) {
    len += (size_t)snprintf(json + len, sizeof json - len,
        "%s{\"base_host_virt_addr\":%lu,\"size\":%zu,\"offset\":%zu,\"page_size\":%zu,\"page_size_kib\":%zu}",
        r ? "," : "", (unsigned long)(uintptr_t)regions[r].base, regions[r].size, regions[r].offset, page_size,
        page_size);
  }
  json[len++] = ']';
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) fail("socket");
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  strncpy(addr.sun_path, socket_path, sizeof addr.sun_path - 1);
  if (connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0) fail("connect");
  struct iovec iov = { .iov_base = json, .iov_len = len };
  char control[CMSG_SPACE(sizeof(int))];
  memset(control, 0, sizeof control);
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control };
  struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cmsg), &uffd, sizeof(int));
  if (sendmsg(sock, &msg, 0) != (ssize_t)len) fail("sendmsg");
  /* Like Firecracker >= 1.12: the socket stays open for the life of the process; before 1.12 it was
   * closed right after sending (--close-socket). */
  if (close_socket) close(sock);

  size_t pages = total_pages();
  uint64_t *lat = latency ? malloc(pages * sizeof *lat) : NULL;
  uint64_t start = now_ns();
  if (!strcmp(mode, "seq")) {
    for (size_t i = 0; i < pages; i++) {
      uint64_t t0 = latency ? now_ns() : 0;
      touch(i);
      if (latency) lat[i] = now_ns() - t0;
    }
  } else if (!strcmp(mode, "random")) {
    size_t *order = malloc(pages * sizeof *order);
    if (!order) failx("out of memory");
    shuffle(order, pages, (unsigned)getpid());
    for (size_t i = 0; i < pages; i++) touch(order[i]);
    free(order);
  } else if (!strcmp(mode, "threads")) {
    pthread_t tids[64];
    struct thread_arg args[64];
    if (threads < 1 || threads > 64) failx("--threads must be 1..64");
    for (int t = 0; t < threads; t++) {
      args[t].seed = (unsigned)(getpid() * 31 + t);
      if (pthread_create(&tids[t], NULL, touch_thread, &args[t]) != 0) failx("pthread_create failed");
    }
    for (int t = 0; t < threads; t++) pthread_join(tids[t], NULL);
  } else {
    failx("--touch must be seq, random or threads");
  }
  uint64_t elapsed = now_ns() - start;
  verify();

  long removed_pages = 0;
  if (remove_check) {
    /* Give pages back as a balloon would: the server gets REMOVE and must serve zeros from now on. */
    size_t n = regions[0].size / page_size / 4;
    if (n == 0) n = 1;
    if (madvise(regions[0].base, n * page_size, MADV_DONTNEED) != 0) fail("madvise(MADV_DONTNEED)");
    for (size_t off = 0; off < n * page_size; off += page_size) {
      volatile char *p = regions[0].base + off;
      (void)*p;
      for (size_t b = 0; b < page_size; b += 64) {
        if (regions[0].base[off + b] != 0) failx("a removed page did not read as zeros");
      }
    }
    removed_pages = (long)n;
  }

  printf("{\"ok\":true,\"pages\":%zu,\"elapsed_ns\":%lu,\"removed_pages\":%ld", pages, (unsigned long)elapsed,
      removed_pages);
  if (latency) {
    qsort(lat, pages, sizeof *lat, cmp_u64);
    printf(",\"p50_ns\":%lu,\"p90_ns\":%lu,\"p99_ns\":%lu,\"max_ns\":%lu", (unsigned long)lat[pages * 50 / 100],
        (unsigned long)lat[pages * 90 / 100], (unsigned long)lat[pages * 99 / 100], (unsigned long)lat[pages - 1]);
  }
  printf("}\n");
  fflush(stdout);
  if (hold) {
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {}
  }
  return 0;
}
