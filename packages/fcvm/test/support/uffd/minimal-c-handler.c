/*
 * The reference point for the benchmark: the smallest correct UFFD page server in C, with the same
 * loop as ours (poll -> read uffd_msg batch -> UFFDIO_COPY per fault), serving one connection at a
 * time until the client disconnects. It handles no REMOVE events and no zero pages: the benchmark
 * touches only pages inside the file.
 *
 * usage: minimal-c-handler SOCKET MEMORY_FILE   (prints "ready" once listening)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
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
#include <sys/un.h>
#include <unistd.h>

struct region { uint64_t base, size, offset, page_size; };

static void die(const char *what) { perror(what); exit(1); }

static uint64_t field(const char *obj, const char *key) {
  const char *p = strstr(obj, key);
  return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: %s SOCKET MEMORY_FILE\n", argv[0]); return 2; }
  /* Never outlive the test or benchmark that started us. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  int mfd = open(argv[2], O_RDONLY);
  struct stat st;
  if (mfd < 0 || fstat(mfd, &st) != 0) die("memory file");
  char *mem = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, mfd, 0);
  if (mem == MAP_FAILED) die("mmap");
  int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  strncpy(addr.sun_path, argv[1], sizeof addr.sun_path - 1);
  unlink(argv[1]);
  if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 16)) die("bind/listen");
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    int conn = accept(lfd, NULL, NULL);
    if (conn < 0) die("accept");
    char json[65536];
    size_t len = 0;
    int uffd = -1;
    while (len == 0 || json[len - 1] != ']') {
      char control[CMSG_SPACE(sizeof(int))];
      struct iovec iov = { json + len, sizeof json - 1 - len };
      struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control };
      ssize_t n = recvmsg(conn, &msg, 0);
      if (n <= 0) die("recvmsg");
      struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
      if (c && c->cmsg_type == SCM_RIGHTS) memcpy(&uffd, CMSG_DATA(c), sizeof(int));
      len += (size_t)n;
    }
    json[len] = 0;
    struct region regions[16];
    int count = 0;
    for (char *obj = strchr(json, '{'); obj && count < 16; obj = strchr(obj + 1, '{')) {
      regions[count++] = (struct region){ field(obj, "\"base_host_virt_addr\":"), field(obj, "\"size\":"),
          field(obj, "\"offset\":"), field(obj, "\"page_size\":") ?: 4096 };
    }
    struct pollfd fds[2] = { { uffd, POLLIN, 0 }, { conn, POLLIN, 0 } };
    struct uffd_msg msgs[64];
    for (;;) {
      if (poll(fds, 2, -1) < 0) die("poll");
      if (fds[1].revents) {
        char b;
        if (recv(conn, &b, 1, MSG_DONTWAIT) == 0) break;
      }
      if (!(fds[0].revents & POLLIN)) continue;
      ssize_t n = read(uffd, msgs, sizeof msgs);
      if (n < 0) { if (errno == EAGAIN) continue; die("read"); }
      for (int i = 0; i < n / (ssize_t)sizeof msgs[0]; i++) {
        if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
        uint64_t a = msgs[i].arg.pagefault.address;
        for (int r = 0; r < count; r++) {
          if (a < regions[r].base || a >= regions[r].base + regions[r].size) continue;
          uint64_t page = a - (a - regions[r].base) % regions[r].page_size;
          struct uffdio_copy copy = { .dst = page, .src = (uint64_t)(uintptr_t)(mem + regions[r].offset + (page - regions[r].base)),
              .len = regions[r].page_size, .mode = 0 };
          while (ioctl(uffd, UFFDIO_COPY, &copy) != 0 && errno == EAGAIN) {}
          break;
        }
      }
    }
    close(uffd);
    close(conn);
  }
}
