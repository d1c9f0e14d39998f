// Load generator for the data-plane benchmark, in C so that the client and
// server cost little next to the kernel path being measured (a Node client
// would hide the cost of DNAT behind its own). Built by the suite with `cc -O2`.
//
//   netload tcp-server PORT WORKERS [ADDR]  accept; read 1 byte; write 1 byte; close
//                                           (on every address, or on IPv6 ADDR only)
//   netload udp-server PORT WORKERS         echo every datagram
//   netload crr HOST PORT SECONDS CONC      CONC processes: connect, send 1 byte,
//                                           read the answer, close; again
//   netload udp-rr HOST PORT SECONDS CONC   CONC processes: send 32 bytes, wait
//                                           for the echo; again
// Clients print one JSON line: {"ops":N,"errors":N,"seconds":S,"rate":N/S}.
// The first 0.5 s of every client is warm-up and not counted. The server
// closes first, so TIME_WAIT stays on the server's side and the client never
// runs out of ports.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  perror(what);
  exit(2);
}

static int resolve(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len) {
  struct addrinfo hints = {0}, *res;
  char p[16];
  snprintf(p, sizeof p, "%d", port);
  hints.ai_flags = AI_NUMERICHOST;
  if (getaddrinfo(host, p, &hints, &res) != 0) return -1;
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

static int listen_on(int type, int port, const char *bind_to) {
  int fd = socket(AF_INET6, type, 0);
  if (fd < 0) die("socket");
  int one = 1, zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any};
  if (bind_to && inet_pton(AF_INET6, bind_to, &a.sin6_addr) != 1) {
    fprintf(stderr, "netload: bad bind address %s\n", bind_to);
    exit(2);
  }
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
  if (type == SOCK_STREAM && listen(fd, 4096) < 0) die("listen");
  return fd;
}

static void serve(int fd, int type, int workers) {
  for (int w = 0; w < workers; w++) {
    if (fork() == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      char buf[2048];
      for (;;) {
        if (type == SOCK_STREAM) {
          int c = accept(fd, NULL, NULL);
          if (c < 0) continue;
          if (read(c, buf, 1) == 1) (void)!write(c, buf, 1);
          close(c);
        } else {
          struct sockaddr_storage from;
          socklen_t fl = sizeof from;
          ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
          if (n > 0) sendto(fd, buf, n, 0, (struct sockaddr *)&from, fl);
        }
      }
    }
  }
  printf("ready\n");
  fflush(stdout);
  // The workers are killed when this process dies (PR_SET_PDEATHSIG).
  for (;;) pause();
}

// One client process; returns counted ops through a pipe.
static void client(int crr, struct sockaddr_storage *ss, socklen_t len, double warm, double end, int out) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  long ops = 0, errors = 0;
  char buf[64] = "x";
  if (crr) {
    while (now() < end) {
      int fd = socket(ss->ss_family, SOCK_STREAM, 0);
      if (fd < 0) die("socket");
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      int ok = connect(fd, (struct sockaddr *)ss, len) == 0 && write(fd, buf, 1) == 1 && read(fd, buf, 1) == 1;
      close(fd);
      if (now() >= warm) ok ? ops++ : errors++;
      if (!ok) usleep(1000);
    }
  } else {
    int fd = socket(ss->ss_family, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)ss, len) < 0) die("connect");
    memset(buf, 'u', 32);
    while (now() < end) {
      int ok = send(fd, buf, 32, 0) == 32 && recv(fd, buf, sizeof buf, 0) == 32;
      if (now() >= warm) ok ? ops++ : errors++;
    }
    close(fd);
  }
  long r[2] = {ops, errors};
  (void)!write(out, r, sizeof r);
  _exit(0);
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if ((argc == 4 || argc == 5) && (!strcmp(argv[1], "tcp-server") || !strcmp(argv[1], "udp-server"))) {
    int type = !strcmp(argv[1], "tcp-server") ? SOCK_STREAM : SOCK_DGRAM;
    serve(listen_on(type, atoi(argv[2]), argc == 5 ? argv[4] : NULL), type, atoi(argv[3]));
  }
  if (argc == 6 && (!strcmp(argv[1], "crr") || !strcmp(argv[1], "udp-rr"))) {
    int crr = !strcmp(argv[1], "crr");
    struct sockaddr_storage ss;
    socklen_t len;
    if (resolve(argv[2], atoi(argv[3]), &ss, &len) < 0) {
      fprintf(stderr, "netload: bad address %s\n", argv[2]);
      return 2;
    }
    double seconds = atof(argv[4]);
    int conc = atoi(argv[5]);
    int p[2];
    if (pipe(p) < 0) die("pipe");
    double start = now(), warm = start + 0.5, end = warm + seconds;
    for (int i = 0; i < conc; i++)
      if (fork() == 0) client(crr, &ss, len, warm, end, p[1]);
    close(p[1]);
    long ops = 0, errors = 0, r[2];
    while (read(p[0], r, sizeof r) == sizeof r) ops += r[0], errors += r[1];
    while (wait(NULL) > 0) {
    }
    printf("{\"ops\":%ld,\"errors\":%ld,\"seconds\":%.3f,\"rate\":%.1f}\n", ops, errors, seconds, ops / seconds);
    return 0;
  }
  fprintf(stderr, "usage: netload tcp-server|udp-server PORT WORKERS [ADDR] | crr|udp-rr HOST PORT SECONDS CONCURRENCY\n");
  return 2;
}
